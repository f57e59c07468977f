"""wavegpt end to end on a tiny IDX folder: train, resume exactly, sample legal streams, CLI."""
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from wavecode.sample_data import load_sample_digits  # noqa: E402
from wavegpt.cli import main  # noqa: E402
from wavegpt.data import tokenize_cached  # noqa: E402
from wavegpt.modeling_wavegpt import WaveGPTForCausalLM  # noqa: E402
from wavegpt.sample import sample  # noqa: E402
from wavegpt.train import TrainConfig, train  # noqa: E402


def cfg_for(tmp, idx_dir, **kw):
    base = dict(dataset="mnist", out=str(tmp / "run"), data_dir=str(idx_dir),
                cache_dir=str(tmp / "cache"), steps=6, batch_size=4, warmup=2,
                final_exponent=0, ckpt_every=100, seed=3, eval_images=0)
    base.update(kw)
    return TrainConfig(**base)


def test_cache_is_reused(tmp_path, idx_dir):
    from wavecode import WaveletTokenizer
    tok = WaveletTokenizer.from_preset("mnist", (28, 28), final_exponent=0)
    a = tokenize_cached(tok, "mnist", "train", tmp_path, idx_dir)
    b = tokenize_cached(tok, "mnist", "train", tmp_path, idx_dir)
    assert len(a) == 20 and np.array_equal(a.batch.tokens, b.batch.tokens)
    assert len(list(tmp_path.iterdir())) == 1
    # a damaged cache file: one line naming it and the folder to delete
    folder, = tmp_path.iterdir()
    data = (folder / "tokens.npy").read_bytes()
    (folder / "tokens.npy").write_bytes(data[:len(data) // 2])
    with pytest.raises(ValueError, match=r"tokens.npy: damaged cache file .*; delete .* to"):
        tokenize_cached(tok, "mnist", "train", tmp_path, idx_dir)


def test_training_lowers_the_loss_and_resumes_exactly(tmp_path, idx_dir):
    full = cfg_for(tmp_path / "a", idx_dir, steps=8, lr=5e-3)
    train(full, progress=False)
    losses = [json.loads(x)["loss"] for x in open(tmp_path / "a" / "run" / "log.jsonl")]
    assert len(losses) == 8 and losses[-1] < losses[0]

    part = cfg_for(tmp_path / "b", idx_dir, steps=8, lr=5e-3)
    train(part, progress=False, until=4)
    train(part, resume=True, progress=False)
    a = WaveGPTForCausalLM.from_pretrained(tmp_path / "a" / "run" / "model")
    b = WaveGPTForCausalLM.from_pretrained(tmp_path / "b" / "run" / "model")
    for (n, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        assert torch.equal(p, q), n


def test_sampled_streams_are_legal_and_decode(tmp_path, idx_dir):
    train(cfg_for(tmp_path, idx_dir, steps=2), progress=False)
    model = WaveGPTForCausalLM.from_pretrained(tmp_path / "run" / "model")
    batch, images = sample(model, [3, 3, 7], run_dir=tmp_path / "run", top_k=3, cfg=1.5,
                           seed=1, max_tokens=300)
    assert images.shape == (3, 28, 28) and np.isfinite(images).all()
    from wavecode import WaveletTokenizer
    tok = WaveletTokenizer.from_meta(model.config.tokenizer)
    assert np.allclose(tok.decode(batch), images)          # legal: decode re-checks every token
    st = tok.start(3, batch.exponents)
    for t in range(int(batch.lengths.max())):
        st.step(np.array([batch.stream(i)[t] if t < batch.lengths[i] else -1 for i in range(3)]))
    # a stream stops early exactly when the grammar says it is complete
    assert (st.done == (batch.lengths < 300)).all()
    short, _ = sample(model, [1], run_dir=tmp_path / "run", max_tokens=10, seed=2)
    assert short.lengths.tolist() == [10]


def test_cli_train_and_sample(tmp_path, idx_dir, capsys):
    out = tmp_path / "run"
    # the tiny IDX folder has only a train split: copy it as the test split for the evaluation
    import shutil
    for kind in ("images-idx3", "labels-idx1"):
        shutil.copy(idx_dir / "mnist" / f"train-{kind}-ubyte.gz",
                    idx_dir / "mnist" / f"t10k-{kind}-ubyte.gz")
    assert main(["train", "--data-dir", str(idx_dir), "--out", str(out), "--steps", "2",
                 "--batch-size", "4", "--final-exponent", "0", "--cache-dir",
                 str(tmp_path / "c"), "--quiet", "--eval-images", "8"]) == 0
    assert "on the test split" in capsys.readouterr().out
    assert main(["sample", "--checkpoint", str(out), "--class-grid", "--n", "1", "--top-k", "2",
                 "-o", str(tmp_path / "grid.png"), "--max-tokens", "40"]) == 0
    assert (tmp_path / "grid.png").exists()
    # progressive strip, GIF and saved streams; then rewind them
    assert main(["sample", "--checkpoint", str(out), "--class", "4", "--n", "2", "--quiet",
                 "-o", str(tmp_path / "g4.png"), "--max-tokens", "60", "--strip",
                 str(tmp_path / "strip.png"), "--gif", str(tmp_path / "g.gif"), "--frames", "5",
                 "--tokens", str(tmp_path / "s.npz"), "--kv-cache", "int16"]) == 0
    from PIL import Image
    assert 2 <= Image.open(tmp_path / "g.gif").n_frames <= 5   # Pillow merges equal frames
    assert Image.open(tmp_path / "strip.png").size == (5 * 58 + 2, 2 * 58 + 2)  # 5 frames, 2 rows
    assert main(["sample", "--checkpoint", str(out), "--class", "4", "--n", "2", "--quiet",
                 "-o", str(tmp_path / "r.png"), "--prefix", str(tmp_path / "s.npz"),
                 "--keep-planes", "1", "--tokens", str(tmp_path / "r.npz")]) == 0
    from wavecode import TokenBatch
    first, again = TokenBatch.load(tmp_path / "s.npz"), TokenBatch.load(tmp_path / "r.npz")
    assert np.array_equal(first.exponents, again.exponents)
    assert main(["sample", "--checkpoint", str(out), "--class", "4", "-o",
                 str(tmp_path / "r.png"), "--rewind", "3"]) == 2
    assert "--prefix" in capsys.readouterr().err
    # evaluation: bits/image, class accuracy of samples, Fréchet distance, a grid
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(out), "--data-dir", str(idx_dir),
                 "--cache-dir", str(tmp_path / "c"), "--n", "2", "--test-images", "8",
                 "--quiet", "--kv-cache", "int8"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert 0.0 <= res["class_accuracy"] <= 1.0 and res["samples"] == 20
    assert res["kv_cache"] == "int8"
    assert res["test_bits_per_image"] > 0 and np.isfinite(res["frechet_distance"])
    assert (out / "eval.json").exists() and (out / "eval_samples.png").exists()
    assert main(["sample", "--checkpoint", str(tmp_path / "nope"), "--class", "1",
                 "-o", str(tmp_path / "x.png")]) == 2
    assert "not a wavegpt run folder" in capsys.readouterr().err
    assert main(["train", "--data-dir", str(tmp_path / "empty"), "--out", str(out),
                 "--quiet"]) == 2


@pytest.mark.parametrize("damage,match", [
    ("config", "model: cannot load the model (OSError"),
    ("weights-cut", "model: cannot load the model (SafetensorError"),
    ("weights-gone", "model: cannot load the model (OSError"),
    ("exponents", "exponents.json: unreadable (JSONDecodeError"),
    ("trainer", "trainer.pt: cannot read ("),
])
def test_a_damaged_run_folder_gets_one_line(tmp_path, idx_dir, capsys, damage, match):
    import shutil
    good = tmp_path / "good"
    train(cfg_for(tmp_path, idx_dir, steps=1, out=str(good)), progress=False)
    run = tmp_path / "run"
    shutil.copytree(good, run)
    weights = run / "model" / "model.safetensors"
    if damage == "config":
        (run / "model" / "config.json").write_text("{not json")
    elif damage == "weights-cut":
        weights.write_bytes(weights.read_bytes()[:1000])
    elif damage == "weights-gone":
        weights.unlink()
    elif damage == "exponents":
        (run / "exponents.json").write_text("zz")
    else:
        (run / "trainer.pt").write_bytes(b"\x06 not a torch file")
    capsys.readouterr()
    if damage == "trainer":
        rc = main(["train", "--data-dir", str(idx_dir), "--out", str(run), "--resume",
                   "--final-exponent", "0", "--cache-dir", str(tmp_path / "cache"), "--quiet"])
    else:
        rc = main(["sample", "--checkpoint", str(run), "--class", "1", "--n", "1", "--quiet",
                   "--max-tokens", "20", "-o", str(tmp_path / "x.png")])
    err = capsys.readouterr().err
    assert rc == 2 and match in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "x.png").exists()


def test_a_zero_token_budget_means_the_full_streams():
    from wavegpt.train import language_of
    assert language_of(TrainConfig(dataset="fashion-mnist")).config.max_tokens == 512
    assert language_of(TrainConfig(dataset="fashion-mnist", max_tokens=0)).config.max_tokens \
        is None


@pytest.mark.parametrize("args,match", [(["--preset", "huge"], "unknown preset"),
                                        (["--seed", "-1"], "seed must be in 0..2**63 - 1"),
                                        (["--seed", str(2 ** 64)], "seed must be in 0..2**63"),
                                        (["--batch-size", "0"], "batch-size must be >= 1"),
                                        (["--lr", "nan"], "lr must be a finite number > 0"),
                                        (["--ckpt-every", "0"], "ckpt-every must be >= 1"),
                                        (["--null-class-prob", "1"], "null-class-prob must be in"),
                                        (["--time-budget", "-5"], "time-budget must be > 0"),
                                        (["--max-tokens", "-1"], "max-tokens must be >= 0")])
def test_bad_train_settings_fail_before_any_work(tmp_path, idx_dir, capsys, args, match):
    out, cache = tmp_path / "run", tmp_path / "cache"
    assert main(["train", "--data-dir", str(idx_dir), "--out", str(out), "--cache-dir",
                 str(cache), "--quiet"] + args) == 2
    err = capsys.readouterr().err
    assert match in err and err.count("\n") == 1
    assert not out.exists() and not cache.exists()     # nothing tokenized, nothing written


def test_ddp_with_two_gloo_processes_matches_one_process(tmp_path, idx_dir):
    """torchrun, 2 CPU processes: each takes half of every batch; the result equals a single
    process on the same batches (the loss is normalised by the whole batch's tokens)."""
    import os
    import socket
    import subprocess
    import sys

    args = ["train", "--data-dir", str(idx_dir), "--steps", "3", "--batch-size", "4",
            "--final-exponent", "0", "--cache-dir", str(tmp_path / "c"), "--quiet",
            "--eval-images", "0", "--seed", "5"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node",
                           "2", "--master_addr", "127.0.0.1", "--master_port", str(port),
                           "-m", "wavegpt.cli"] + args + ["--out", str(tmp_path / "ddp")],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert main(args + ["--out", str(tmp_path / "one")]) == 0
    a = WaveGPTForCausalLM.from_pretrained(tmp_path / "ddp" / "model")
    b = WaveGPTForCausalLM.from_pretrained(tmp_path / "one" / "model")
    moved = False
    torch.manual_seed(5)                                  # the run's initialisation
    init = WaveGPTForCausalLM(a.config)
    for (n, p), (_, q), (_, r) in zip(a.named_parameters(), b.named_parameters(),
                                      init.named_parameters()):
        assert torch.allclose(p, q, atol=1e-5), n
        moved = moved or not torch.allclose(p, r)
    assert moved
    la = [json.loads(x)["loss"] for x in open(tmp_path / "ddp" / "log.jsonl")]
    lb = [json.loads(x)["loss"] for x in open(tmp_path / "one" / "log.jsonl")]
    assert np.allclose(la, lb, rtol=1e-4)


def test_tensorboard_scalars_and_sample_grids(tmp_path, idx_dir):
    pytest.importorskip("tensorboard")
    cfg = cfg_for(tmp_path, idx_dir, steps=2, sample_every=2, tensorboard=True)
    train(cfg, progress=False)
    run = tmp_path / "run"
    assert (run / "samples" / "step000002.png").exists()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    ev = EventAccumulator(str(run / "tb"))
    ev.Reload()
    assert len(ev.Scalars("train/loss")) == 2
    assert ev.Tags()["images"] == ["samples"]


@pytest.fixture(scope="module")
def face_dir(tmp_path_factory):
    """A tiny FFHQ-like image folder: 20 colour PNGs of 40x40 (digits tinted per channel)."""
    from PIL import Image
    images, _ = load_sample_digits()
    d = tmp_path_factory.mktemp("faces") / "ffhq"
    d.mkdir()
    for i, im in enumerate(images):
        rgb = np.stack([im, im[::-1], im[:, ::-1]], -1)
        Image.fromarray(rgb).resize((40, 40)).save(d / f"{i:05d}.png")
    return d


def test_image_folder_loader_splits_resizes_and_rejects_bad_files(face_dir, tmp_path):
    from wavegpt.data import load_images
    tr, ytr = load_images("ffhq", "train", face_dir, 16)
    te, _ = load_images("ffhq", "test", face_dir.parent, 16)        # <dir>/ffhq found too
    assert tr.shape == (19, 16, 16, 3) and te.shape == (1, 16, 16, 3) and tr.dtype == np.uint8
    assert (ytr == 0).all()
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="cannot read"):
        load_images("ffhq", "train", bad, 16)
    with pytest.raises(ValueError, match="no such data folder"):
        load_images("ffhq", "train", tmp_path / "missing", 16)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        load_images("ffhq", "test", tmp_path / "empty", 16)
    # over Pillow's decompression-bomb guard: one line too
    from PIL import Image
    huge = tmp_path / "huge"
    huge.mkdir()
    Image.new("RGB", (64, 64)).save(huge / "a.png")
    old_limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = 1000
    try:
        with pytest.raises(ValueError, match=r"a.png: cannot read the image \(Image size"):
            load_images("ffhq", "train", huge, 16)
    finally:
        Image.MAX_IMAGE_PIXELS = old_limit


def _parquet_copy(folder, name, images, labels=None):
    """A data set laid out as on the hub (``{split}-00000-of-00001.parquet``), written by
    ``datasets`` itself: images as PNG bytes, labels as a ClassLabel."""
    from datasets import ClassLabel, Dataset, Features, Image as HFImage
    from PIL import Image
    features = {"image": HFImage()}
    columns = {"image": [Image.fromarray(a) for a in images]}
    if labels is not None:
        features["label"] = ClassLabel(names=[str(i) for i in range(10)])
        columns["label"] = [int(v) for v in labels]
    folder.mkdir(parents=True, exist_ok=True)
    Dataset.from_dict(columns, features=Features(features)).to_parquet(folder / name)


def test_a_local_copy_of_the_hub_data_loads_like_the_idx_files(tmp_path, idx_dir, face_dir,
                                                                monkeypatch):
    pytest.importorskip("datasets")
    from wavegpt import data
    images, labels = load_sample_digits()
    copy = tmp_path / "hub-mnist"           # as ylecun/mnist: mnist/{train,test}-*.parquet
    _parquet_copy(copy / "mnist", "train-00000-of-00001.parquet", images[:15], labels[:15])
    _parquet_copy(copy / "mnist", "test-00000-of-00001.parquet", images[15:], labels[15:])
    x, y = data.load_images("mnist", "train", copy)
    assert x.dtype == np.uint8 and np.array_equal(x, images[:15])
    assert y.dtype == np.int64 and np.array_equal(y, labels[:15])
    # the hub path itself, pointed at the copy: load_dataset resolves a folder as a repo
    monkeypatch.setitem(data.HUB_NAMES, "mnist", str(copy))
    x, y = data.load_images("mnist", "test")
    assert np.array_equal(x, images[15:]) and np.array_equal(y, labels[15:])
    monkeypatch.setitem(data.HUB_NAMES, "mnist", str(tmp_path / "no-such-repo"))
    with pytest.raises(ValueError, match="cannot load .* from the HuggingFace hub"):
        data.load_images("mnist", "test")
    # FFHQ as merkol/ffhq-256: one train split of unlabelled RGB images, cut as a folder is
    from PIL import Image
    files = sorted(face_dir.iterdir())
    rgb = [np.asarray(Image.open(f).convert("RGB")) for f in files]
    _parquet_copy(tmp_path / "hub-ffhq" / "data", "train-00000-of-00001.parquet", rgb)
    for split in ("train", "test"):
        a, ya = data.load_images("ffhq", split, tmp_path / "hub-ffhq", 16)
        b, _ = data.load_images("ffhq", split, face_dir, 16)
        assert np.array_equal(a, b) and (ya == 0).all()
    bad = tmp_path / "bad" / "mnist"
    bad.mkdir(parents=True)
    (bad / "train-00000-of-00001.parquet").write_bytes(b"not parquet")
    with pytest.raises(ValueError, match="cannot read the parquet files"):
        data.load_images("mnist", "train", bad.parent)
    with pytest.raises(ValueError, match="no test-\\*.parquet file"):
        data.load_images("mnist", "test", bad.parent)


def test_ffhq_from_an_image_folder_trains_samples_and_evaluates(face_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--dataset", "ffhq", "--image-size", "16", "--data-dir",
                 str(face_dir), "--out", str(out), "--steps", "2", "--batch-size", "4",
                 "--final-exponent", "-1", "--max-tokens", "150", "--cache-dir",
                 str(tmp_path / "c"), "--quiet", "--eval-images", "1"]) == 0
    model = WaveGPTForCausalLM.from_pretrained(out / "model")
    assert model.config.num_classes == 1
    batch, images = sample(model, [0, 0], run_dir=out, seed=1)
    assert images.shape == (2, 16, 16, 3) and batch.lengths.max() <= 150
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(out), "--data-dir", str(face_dir),
                 "--cache-dir", str(tmp_path / "c"), "--n", "2", "--test-images", "1",
                 "--quiet"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["dataset"] == "ffhq" and res["samples"] == 2 and "class_accuracy" not in res
