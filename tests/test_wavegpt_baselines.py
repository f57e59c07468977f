"""The same GPT on band codes and pixels, through the same commands as the wavelet language."""
import gzip
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from wavecode.sample_data import load_sample_digits  # noqa: E402
from wavegpt.batching import batch_codes  # noqa: E402
from wavegpt.cli import main  # noqa: E402
from wavegpt.kv_cache import StaticKVDecoder  # noqa: E402
from wavegpt.modeling_wavegpt import WaveGPTForCausalLM  # noqa: E402
from wavegpt.sample import sample  # noqa: E402
from wavegpt.tokenizers import load_tokenizer  # noqa: E402
from wavegpt.train import TrainConfig, train  # noqa: E402

TINY_VQ = ["--hidden", "8", "--code-dim", "4", "--codebook-size", "32", "--batch-size", "8",
           "--eval-images", "6", "--quiet"]


def _write(folder, stem, images, labels):
    n = len(images)
    with gzip.open(folder / f"{stem}-images-idx3-ubyte.gz", "wb") as f:
        f.write(bytes([0, 0, 8, 3]) + n.to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
                + images.tobytes())
    with gzip.open(folder / f"{stem}-labels-idx1-ubyte.gz", "wb") as f:
        f.write(bytes([0, 0, 8, 1]) + n.to_bytes(4, "big") + labels.astype(np.uint8).tobytes())


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """An IDX folder with both splits (the 20 bundled digits, and their mirror images)."""
    images, labels = load_sample_digits()
    d = tmp_path_factory.mktemp("data") / "mnist"
    d.mkdir()
    _write(d, "train", np.concatenate([images, images[:, :, ::-1].copy()]),
           np.concatenate([labels, labels]))
    _write(d, "t10k", images[:6].copy(), labels[:6])
    return d.parent


@pytest.fixture(scope="module")
def bandvq_dir(tmp_path_factory, data_dir):
    out = tmp_path_factory.mktemp("tok") / "bandvq"
    assert main(["train-tokenizer", "--kind", "bandvq", "--dataset", "mnist", "--data-dir",
                 str(data_dir), "--out", str(out), "--steps", "60", "--lr", "3e-3"]
                + TINY_VQ) == 0
    return out


def test_bandvq_training_improves_reconstruction(tmp_path, data_dir, bandvq_dir):
    trained = json.loads((bandvq_dir / "metrics.json").read_text())
    assert main(["train-tokenizer", "--kind", "bandvq", "--dataset", "mnist", "--data-dir",
                 str(data_dir), "--out", str(tmp_path / "one"), "--steps", "1"] + TINY_VQ) == 0
    untrained = json.loads((tmp_path / "one" / "metrics.json").read_text())
    assert trained["tokens_per_image"] == 4 * 7 * 7 and trained["n_tokens"] == 32
    assert trained["test_psnr_db"] > untrained["test_psnr_db"] + 1.0
    assert len(trained["codes_used"]) == 4 and max(trained["codes_used"]) <= 32
    tok = load_tokenizer(bandvq_dir)
    assert tok.kind == "bandvq" and tok.decode(tok.encode(load_sample_digits()[0])).shape == \
        (20, 28, 28)


def test_gpt_on_band_codes_trains_samples_and_rewinds(tmp_path, data_dir, bandvq_dir, capsys):
    run = tmp_path / "run"
    assert main(["train", "--tokens", "bandvq", "--tokenizer", str(bandvq_dir), "--dataset",
                 "mnist", "--data-dir", str(data_dir), "--out", str(run), "--steps", "3",
                 "--batch-size", "4", "--cache-dir", str(tmp_path / "c"), "--eval-images", "4",
                 "--quiet"]) == 0
    assert "on the test split" in capsys.readouterr().out
    model = WaveGPTForCausalLM.from_pretrained(run / "model")
    assert model.config.token_kind == "bandvq" and model.config.n_tokens == 32
    assert (run / "tokenizer" / "model.safetensors").exists()    # the run decodes by itself
    codes_file = tmp_path / "codes.npz"
    assert main(["sample", "--checkpoint", str(run), "--class-grid", "--n", "1", "--quiet",
                 "-o", str(tmp_path / "grid.png"), "--tokens", str(codes_file)]) == 0
    codes = np.load(codes_file)["codes"]
    assert codes.shape == (10, 196) and codes.min() >= 0 and codes.max() < 32
    labels = [str(c) for c in range(10)]
    assert main(["sample", "--checkpoint", str(run), "--prefix", str(codes_file), "--rewind",
                 "50", "--labels", *labels, "--seed", "5", "--quiet", "-o",
                 str(tmp_path / "again.png"), "--tokens", str(tmp_path / "again.npz")]) == 0
    again = np.load(tmp_path / "again.npz")["codes"]
    np.testing.assert_array_equal(again[:, :146], codes[:, :146])     # the prefix stays
    assert (again[:, 146:] != codes[:, 146:]).any()


def test_gpt_on_pixels_trains_on_a_fitted_palette_and_evaluates(tmp_path, data_dir, capsys):
    run = tmp_path / "pix"
    assert main(["train", "--tokens", "pixel", "--palette", "4", "--dataset", "mnist",
                 "--data-dir", str(data_dir), "--out", str(run), "--steps", "2",
                 "--batch-size", "4", "--cache-dir", str(tmp_path / "c"), "--eval-images", "0",
                 "--quiet"]) == 0
    tok = load_tokenizer(run / "tokenizer")
    assert tok.kind == "pixel" and tok.n_tokens == 4 and tok.palette[0, 0] < 10
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(run), "--data-dir", str(data_dir),
                 "--cache-dir", str(tmp_path / "c"), "--n", "1", "--test-images", "6",
                 "--quiet"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["tokens"] == "pixel" and res["tokens_per_sample"] == 784
    assert res["samples"] == 10 and 0 <= res["class_accuracy"] <= 1
    assert res["tokenizer_psnr_db"] > 15 and (run / "eval_samples.png").exists()


def test_static_cache_matches_the_full_forward_on_codes(tmp_path, data_dir):
    cfg = TrainConfig(dataset="mnist", tokens="pixel", palette=4, out=str(tmp_path / "r"),
                      data_dir=str(data_dir), cache_dir=str(tmp_path / "c"), steps=2,
                      batch_size=4, eval_images=0)
    train(cfg, progress=False)
    model = WaveGPTForCausalLM.from_pretrained(tmp_path / "r" / "model").eval()
    tok = load_tokenizer(tmp_path / "r" / "tokenizer")
    codes = tok.encode(load_sample_digits()[0][:2])[:, :30]
    slots = tok.slots[:30]
    inp = batch_codes(codes, [1, 10], model.config, slots)
    with torch.no_grad():
        full = model(input_ids=inp["input_ids"], slots=inp["slots"],
                     next_slots=inp["next_slots"], exponents=inp["exponents"]).logits
        emb = model.embed(inp["input_ids"], inp["slots"], inp["next_slots"], inp["exponents"])
        dec = StaticKVDecoder(model, 2, 30)
        steps = [dec.forward(emb[:, :10])] + [dec.forward(emb[:, t:t + 1]) for t in range(10, 30)]
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-4, rtol=1e-4)
    # and the sampler's draws are codes of the palette, decoded
    out, images = sample(model, [0, 10], tokenizer=tok, top_k=2, cfg=1.5, seed=0)
    assert out.shape == (2, 784) and images.shape == (2, 28, 28) and out.max() < 4


def test_baseline_errors_are_one_line(tmp_path, data_dir, bandvq_dir, capsys):
    common = ["--dataset", "mnist", "--data-dir", str(data_dir), "--cache-dir",
              str(tmp_path / "c"), "--steps", "1", "--batch-size", "4", "--eval-images", "0",
              "--quiet"]
    cases = [
        (["train", "--tokens", "bandvq", "--out", str(tmp_path / "a")] + common, "--tokenizer"),
        (["train", "--tokens", "pixel", "--context", "--out", str(tmp_path / "b")] + common,
         "coding contexts"),
        (["train", "--tokens", "pixel", "--tokenizer", str(bandvq_dir), "--out",
          str(tmp_path / "c2")] + common, "not pixel"),
        (["train", "--tokens", "bandvq", "--tokenizer", str(tmp_path), "--out",
          str(tmp_path / "d")] + common, "not a tokenizer folder"),
        (["train", "--steps", "0", "--out", str(tmp_path / "e"), "--dataset", "mnist",
          "--data-dir", str(data_dir), "--quiet"], "--time-budget"),
        (["train-tokenizer", "--kind", "pixel", "--palette", "0", "--out", str(tmp_path / "g"),
          "--data-dir", str(data_dir)], "palette must be >= 1"),
        (["train-tokenizer", "--lr", "0", "--out", str(tmp_path / "h"),
          "--data-dir", str(data_dir)], "lr must be a finite number > 0"),
    ]
    bad = tmp_path / "corrupt"
    bad.mkdir()
    for name in ("tokenizer_config.json", "config.json"):
        (bad / name).write_bytes((bandvq_dir / name).read_bytes())
    (bad / "model.safetensors").write_bytes(b"junk")
    cases.append((["train", "--tokens", "bandvq", "--tokenizer", str(bad), "--out",
                   str(tmp_path / "f")] + common, "cannot load the band-code VQ-VAE"))
    for argv, msg in cases:
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert msg in err and err.count("\n") == 1, err
    run = tmp_path / "ok"
    assert main(["train", "--tokens", "pixel", "--palette", "4", "--out", str(run)]
                + common) == 0
    for extra, msg in ((["--strip", str(tmp_path / "s.png")], "not an image"),
                       (["--max-tokens", "10"], "not an image")):
        capsys.readouterr()
        assert main(["sample", "--checkpoint", str(run), "--class", "1", "--n", "1", "--quiet",
                     "-o", str(tmp_path / "x.png")] + extra) == 2
        assert msg in capsys.readouterr().err
    np.savez(tmp_path / "p.npz", codes=np.zeros((1, 784), np.int64))
    capsys.readouterr()
    assert main(["sample", "--checkpoint", str(run), "--prefix", str(tmp_path / "p.npz"),
                 "--keep-planes", "2", "--class", "1", "--n", "1", "--quiet", "-o",
                 str(tmp_path / "x.png")]) == 2
    assert "--rewind" in capsys.readouterr().err
    (tmp_path / "bad.npz").write_bytes(b"garbage")
    assert main(["sample", "--checkpoint", str(run), "--prefix", str(tmp_path / "bad.npz"),
                 "--rewind", "2", "--class", "1", "--n", "1", "--quiet", "-o",
                 str(tmp_path / "x.png")]) == 2
    assert "cannot read token codes" in capsys.readouterr().err


def test_time_budget_schedule_follows_the_clock(tmp_path, data_dir):
    cfg = TrainConfig(dataset="mnist", tokens="pixel", palette=4, out=str(tmp_path / "r"),
                      data_dir=str(data_dir), cache_dir=str(tmp_path / "c"), steps=0,
                      time_budget=1.5, warmup=1, batch_size=2, eval_images=0)
    last = train(cfg, progress=False)
    log = [json.loads(x) for x in (tmp_path / "r" / "log.jsonl").read_text().splitlines()]
    assert last["elapsed_s"] >= 1.5 and len(log) >= 2
    lrs = [r["lr"] for r in log]
    assert lrs[-1] < lrs[1] and lrs[-1] >= 0.1 * cfg.lr - 1e-12   # cosine down to 10 %
