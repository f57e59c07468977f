"""Devices and precision: CPU everywhere; the CUDA tests run where torch sees a GPU (skipped in
CI, run on a lent GPU machine)."""
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from wavecode import WaveletTokenizer  # noqa: E402
from wavegpt.cli import main  # noqa: E402
from wavegpt.device import autocast, resolve_device  # noqa: E402
from wavegpt.modeling_wavegpt import WaveGPTForCausalLM  # noqa: E402
from wavegpt.sample import sample  # noqa: E402
from wavegpt.train import train  # noqa: E402

from test_wavegpt_train_sample import cfg_for  # noqa: E402

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_device_names_resolve_or_fail_with_one_line():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device(None) == resolve_device("auto")
    for bad in ("gpu0", "tpu", "cuda:x"):
        with pytest.raises(ValueError, match="device"):
            resolve_device(bad)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            resolve_device("cuda")
    with pytest.raises(ValueError, match="precision"):
        autocast(torch.device("cpu"), "fp16")


def test_bf16_autocast_trains_float32_weights(tmp_path, idx_dir):
    # bf16 autocast on the CPU: the same code path as on a GPU, weights stay float32
    train(cfg_for(tmp_path, idx_dir, steps=8, lr=5e-3, precision="bf16", device="cpu"),
          progress=False)
    losses = [json.loads(x)["loss"] for x in open(tmp_path / "run" / "log.jsonl")]
    assert len(losses) == 8 and np.isfinite(losses).all() and losses[-1] < losses[0]
    model = WaveGPTForCausalLM.from_pretrained(tmp_path / "run" / "model")
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_cli_rejects_unknown_device(tmp_path, idx_dir, capsys):
    assert main(["train", "--data-dir", str(idx_dir), "--out", str(tmp_path / "run"),
                 "--steps", "1", "--device", "tpu", "--quiet"]) == 2
    assert "device" in capsys.readouterr().err


def test_unbudgeted_samples_stop_at_the_longest_training_stream(tmp_path, idx_dir):
    train(cfg_for(tmp_path, idx_dir, steps=1, final_exponent=-2), progress=False)
    model = WaveGPTForCausalLM.from_pretrained(tmp_path / "run" / "model")
    longest = model.config.n_positions - 1
    batch, _ = sample(model, [0, 1, 2, 3], run_dir=tmp_path / "run", seed=0)
    tok = WaveletTokenizer.from_meta(model.config.tokenizer)
    assert batch.lengths.max() <= longest
    tok.decode(batch)                                      # cut or complete, every stream decodes


@cuda
def test_cuda_training_sampling_and_cpu_agree(tmp_path, idx_dir):
    train(cfg_for(tmp_path, idx_dir, steps=8, lr=5e-3, device="cuda"), progress=False)
    losses = [json.loads(x)["loss"] for x in open(tmp_path / "run" / "log.jsonl")]
    assert losses[-1] < losses[0]
    model = WaveGPTForCausalLM.from_pretrained(tmp_path / "run" / "model")
    batch_cpu, _ = sample(model, [3, 5], run_dir=tmp_path / "run", top_k=3, seed=1,
                          max_tokens=200)
    model_gpu = WaveGPTForCausalLM.from_pretrained(tmp_path / "run" / "model").to("cuda")
    batch_gpu, images = sample(model_gpu, [3, 5], run_dir=tmp_path / "run", top_k=3, seed=1,
                               max_tokens=200, cfg=1.5)
    assert images.shape == (2, 28, 28)
    # the same model, the same seed: GPU and CPU logits differ in rounding only, so the first
    # draws agree (later ones may part where two tokens are nearly tied)
    a, _ = sample(model_gpu, [3, 5], run_dir=tmp_path / "run", top_k=3, seed=1, max_tokens=200)
    assert (a.stream(0)[:20] == batch_cpu.stream(0)[:20]).mean() > 0.8


@cuda
def test_cuda_resume_is_exact(tmp_path, idx_dir):
    full = cfg_for(tmp_path / "a", idx_dir, steps=6, device="cuda", precision="fp32")
    train(full, progress=False)
    part = cfg_for(tmp_path / "b", idx_dir, steps=6, device="cuda", precision="fp32")
    train(part, progress=False, until=3)
    train(part, resume=True, progress=False)
    a = WaveGPTForCausalLM.from_pretrained(tmp_path / "a" / "run" / "model")
    b = WaveGPTForCausalLM.from_pretrained(tmp_path / "b" / "run" / "model")
    for (n, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        assert torch.allclose(p, q, atol=1e-6), n
