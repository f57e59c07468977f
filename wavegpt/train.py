"""Training loop (nanoGPT-sized): AdamW, warm-up + cosine, clipping, atomic checkpoints, resume.

A run folder holds ``model/`` (``save_pretrained``), ``trainer.pt`` (optimizer, scheduler, step,
data order, RNG states), ``exponents.json`` (the class-conditional exponent counts that sampling
draws from) and ``log.jsonl``. ``--resume`` continues exactly where the last checkpoint stopped.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from wavecode import WaveletTokenizer
from wavecode._files import write_atomic

from ._checks import check_settings
from ._io import atomic_dir_write, load_torch, load_wavegpt
from .batching import batch_codes, batch_streams, legal_masks
from .configuration_wavegpt import WaveGPTConfig
from .data import codes_cached, load_images, tokenize_cached
from .device import attention_kernels, autocast, resolve_device
from .modeling_wavegpt import WaveGPTForCausalLM
from .tokenizers import KINDS, PixelTokenizer, load_tokenizer

__all__ = ["TrainConfig", "MODEL_PRESETS", "LANGUAGE", "language_of", "tokenization_of", "train",
           "evaluate_bits"]

#: model sizes; ``tiny`` is for a 2-core CPU
MODEL_PRESETS = {
    "tiny": dict(n_embd=128, n_layer=4, n_head=4),
    "small": dict(n_embd=256, n_layer=6, n_head=8),
    "base": dict(n_embd=512, n_layer=8, n_head=8),
}
#: the language each data set is learned in on a CPU: (tokenizer preset, final threshold
#: exponent, token budget). Coarser than the presets' defaults -- a CNN still labels 98.5 % of
#: MNIST reconstructed from 2^-1 (499 tokens on average) and 82.6 % of Fashion-MNIST from the
#: first 512 tokens of 2^-2 (89.3 % on the originals); see the README.
#: FFHQ (RGB, YCbCr, ``image_size`` 32 by default): bior4.4, 2^-3, cut at 1024 tokens -- a
#: starting point, not tuned (FFHQ wants a GPU).
LANGUAGE = {"mnist": ("mnist", -1, None), "fashion-mnist": ("fashion-mnist", -2, 512),
            "ffhq": ("fashion-mnist", -3, 1024)}
#: class labels per data set (FFHQ is unconditional: one class, plus the null class)
NUM_CLASSES = {"mnist": 10, "fashion-mnist": 10, "ffhq": 1}


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
    image_size: int | None = None     # FFHQ resolution (default 32); MNIST sets are 28
    ckpt_every: int = 200
    seed: int = 0
    use_next_slot: bool = True
    use_context: bool = False         # embed the coding context of the next decision
    use_abs_pos: bool = False         # GPT-2's absolute position table (off: slots only)
    masked_loss: bool = True          # renormalise over the legal tokens (as the sampler does)
    bucket: int = 8                   # batches drawn from groups of similar stream lengths
    eval_images: int = 256            # test-split images for bits/image at the end (0: none)
    time_budget: float | None = None  # stop (with a checkpoint) after this many training seconds
    sample_every: int = 0             # a class grid (PNG, and TensorBoard) every N steps
    tensorboard: bool = False         # scalars and sample grids under <out>/tb
    tokens: str = "wavelet"           # wavelet | bandvq | pixel (see wavegpt.tokenizers)
    tokenizer: str | None = None      # bandvq / pixel: a folder from `wavegpt train-tokenizer`
    palette: int = 16                 # pixel, without a tokenizer folder: k-means palette size
    device: str = "auto"              # auto (CUDA when there is one) | cpu | cuda | cuda:N
    precision: str = "auto"           # auto (bf16 autocast on CUDA, fp32 on CPU) | fp32 | bf16

    def __post_init__(self):
        # fail on a bad setting now, not after tokenizing a data set
        if self.dataset not in LANGUAGE:
            raise ValueError(f"unknown dataset {self.dataset!r}; choose from {sorted(LANGUAGE)}")
        if self.preset not in MODEL_PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; choose from "
                             f"{sorted(MODEL_PRESETS)}")
        if self.tokens not in KINDS:
            raise ValueError(f"unknown tokens {self.tokens!r}; choose from {sorted(KINDS)}")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"precision must be auto, fp32 or bf16, not {self.precision!r}")
        check_settings(self, positive=("batch_size", "ckpt_every", "palette"),
                       non_negative=("steps", "warmup", "bucket", "eval_images",
                                     "sample_every"),
                       positive_float=("lr", "grad_clip"), non_negative_float=("weight_decay",),
                       optional_positive=("limit", "image_size", "time_budget"))
        if self.max_tokens is not None and not self.max_tokens >= 0:
            raise ValueError(f"max-tokens must be >= 0 (0: no budget), not {self.max_tokens}")
        if not 0.0 <= self.null_class_prob < 1.0:
            raise ValueError(f"null-class-prob must be in [0, 1), not {self.null_class_prob}")



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


def _lr_at(step: int, cfg: TrainConfig, elapsed: float = 0.0) -> float:
    """Warm-up, then cosine to 10 %: over the steps, or (``steps`` 0) over the time budget."""
    if step < cfg.warmup:
        return (step + 1) / cfg.warmup
    if cfg.steps <= 0:
        frac = elapsed / cfg.time_budget
    else:
        frac = (step - cfg.warmup) / max(cfg.steps - cfg.warmup, 1)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))


def _build(cfg: TrainConfig, tok, max_len: int) -> WaveGPTForCausalLM:
    if cfg.preset not in MODEL_PRESETS:
        raise ValueError(f"unknown preset {cfg.preset!r}; choose from {sorted(MODEL_PRESETS)}")
    if cfg.tokens == "wavelet":
        sizes = dict(max_side=max(tok.padded_shape), max_levels=tok.levels, max_planes=32)
    else:       # band / row / column embeddings: the slot tables sized to the code grid
        sizes = dict(max_side=int(tok.slots[:, 1:3].max()) + 1, max_levels=1, max_planes=1,
                     n_tokens=tok.n_tokens)
    mcfg = WaveGPTConfig(tokenizer=tok.meta, num_classes=NUM_CLASSES[cfg.dataset],
                         use_next_slot=cfg.use_next_slot,
                         use_context=cfg.use_context, use_abs_pos=cfg.use_abs_pos,
                         n_positions=max_len + 1, **sizes, **MODEL_PRESETS[cfg.preset])
    torch.manual_seed(cfg.seed)
    return WaveGPTForCausalLM(mcfg)


def _inputs(data, idx, labels, config, tok, masked: bool, device=None) -> dict:
    """Model inputs (without attention mask) of the sequences ``idx`` of a data set, on
    ``device``."""
    if config.token_kind != "wavelet":
        inputs = batch_codes(data.codes[idx], labels, config, tok.slots)
    else:
        sub = data.batch.subset(idx)
        inputs = batch_streams(sub, labels, config)
        if masked:
            inputs["legal_mask"] = legal_masks(sub, tok, inputs["input_ids"].shape[1])
    # sequences are right-padded and attention is causal, so no real token sees a pad:
    # without a mask, SDPA takes its fused causal kernel
    inputs.pop("attention_mask")
    if device is not None and torch.device(device).type != "cpu":
        inputs = {k: v.to(device, non_blocking=True) for k, v in inputs.items()}
    return inputs


@torch.no_grad()
def evaluate_bits(model, data, tok, n: int, batch_size: int = 16, masked: bool = True) -> float:
    """Mean bits per image (summed token NLL; wavelet streams grammar-masked) over the first
    ``n`` sequences."""
    model.eval()
    dev = next(model.parameters()).device
    total, count = 0.0, 0
    for s in range(0, min(n, len(data)), batch_size):
        idx = np.arange(s, min(s + batch_size, n, len(data)))
        inputs = _inputs(data, idx, data.labels[idx], model.config, tok, masked, dev)
        labels = inputs.pop("labels")
        logp = model(**inputs).logits.float().log_softmax(-1)               # (B, T, 7)
        keep = labels != -100
        nll = -logp.gather(-1, labels.clamp(min=0)[..., None])[..., 0]       # (B, T)
        total += float(nll[keep].sum()) / np.log(2)
        count += len(idx)
    model.train()
    return total / max(count, 1)


def language_of(cfg: TrainConfig) -> WaveletTokenizer:
    """The tokenizer of a run: the data set's CPU language, with ``final_exponent`` /
    ``max_tokens`` overridden where given."""
    if cfg.dataset not in LANGUAGE:
        raise ValueError(f"unknown dataset {cfg.dataset!r}; choose from {sorted(LANGUAGE)}")
    name, fe, budget = LANGUAGE[cfg.dataset]
    if cfg.dataset == "ffhq":
        size = cfg.image_size or 32
        if size < 4:
            raise ValueError(f"image size must be >= 4, not {size}")
        shape = (size, size, 3)
    else:
        if cfg.image_size not in (None, 28):
            raise ValueError(f"{cfg.dataset} images are 28x28; --image-size is for ffhq")
        shape = (28, 28)
    return WaveletTokenizer.from_preset(
        name, shape, final_exponent=fe if cfg.final_exponent is None else cfg.final_exponent,
        max_tokens=budget if cfg.max_tokens is None else (cfg.max_tokens or None))


def tokenization_of(cfg: TrainConfig, run_dir=None):
    """The tokenizer of a run: the wavelet language (:func:`language_of`), or a band-code / pixel
    tokenizer -- the run folder's own copy when resuming, else ``cfg.tokenizer``, else (pixels)
    a palette fitted to the training images."""
    if cfg.tokens not in KINDS:
        raise ValueError(f"unknown tokens {cfg.tokens!r}; choose from {KINDS}")
    if cfg.tokens == "wavelet":
        if cfg.tokenizer is not None:
            raise ValueError("--tokenizer is for --tokens bandvq / pixel")
        return language_of(cfg)
    if cfg.use_context:
        raise ValueError("--context is a wavelet-language input (its coding contexts)")
    if cfg.final_exponent is not None or cfg.max_tokens is not None:
        raise ValueError("--final-exponent / --max-tokens set the wavelet language")
    if cfg.dataset not in NUM_CLASSES:
        raise ValueError(f"unknown dataset {cfg.dataset!r}; choose from {sorted(NUM_CLASSES)}")
    if run_dir is not None and (Path(run_dir) / "tokenizer").is_dir():
        tok = load_tokenizer(Path(run_dir) / "tokenizer")
    elif cfg.tokenizer is not None:
        tok = load_tokenizer(cfg.tokenizer)
    elif cfg.tokens == "pixel":
        images, _ = load_images(cfg.dataset, "train", cfg.data_dir,
                                (cfg.image_size or 32) if cfg.dataset == "ffhq" else None)
        tok = PixelTokenizer.fit(images[:cfg.limit], cfg.palette, seed=cfg.seed)
    else:
        raise ValueError("--tokens bandvq needs --tokenizer: a folder from "
                         "'wavegpt train-tokenizer --kind bandvq'")
    if tok.kind != cfg.tokens:
        raise ValueError(f"{cfg.tokenizer}: a {tok.kind} tokenizer, not {cfg.tokens}")
    return tok


def _distributed(device: torch.device):
    """(world size, rank), joining the process group when started by ``torchrun`` (NCCL
    between GPUs, gloo between CPU processes)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 1, 0
    import torch.distributed as dist
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return world, dist.get_rank()


def _all_sum(x: torch.Tensor, world: int) -> torch.Tensor:
    if world > 1:
        import torch.distributed as dist
        x = x.clone()
        dist.all_reduce(x)
    return x


def _sample_grid(model, run_dir: Path, step: int, writer, seed: int) -> None:
    from wavecode.imageio import write_image
    from wavecode.viz import grid

    from .sample import sample

    classes = np.repeat(np.arange(model.config.num_classes), 4)
    _, images = sample(model, classes, run_dir=run_dir, top_k=3, seed=seed)
    picture = grid(images, ncols=4, scale=2)
    write_image(run_dir / "samples" / f"step{step:06d}.png", picture)
    if writer is not None:
        writer.add_image("samples", picture, step, dataformats="HW")
    model.train()


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True,
          until: int | None = None) -> dict:
    """Train (or resume) a run; returns the last logged metrics. ``until`` stops (with a
    checkpoint) at that step, as an interruption would.

    Under ``torchrun`` each process takes its share of every batch (DDP); the loss is the
    summed token NLL over the whole batch divided by its token count, so that the gradient
    equals a single process's on the same batch. Rank 0 writes the checkpoints and logs.
    """
    from tqdm import tqdm

    device = resolve_device(cfg.device)
    world, rank = _distributed(device)
    if cfg.batch_size % world:
        raise ValueError(f"batch size {cfg.batch_size} does not split over {world} processes")
    if cfg.steps <= 0 and not cfg.time_budget:
        raise ValueError("--steps 0 trains until --time-budget: give one")
    main_proc = rank == 0
    progress = progress and main_proc
    out = Path(cfg.out)
    tok = tokenization_of(cfg, out if resume else None)
    grid = cfg.tokens != "wavelet"
    cached = codes_cached if grid else tokenize_cached
    data = cached(tok, cfg.dataset, "train", cfg.cache_dir, cfg.data_dir, cfg.limit)
    lengths = data.lengths if grid else data.batch.lengths
    max_len = int(lengths.max())
    if resume:
        if not (out / "trainer.pt").exists():
            raise ValueError(f"{out}: no checkpoint to resume from")
        model = load_wavegpt(out)
        state = load_torch(out / "trainer.pt", weights_only=False)
    else:
        model = _build(cfg, tok, max_len)
        state = None
    model.to(device)
    amp = autocast(device, cfg.precision)     # validates cfg.precision before any work
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr,
                            betas=(0.9, 0.95))
    clock = {"elapsed": 0.0}        # the time-budget schedule reads the training clock
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_at(s, cfg, clock["elapsed"]))
    rng = np.random.default_rng(cfg.seed)
    step = 0
    order = _bucketed(rng.permutation(len(data)), lengths, cfg.batch_size, cfg.bucket)
    cursor = 0
    elapsed = 0.0                      # training seconds (data, forward, backward, update)
    if state is not None:
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        step, order, cursor = state["step"], state["order"], state["cursor"]
        elapsed = state.get("elapsed", 0.0)
        clock["elapsed"] = elapsed
        rng.bit_generator.state = state["numpy_rng"]
        torch.set_rng_state(state["torch_rng"])
        if device.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"], device)
    else:
        torch.manual_seed(cfg.seed + 1)
    if main_proc:
        out.mkdir(parents=True, exist_ok=True)
        (out / "exponents.json").write_text(
            json.dumps(data.exponent_table(model.config.num_classes)))
        (out / "train_config.json").write_text(json.dumps(asdict(cfg), indent=1))
        if grid and not (out / "tokenizer").is_dir():
            tok.save(out / "tokenizer")         # sampling decodes with the run's own copy
    net = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                      else None)
    writer = None
    if cfg.tensorboard and main_proc:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ValueError("--tensorboard needs the tensorboard package "
                             "(pip install tensorboard)") from None
        writer = SummaryWriter(str(out / "tb"))

    def checkpoint():
        if not main_proc:
            return
        atomic_dir_write(out / "model", lambda d: model.save_pretrained(d))
        blob = {"optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "step": step,
                "order": order, "cursor": cursor, "elapsed": elapsed,
                "numpy_rng": rng.bit_generator.state,
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                "config": asdict(cfg)}
        write_atomic(out / "trainer.pt", lambda tmp: torch.save(blob, tmp))

    model.train()
    last = {}
    by_time = cfg.steps <= 0
    bar = tqdm(total=cfg.time_budget if by_time else cfg.steps, initial=elapsed if by_time else step,
               disable=not progress, desc="train", unit="s" if by_time else "step",
               bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s {postfix}" if by_time else None)
    log = open(out / "log.jsonl", "a") if main_proc else open(os.devnull, "w")
    try:
        stop = cfg.steps if not by_time else 2 ** 62
        stop = stop if until is None else min(until, stop)
        while step < stop:
            if cursor + cfg.batch_size > len(order):
                order = _bucketed(rng.permutation(len(data)), lengths, cfg.batch_size,
                                  cfg.bucket)
                cursor = 0
            t0 = time.perf_counter()
            idx = order[cursor:cursor + cfg.batch_size]
            cursor += cfg.batch_size
            labels = data.labels[idx].copy()
            labels[rng.random(len(idx)) < cfg.null_class_prob] = model.config.num_classes
            inputs = _inputs(data, idx[rank::world], labels[rank::world], model.config, tok,
                             cfg.masked_loss, device)
            targets = inputs.pop("labels")
            with amp, attention_kernels(device):
                logits = net(**inputs).logits                                 # (B, T, 7)
            nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(),
                                                    targets.reshape(-1), ignore_index=-100,
                                                    reduction="sum")
            n_local = (targets != -100).sum()
            n_all = _all_sum(n_local, world)
            # DDP averages gradients over processes: scale so that the sum is the batch mean
            loss = nll * world / n_all
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            sched.step()
            step += 1
            dt = time.perf_counter() - t0
            elapsed += dt
            clock["elapsed"] = elapsed
            n_tok = int(n_all)
            mean = float(_all_sum(nll.detach(), world)) / n_tok
            last = {"step": step, "loss": mean, "bits_per_token": mean / math.log(2),
                    "bits_per_image": mean / math.log(2) * n_tok / len(idx),
                    "lr": sched.get_last_lr()[0],
                    "tokens_per_s": n_tok / max(dt, 1e-9), "elapsed_s": elapsed}
            log.write(json.dumps(last) + "\n")
            log.flush()
            if writer is not None:
                for key in ("loss", "bits_per_image", "lr", "tokens_per_s"):
                    writer.add_scalar(f"train/{key}", last[key], step)
            if cfg.sample_every and step % cfg.sample_every == 0 and main_proc:
                _sample_grid(model, out, step, writer, cfg.seed + step)
            bar.update(dt if by_time else 1)
            bar.set_postfix(loss=f"{last['loss']:.3f}", tok_s=f"{last['tokens_per_s']:.0f}")
            over = cfg.time_budget is not None and elapsed >= cfg.time_budget
            if world > 1 and cfg.time_budget is not None:   # every process stops together
                over = bool(_all_sum(torch.tensor(int(over), device=device), world) > 0)
            if step % cfg.ckpt_every == 0 or step == stop or over:
                checkpoint()
            if over:
                break
        finished = (not by_time and step >= cfg.steps) or (cfg.time_budget is not None and
                                                            elapsed >= cfg.time_budget)
        if cfg.eval_images and finished and main_proc:
            test = cached(tok, cfg.dataset, "test", cfg.cache_dir, cfg.data_dir,
                          cfg.eval_images)
            last = dict(last, test_bits_per_image=evaluate_bits(model, test, tok,
                                                                cfg.eval_images,
                                                                masked=cfg.masked_loss))
            log.write(json.dumps(last) + "\n")
            if writer is not None:
                writer.add_scalar("test/bits_per_image", last["test_bits_per_image"], step)
    finally:
        log.close()
        bar.close()
        if writer is not None:
            writer.close()
        if world > 1:
            import torch.distributed as dist
            dist.barrier()
            dist.destroy_process_group()
    return last
