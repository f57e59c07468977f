"""``wavegpt train-tokenizer``: fit a pixel palette or train a band-code VQ-VAE.

The output folder is what ``wavegpt train --tokens {bandvq,pixel} --tokenizer FOLDER`` reads:
``tokenizer_config.json`` (+ ``config.json`` and ``model.safetensors`` for band codes) and
``metrics.json`` (reconstruction PSNR on the test split, code usage, training time).
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from wavecode._files import write_atomic

from ._checks import check_settings
from .data import load_images
from .device import resolve_device
from .tokenizers import BandVQTokenizer, PixelTokenizer

__all__ = ["TokenizerTrainConfig", "train_tokenizer", "psnr"]


@dataclass
class TokenizerTrainConfig:
    kind: str = "bandvq"
    dataset: str = "mnist"
    out: str = "tokenizers/bandvq-mnist"
    data_dir: str | None = None
    image_size: int | None = None     # ffhq side (default 32)
    limit: int | None = None
    seed: int = 0
    eval_images: int = 1000
    # pixel
    palette: int = 16
    # bandvq
    wavelet: str = "haar"
    codebook_size: int = 256
    code_dim: int = 16
    hidden: int = 32
    downsample: int = 1
    quantizer: str = "ema"
    commitment: float = 0.25
    steps: int = 2000
    batch_size: int = 64
    lr: float = 2e-3
    time_budget: float | None = None
    device: str = "auto"              # auto (CUDA when there is one) | cpu | cuda | cuda:N

    def __post_init__(self):
        if self.kind not in ("bandvq", "pixel"):
            raise ValueError(f"kind must be bandvq or pixel (the wavelet language needs no "
                             f"training), not {self.kind!r}")
        if self.quantizer not in ("ema", "st"):
            raise ValueError(f"quantizer must be ema or st, not {self.quantizer!r}")
        check_settings(self, positive=("palette", "codebook_size", "code_dim", "hidden",
                                       "downsample", "batch_size"),
                       non_negative=("steps", "eval_images"), positive_float=("lr",),
                       non_negative_float=("commitment",),
                       optional_positive=("limit", "image_size", "time_budget"))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over images of the PSNR (dB, peak 255) of images, uint8 or float in [0, 1] (as the
    wavelet tokenizer decodes); an exact image counts 100."""
    def scaled(x):
        x = np.asarray(x)
        y = x.astype(np.float64) * (255.0 if x.dtype.kind == "f" else 1.0)
        return y.reshape(len(y), -1)
    a, b = scaled(a), scaled(b)
    mse = ((a - b) ** 2).mean(1)
    return float(np.mean(np.where(mse > 0, 10 * np.log10(255.0 ** 2 / np.maximum(mse, 1e-12)),
                                  100.0)))


def _usage(codes: np.ndarray, n_codes: int) -> dict:
    """Codes in use and perplexity (exp of the entropy of code frequencies) per band, of codes
    (N, bands, h, w)."""
    codes = codes.reshape(len(codes), codes.shape[1], -1)
    used, perp = [], []
    for band in range(codes.shape[1]):
        f = np.bincount(codes[:, band].ravel(), minlength=n_codes) / codes[:, band].size
        nz = f[f > 0]
        used.append(int((f > 0).sum()))
        perp.append(float(np.exp(-(nz * np.log(nz)).sum())))
    return {"codes_used": used, "perplexity": perp}


def _fit_bandvq(cfg: TokenizerTrainConfig, images: np.ndarray, progress: bool):
    from tqdm import tqdm

    from .configuration_bandvq import BandVQConfig
    from .modeling_bandvq import BandVQModel

    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    shape = images.shape[1:3] + ((images.shape[3],) if images.ndim == 4 else (1,))
    mcfg = BandVQConfig(image_shape=shape, wavelet=cfg.wavelet, codebook_size=cfg.codebook_size,
                        code_dim=cfg.code_dim, hidden=cfg.hidden, downsample=cfg.downsample,
                        quantizer=cfg.quantizer, commitment=cfg.commitment)
    mcfg.validate()
    model = BandVQModel(mcfg)
    # per-band normalisation from the data, so that each band's L1 weighs alike
    probe = model._pixels(images[rng.choice(len(images), min(2000, len(images)), replace=False)])
    bands = model.dwt(probe)                                               # (N, 4, C, h, w)
    mean = bands.mean(dim=(0, 2, 3, 4))
    std = bands.std(dim=(0, 2, 3, 4)).clamp(min=1e-3)
    mcfg.band_mean, mcfg.band_std = mean.tolist(), std.tolist()
    mcfg.pixel_std = float(probe.std().clamp(min=1e-3))
    model.band_mean.copy_(mean.view(1, 4, 1, 1, 1))
    model.band_std.copy_(std.view(1, 4, 1, 1, 1))
    model.to(device)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.lr)
    warm = min(100, cfg.steps // 10 + 1)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * (0.1 + 0.45 * (1 + math.cos(
            math.pi * min(s / max(cfg.steps, 1), 1.0)))))
    x_all = model._pixels(images).to(device)
    model.train()
    elapsed, step, last = 0.0, 0, {}
    bar = tqdm(total=cfg.steps, disable=not progress, desc="bandvq", unit="step")
    while step < cfg.steps:
        t0 = time.perf_counter()
        idx = torch.from_numpy(rng.integers(0, len(x_all), cfg.batch_size)).to(device)
        out = model(x_all[idx])
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        opt.step()
        sched.step()
        step += 1
        elapsed += time.perf_counter() - t0
        last = {"step": step, "loss": float(out["loss"].detach()), "image_loss": float(out["image_loss"]),
                "band_l1": [round(float(v), 4) for v in out["band_l1"]],
                "restarted": out["restarted"], "elapsed_s": elapsed}
        bar.update(1)
        bar.set_postfix(loss=f"{last['loss']:.3f}", img=f"{last['image_loss']:.3f}")
        if cfg.time_budget is not None and elapsed >= cfg.time_budget:
            break
    bar.close()
    return BandVQTokenizer(model.eval()), last


def train_tokenizer(cfg: TokenizerTrainConfig, progress: bool = True) -> dict:
    """Fit / train the tokenizer, save it to ``cfg.out`` (atomically), return its metrics."""
    size = (cfg.image_size or 32) if cfg.dataset == "ffhq" else None
    images, _ = load_images(cfg.dataset, "train", cfg.data_dir, size)
    images = images[:cfg.limit]
    t0 = time.perf_counter()
    if cfg.kind == "pixel":
        tok, last = PixelTokenizer.fit(images, cfg.palette, seed=cfg.seed), {}
    else:
        tok, last = _fit_bandvq(cfg, images, progress)
    train_s = time.perf_counter() - t0
    test, _ = load_images(cfg.dataset, "test", cfg.data_dir, size)
    test = test[:cfg.eval_images]
    codes = tok.encode(test)
    rec = tok.decode(codes)
    metrics = {"kind": cfg.kind, "dataset": cfg.dataset, "tokens_per_image": tok.tokens_per_image,
               "n_tokens": tok.n_tokens, "test_psnr_db": psnr(test, rec),
               "test_images": int(len(test)), "train_s": train_s, "config": asdict(cfg),
               "last_step": last}
    if cfg.kind == "bandvq":
        metrics.update(_usage(codes.reshape((len(codes),) + tok.code_shape), tok.n_tokens))
    out = Path(cfg.out)
    tok.save(out)
    write_atomic(out / "metrics.json", lambda tmp: tmp.write_text(json.dumps(metrics, indent=1)))
    return metrics
