"""Training loop (nanoGPT-sized): AdamW, warm-up + cosine, clipping, atomic checkpoints, resume.

A run folder holds ``model/`` (``save_pretrained``), ``trainer.pt`` (optimizer, scheduler, step,
data order, RNG states), ``exponents.json`` (the class-conditional exponent counts that sampling
draws from) and ``log.jsonl``. ``--resume`` continues exactly where the last checkpoint stopped.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from wavecode import WaveletTokenizer

from .batching import batch_streams, legal_masks
from .configuration_wavegpt import WaveGPTConfig
from .data import tokenize_cached
from .modeling_wavegpt import WaveGPTForCausalLM

__all__ = ["TrainConfig", "MODEL_PRESETS", "train", "evaluate_bits"]

#: model sizes; ``tiny`` is for a 2-core CPU
MODEL_PRESETS = {
    "tiny": dict(n_embd=128, n_layer=4, n_head=4),
    "small": dict(n_embd=256, n_layer=6, n_head=8),
    "base": dict(n_embd=512, n_layer=8, n_head=8),
}
LANGUAGE = {"mnist": ("mnist", -2), "fashion-mnist": ("fashion-mnist", -3)}


@dataclass
class TrainConfig:
    dataset: str = "mnist"
    preset: str = "tiny"
    out: str = "runs/mnist-tiny"
    data_dir: str | None = None
    cache_dir: str = ".cache/wavegpt"
    steps: int = 1000
    batch_size: int = 16
    lr: float = 3e-3
    warmup: int = 50
    weight_decay: float = 0.05
    grad_clip: float = 1.0
    null_class_prob: float = 0.1
    final_exponent: int | None = None
    max_tokens: int | None = None
    limit: int | None = None
    ckpt_every: int = 200
    seed: int = 0
    use_next_slot: bool = True
    masked_loss: bool = True          # renormalise over the legal tokens (as the sampler does)
    bucket: int = 8                   # batches drawn from groups of similar stream lengths
    eval_images: int = 256            # test-split images for bits/image at the end (0: none)


def _atomic_dir_write(target: Path, write) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
    try:
        write(tmp)
        old = target.with_name(f".{target.name}-old")
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _bucketed(perm: np.ndarray, lengths: np.ndarray, batch_size: int, bucket: int) -> np.ndarray:
    """Reorder a permutation so that each batch holds streams of similar length (less padding):
    windows of ``bucket`` batches are sorted by length, then their batches shuffled back."""
    if bucket <= 1:
        return perm
    out = []
    w = batch_size * bucket
    for s in range(0, len(perm), w):
        win = perm[s:s + w]
        win = win[np.argsort(lengths[win], kind="stable")]
        batches = [win[j:j + batch_size] for j in range(0, len(win), batch_size)]
        # deterministic interleave (no RNG draw, so resume stays exact)
        batches = batches[::2] + batches[1::2]
        out.extend(batches)
    return np.concatenate(out) if out else perm


def _lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return (step + 1) / cfg.warmup
    frac = (step - cfg.warmup) / max(cfg.steps - cfg.warmup, 1)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))


def _build(cfg: TrainConfig, tok: WaveletTokenizer, max_len: int) -> WaveGPTForCausalLM:
    if cfg.preset not in MODEL_PRESETS:
        raise ValueError(f"unknown preset {cfg.preset!r}; choose from {sorted(MODEL_PRESETS)}")
    side = max(tok.padded_shape)
    mcfg = WaveGPTConfig(tokenizer=tok.meta, num_classes=10, use_next_slot=cfg.use_next_slot,
                         n_positions=max_len, max_side=side, max_levels=tok.levels,
                         max_planes=32, **MODEL_PRESETS[cfg.preset])
    torch.manual_seed(cfg.seed)
    return WaveGPTForCausalLM(mcfg)


@torch.no_grad()
def evaluate_bits(model, data, tok, n: int, batch_size: int = 16, masked: bool = True) -> float:
    """Mean bits per image (summed token NLL, grammar-masked) over the first ``n`` streams."""
    model.eval()
    total, count = 0.0, 0
    for s in range(0, min(n, len(data)), batch_size):
        idx = np.arange(s, min(s + batch_size, n, len(data)))
        sub = data.batch.subset(idx)
        inputs = batch_streams(sub, data.labels[idx], model.config)
        inputs.pop("attention_mask")
        if masked:
            inputs["legal_mask"] = legal_masks(sub, tok, inputs["input_ids"].shape[1])
        labels = inputs.pop("labels")
        logp = model(**inputs).logits.float().log_softmax(-1)               # (B, T, 7)
        keep = labels != -100
        nll = -logp.gather(-1, labels.clamp(min=0)[..., None])[..., 0]       # (B, T)
        total += float(nll[keep].sum()) / np.log(2)
        count += len(idx)
    model.train()
    return total / max(count, 1)


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True,
          until: int | None = None) -> dict:
    """Train (or resume) a run; returns the last logged metrics. ``until`` stops (with a
    checkpoint) at that step, as an interruption would."""
    from tqdm import tqdm

    out = Path(cfg.out)
    name, fe = LANGUAGE.get(cfg.dataset, (None, None))
    if name is None:
        raise ValueError(f"unknown dataset {cfg.dataset!r}; choose from {sorted(LANGUAGE)}")
    tok = WaveletTokenizer.from_preset(
        name, (28, 28), final_exponent=fe if cfg.final_exponent is None else cfg.final_exponent,
        max_tokens=cfg.max_tokens)
    data = tokenize_cached(tok, cfg.dataset, "train", cfg.cache_dir, cfg.data_dir, cfg.limit)
    max_len = int(data.batch.lengths.max())
    if resume:
        if not (out / "trainer.pt").exists():
            raise ValueError(f"{out}: no checkpoint to resume from")
        model = WaveGPTForCausalLM.from_pretrained(out / "model")
        state = torch.load(out / "trainer.pt", weights_only=False)
    else:
        model = _build(cfg, tok, max_len)
        state = None
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr,
                            betas=(0.9, 0.95))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_at(s, cfg))
    rng = np.random.default_rng(cfg.seed)
    step = 0
    order = _bucketed(rng.permutation(len(data)), data.batch.lengths, cfg.batch_size, cfg.bucket)
    cursor = 0
    if state is not None:
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        step, order, cursor = state["step"], state["order"], state["cursor"]
        rng.bit_generator.state = state["numpy_rng"]
        torch.set_rng_state(state["torch_rng"])
    else:
        torch.manual_seed(cfg.seed + 1)
    out.mkdir(parents=True, exist_ok=True)
    (out / "exponents.json").write_text(json.dumps(data.exponent_table(10)))

    def checkpoint():
        _atomic_dir_write(out / "model", lambda d: model.save_pretrained(d))
        blob = {"optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "step": step,
                "order": order, "cursor": cursor, "numpy_rng": rng.bit_generator.state,
                "torch_rng": torch.get_rng_state(), "config": asdict(cfg)}
        tmp = out / ".trainer.pt.tmp"
        torch.save(blob, tmp)
        os.replace(tmp, out / "trainer.pt")

    model.train()
    last = {}
    bar = tqdm(total=cfg.steps, initial=step, disable=not progress, desc="train", unit="step")
    log = open(out / "log.jsonl", "a")
    try:
        stop = cfg.steps if until is None else min(until, cfg.steps)
        while step < stop:
            if cursor + cfg.batch_size > len(order):
                order = _bucketed(rng.permutation(len(data)), data.batch.lengths,
                                  cfg.batch_size, cfg.bucket)
                cursor = 0
            idx = order[cursor:cursor + cfg.batch_size]
            cursor += cfg.batch_size
            labels = data.labels[idx].copy()
            labels[rng.random(len(idx)) < cfg.null_class_prob] = 10   # the null class
            sub = data.batch.subset(idx)
            inputs = batch_streams(sub, labels, model.config)
            if cfg.masked_loss:
                inputs["legal_mask"] = legal_masks(sub, tok, inputs["input_ids"].shape[1])
            # streams are right-padded and attention is causal, so no real token sees a pad:
            # without a mask, SDPA takes its fused causal kernel
            inputs.pop("attention_mask")
            t0 = time.perf_counter()
            loss = model(**inputs).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            sched.step()
            step += 1
            n_tok = int((inputs["labels"] != -100).sum())
            last = {"step": step, "loss": loss.item(), "bits_per_token": loss.item() / math.log(2),
                    "bits_per_image": loss.item() / math.log(2) * n_tok / len(idx),
                    "lr": sched.get_last_lr()[0],
                    "tokens_per_s": n_tok / max(time.perf_counter() - t0, 1e-9)}
            log.write(json.dumps(last) + "\n")
            log.flush()
            bar.update(1)
            bar.set_postfix(loss=f"{last['loss']:.3f}", tok_s=f"{last['tokens_per_s']:.0f}")
            if step % cfg.ckpt_every == 0 or step == stop:
                checkpoint()
        if cfg.eval_images and step >= cfg.steps:
            test = tokenize_cached(tok, cfg.dataset, "test", cfg.cache_dir, cfg.data_dir,
                                   cfg.eval_images)
            last = dict(last, test_bits_per_image=evaluate_bits(model, test, tok,
                                                                cfg.eval_images,
                                                                masked=cfg.masked_loss))
            log.write(json.dumps(last) + "\n")
    finally:
        log.close()
        bar.close()
    return last
