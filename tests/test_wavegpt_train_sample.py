"""wavegpt end to end on a tiny IDX folder: train, resume exactly, sample legal streams, CLI."""
import gzip
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


def write_idx(folder, images, labels):
    folder.mkdir(parents=True, exist_ok=True)
    n = len(images)
    with gzip.open(folder / "train-images-idx3-ubyte.gz", "wb") as f:
        f.write(bytes([0, 0, 8, 3]) + n.to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
                + images.tobytes())
    with gzip.open(folder / "train-labels-idx1-ubyte.gz", "wb") as f:
        f.write(bytes([0, 0, 8, 1]) + n.to_bytes(4, "big") + labels.astype(np.uint8).tobytes())


@pytest.fixture(scope="module")
def idx_dir(tmp_path_factory):
    images, labels = load_sample_digits()
    d = tmp_path_factory.mktemp("data") / "mnist"
    write_idx(d, images, labels)
    return d.parent


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
    assert main(["sample", "--checkpoint", str(tmp_path / "nope"), "--class", "1",
                 "-o", str(tmp_path / "x.png")]) == 2
    assert "not a wavegpt run folder" in capsys.readouterr().err
    assert main(["train", "--data-dir", str(tmp_path / "empty"), "--out", str(out),
                 "--quiet"]) == 2
