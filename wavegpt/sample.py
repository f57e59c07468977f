"""Sampling: batched incremental decoding over a static KV cache, the grammar mask at every step,
top-k / top-p / temperature and classifier-free guidance; no illegal stream, ever.

Band codes and pixels (:mod:`wavegpt.tokenizers`) have no grammar and a fixed length: the same
loop without the mask; their prefixes are code arrays (B, n), continued in raster order.

Rewind: given prefix streams (e.g. earlier samples cut back by ``rewind`` tokens or to their first
``keep_planes`` bit-planes), the model is prefilled with them and only the tail is regenerated,
so the coarse image stays and the details change.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from wavecode import TokenBatch, WaveletTokenizer
from wavecode.viz import MAX_STEPS

from ._embedding import StepEmbedding
from ._io import read_json
from .kv_cache import StaticKVDecoder
from .tokenizers import tokenizer_from_meta

__all__ = ["draw_exponents", "sample", "cut_prefix", "stream_limit"]


def draw_exponents(table: dict, classes, rng) -> np.ndarray:
    """Exponents drawn from the class-conditional counts saved at training time."""
    out = []
    for c in classes:
        counts = table.get(str(int(c))) or {k: v for t in table.values() for k, v in t.items()}
        keys = np.array([int(k) for k in counts])
        p = np.array(list(counts.values()), np.float64)
        out.append(int(rng.choice(keys, p=p / p.sum())))
    return np.array(out, np.int64)


def check_same_language(tokenizer: WaveletTokenizer, batch: TokenBatch) -> None:
    """``ValueError`` when ``batch`` says it was written in another language than
    ``tokenizer``'s (wavelet, thresholds, image shape ...): its tokens would otherwise fail with
    a misleading "illegal token" somewhere. A batch without settings is taken as it is."""
    if not batch.meta:
        return

    def settings(meta):     # a token budget only cuts streams: the same language
        config = {k: v for k, v in meta["config"].items() if k != "max_tokens"}
        return dict(config, image_shape=tuple(meta["image_shape"]))

    theirs, ours = settings(WaveletTokenizer.from_meta(batch.meta).meta), settings(tokenizer.meta)
    diff = [f"{k} {theirs[k]} (the model's: {ours[k]})" for k in ours if theirs[k] != ours[k]]
    if diff:
        raise ValueError("the streams were written in another language than this model's: "
                         + ", ".join(diff))


def cut_prefix(tokenizer: WaveletTokenizer, batch: TokenBatch, rewind: int | None = None,
               keep_planes: int | None = None) -> TokenBatch:
    """Prefixes of ``batch`` to regenerate from: drop the last ``rewind`` tokens of each stream,
    or keep only its first ``keep_planes`` bit-planes."""
    if (rewind is None) == (keep_planes is None):
        raise ValueError("give exactly one of rewind and keep_planes")
    check_same_language(tokenizer, batch)
    if rewind is not None:
        if rewind < 0:
            raise ValueError(f"rewind must be >= 0, not {rewind}")
        return batch.select(np.maximum(batch.lengths - int(rewind), 0))
    if keep_planes < 0:
        raise ValueError(f"keep_planes must be >= 0, not {keep_planes}")
    full = tokenizer.with_slots(batch)
    planes = np.asarray(full.plane_kinds) >> 2
    keep = np.array([int((planes[full.offsets[b]:full.offsets[b + 1]] < keep_planes).sum())
                     for b in range(len(full))])
    return batch.select(keep)


def _filter(logits, top_k, top_p):
    if top_k:
        kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        probs = sorted_logits.softmax(-1)
        drop = probs.cumsum(-1) - probs > top_p       # keep the first token always
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    return logits


def _prefill_inputs(model, tok, prefix: TokenBatch, class_ids, next_slots, next_ctx):
    """Left-aligned inputs of the prefixes: [class, x_0 .. x_{n-1}] with their own and next
    slots (and coding contexts), padded on the left to a common length; returns ids, own, nxt,
    ctx, valid."""
    b = len(prefix)
    lens = prefix.lengths
    width = int(lens.max(initial=0)) + 1
    ids = np.full((b, width), model.config.pad_id, np.int64)
    own = np.full((b, width, 7), -1, np.int64)
    nxt = np.full((b, width, 7), -1, np.int64)
    valid = np.zeros((b, width), np.bool_)
    ctx = np.zeros((b, width), np.int64)
    full = tok.with_slots(prefix) if len(prefix.tokens) else None
    slots = full.slots.astype(np.int64) if full is not None else np.zeros((0, 7), np.int64)
    ctx_all = (tok.contexts(prefix).astype(np.int64) if full is not None and
               model.config.use_context else np.zeros(len(prefix.tokens), np.int64))
    for i in range(b):
        n = int(lens[i])
        lo = width - n - 1
        s = prefix.stream(i).astype(np.int64)
        sl = slots[prefix.offsets[i]:prefix.offsets[i] + n]
        ids[i, lo] = class_ids[i]
        ids[i, lo + 1:] = s
        own[i, lo + 1:] = sl
        nxt[i, lo:width - 1] = sl
        nxt[i, width - 1] = next_slots[i]
        ctx[i, lo:width - 1] = ctx_all[prefix.offsets[i]:prefix.offsets[i] + n]
        ctx[i, width - 1] = next_ctx[i]
        valid[i, lo:] = True
    return ids, own, nxt, ctx, valid


def _check_sampling(top_k, top_p, temperature, cfg, max_tokens, frames, seed=0) -> None:
    """One clear error for a setting out of range (NaN included), before any work."""
    if top_k is not None and not top_k >= 0:
        raise ValueError(f"top-k must be >= 0 (0: off), not {top_k}")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ValueError(f"top-p must be in (0, 1], not {top_p}")
    if not (math.isfinite(temperature) and temperature >= 0):
        raise ValueError(f"temperature must be a finite number >= 0 (0: the most likely "
                         f"legal token), not {temperature}")
    if not (math.isfinite(cfg) and cfg >= 0):
        raise ValueError(f"cfg must be a finite number >= 0 (1: no guidance), not {cfg}")
    if max_tokens is not None and not max_tokens >= 0:
        raise ValueError(f"max-tokens must be >= 0 (0: no cap of its own), not {max_tokens}")
    if not 0 <= seed < 2 ** 63:
        raise ValueError(f"seed must be in 0..2**63 - 1, not {seed}")
    if not 0 <= frames <= MAX_STEPS:
        raise ValueError(f"frames must be in 0..{MAX_STEPS} (one picture each), not {frames}")


@torch.no_grad()
def sample(model, classes, *, exponents=None, run_dir=None, top_k: int | None = None,
           top_p: float | None = None, temperature: float = 1.0, cfg: float = 1.0,
           max_tokens: int | None = None, seed: int = 0, prefix: TokenBatch | None = None,
           frames: int = 0, progress: bool = False, tokenizer=None,
           kv_cache: str = "float32"):
    """Sample one stream per entry of ``classes``; returns ``(TokenBatch, images)``, or
    ``(TokenBatch, images, frames)`` when ``frames`` > 0 (``frames`` snapshots of every image
    taken as the tokens arrive, geometrically spaced in the number of new tokens, (F, B, H, W[,
    3]): the first is the prefix's image, the last the final image).

    ``exponents`` default to draws from ``run_dir/exponents.json`` (or the prefix's). ``cfg`` > 1
    mixes in the null-class prediction (classifier-free guidance). ``prefix`` continues the given
    streams (one per class entry) instead of starting from nothing. ``max_tokens`` caps the
    stream length (a coarser image: any prefix decodes); without it (and without a budget in the
    language) streams stop at the longest training stream.

    ``kv_cache="int16"`` stores the cache's keys and values as int16 with a scale per vector
    (CPU float32 models only; see :class:`~wavegpt.kv_cache.StaticKVDecoder`): half the memory
    traffic per step, logits moved by ~1e-5, so the draws are in practice those of float32;
    ``"int8"`` quarters the traffic and moves logits by ~1e-3 (other, equally legal streams).

    The model may sit on any device; the grammar mask, filters and draws run on the CPU, so a
    seed gives the same draws wherever the logits come from.

    For band-code and pixel models (``model.config.token_kind``) the tokens come back as an
    array (B, L), ``prefix`` is such an array (B, n), ``tokenizer`` defaults to the run folder's
    and neither ``max_tokens`` nor ``frames`` apply: a prefix of their tokens is not an image.
    """
    from tqdm import tqdm

    _check_sampling(top_k, top_p, temperature, cfg, max_tokens, frames, seed)
    model.eval()
    config = model.config
    classes = np.asarray(classes, np.int64).reshape(-1)
    b = len(classes)
    if b == 0:
        raise ValueError("nothing to sample: no classes given")
    if classes.min() < 0 or classes.max() > config.num_classes:
        raise ValueError(f"classes must be in 0..{config.num_classes} "
                         f"({config.num_classes} = the null class)")
    if config.token_kind != "wavelet":
        if frames or max_tokens:
            raise ValueError(f"progressive frames and token budgets are wavelet-language "
                             f"features: a prefix of {config.token_kind} tokens is not an image")
        if tokenizer is None:
            tokenizer = tokenizer_from_meta(config.tokenizer, run_dir)
        return _sample_grid(model, classes, tokenizer, top_k=top_k, top_p=top_p,
                            temperature=temperature, cfg=cfg, seed=seed, prefix=prefix,
                            progress=progress, kv_cache=kv_cache)
    tok = tokenizer or WaveletTokenizer.from_meta(config.tokenizer)
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    if prefix is not None:
        if len(prefix) != b:
            raise ValueError(f"{len(prefix)} prefix streams for {b} samples")
        check_same_language(tok, prefix)
        if exponents is None:
            exponents = prefix.exponents
    if exponents is None:
        if run_dir is None:
            raise ValueError("give exponents or the run folder with exponents.json")
        exponents = draw_exponents(read_json(Path(run_dir) / "exponents.json"), classes, rng)
    exponents = np.asarray(exponents, np.int64).reshape(-1)
    if exponents.shape != (b,):
        raise ValueError(f"need {b} exponents, got {exponents.size}")
    state = tok.start(b, exponents)
    n0 = np.zeros(b, np.int64)
    if prefix is not None:
        # replay the prefixes into the grammar state (raises on an illegal prefix)
        for t in range(int(prefix.lengths.max(initial=0))):
            live = prefix.lengths > t
            state.step(np.where(live, [prefix.stream(i)[t] if live[i] else 0
                                       for i in range(b)], -1))
        n0 = prefix.lengths.astype(np.int64)
    guided = cfg != 1.0
    reps = 2 if guided else 1
    cls_ids = [config.class_token(c) for c in classes]
    null_ids = [config.class_token(config.num_classes)] * b
    limit = stream_limit(config, tok, exponents, max_tokens)
    out_tokens = np.full((b, limit), -1, np.int64)
    for i in range(b):
        n = min(int(n0[i]), limit)
        if prefix is not None and n:
            out_tokens[i, :n] = prefix.stream(i)[:n]
    nxt0 = state.next_slots().astype(np.int64)
    use_ctx = config.use_context
    ctx0 = state.next_contexts().astype(np.int64) if use_ctx else np.zeros(b, np.int64)
    if prefix is not None:
        ids, own, nxt, ctx, valid = _prefill_inputs(model, tok, prefix, cls_ids, nxt0, ctx0)
        if guided:
            ids2 = _prefill_inputs(model, tok, prefix, null_ids, nxt0, ctx0)[0]
            ids = np.concatenate([ids, ids2])
            own, nxt, ctx, valid = (np.concatenate([a, a]) for a in (own, nxt, ctx, valid))
    else:
        ids = np.array(cls_ids + (null_ids if guided else []))[:, None]
        own = np.full((reps * b, 1, 7), -1, np.int64)
        nxt = np.tile(nxt0[:, None], (reps, 1, 1))
        ctx = np.tile(ctx0[:, None], (reps, 1))
        valid = np.ones((reps * b, 1), np.bool_)
    width = ids.shape[1]
    dev = next(model.parameters()).device
    e = _on(np.tile(exponents, reps), dev)
    dec = StaticKVDecoder(model, reps * b, width + int(max(limit - n0.min(), 0)), cache=kv_cache)
    step_embed = StepEmbedding(model) if dec.fused else None
    embeds = model.embed(_on(ids, dev), _on(own, dev), _on(nxt, dev), e,
                         _on(ctx, dev) if use_ctx else None)
    # the mask, filters and draws run on the CPU: the grammar state lives there, and the
    # draws are then the same on any device
    logits = dec.forward(embeds, _on(valid, dev))[:, -1].float().cpu()        # (R*B, 7)
    lengths = n0.copy()
    bar = tqdm(total=int(limit - n0.min()), disable=not progress, desc="sample", unit="tok")
    while True:
        done = state.done | (lengths >= limit)
        if done.all():
            break
        if guided:
            logits = logits[b:] + cfg * (logits[:b] - logits[b:])
        logits = logits / max(temperature, 1e-6)
        mask = torch.from_numpy(state.legal_mask())                                 # (B, 7)
        logits = _filter(logits.masked_fill(~mask, float("-inf")), top_k, top_p)
        probs = logits.softmax(-1).nan_to_num(0.0)
        probs[torch.from_numpy(done)] = 1.0          # finished rows: any draw, then ignored
        tok_t = torch.multinomial(probs, 1, generator=gen)[:, 0].numpy().astype(np.int64)
        tok_t[done] = -1
        own_t = state.next_slots().astype(np.int64)                                 # (B, 7)
        state.step(tok_t)
        live = np.flatnonzero(tok_t >= 0)
        out_tokens[live, lengths[live]] = tok_t[live]
        lengths[live] += 1
        bar.update(1)
        running = ~(state.done | (lengths >= limit))
        if not running.any():
            break
        ids_t = np.where(tok_t >= 0, tok_t, config.pad_id)                            # (B,)
        nxt_t = state.next_slots().astype(np.int64)                                   # (B, 7)
        ctx_t = state.next_contexts().astype(np.int64) if use_ctx else None           # (B,)
        if step_embed is not None:        # the same sums as model.embed, one numba call
            embeds = step_embed(ids_t, own_t, nxt_t, exponents, ctx_t)               # (B, 1, C)
            embeds = embeds.repeat(reps, 1, 1) if guided else embeds                 # (R*B, 1, C)
        else:
            embeds = model.embed(_on(np.tile(ids_t[:, None], (reps, 1)), dev),
                                 _on(np.tile(own_t[:, None], (reps, 1, 1)), dev),
                                 _on(np.tile(nxt_t[:, None], (reps, 1, 1)), dev), e,
                                 _on(np.tile(ctx_t[:, None], (reps, 1)), dev) if use_ctx
                                 else None)
        if step_embed is not None and not running.all():
            # only the streams still running go through the model (a finished one's draws
            # are ignored); the rows' sums stay their own, but the matrix products of fewer
            # rows may round differently in the last bit
            live = np.flatnonzero(np.tile(running, reps))                             # (N,)
            logits = torch.zeros(reps * b, logits.shape[-1])
            logits[live] = dec.forward(embeds[live], rows=live)[:, -1].float()
        else:
            logits = dec.forward(embeds)[:, -1].float().cpu()
    bar.close()
    batch = _batch(tok, out_tokens, lengths, exponents)
    images = tok.decode(batch)
    if frames:
        # a prefix decodes to exactly what the image was when its last token arrived
        new = np.maximum(lengths - n0, 1)
        snaps = [tok.decode(batch.select(np.minimum(n0 + np.rint(new ** f).astype(np.int64),
                                                    lengths)))
                 for f in np.linspace(0.0, 1.0, frames)[1:-1]] if frames > 1 else []
        first = tok.decode(batch.select(n0)) if frames > 1 else None
        stack = ([first] if first is not None else []) + snaps + [images]
        return batch, images, np.stack(stack)
    return batch, images


def stream_limit(config, tok, exponents, max_tokens: int | None = None) -> int:
    """The most tokens a sampled stream may have: ``max_tokens`` (or the language's budget);
    without one, the longest training stream (``n_positions`` - 1) -- the model never saw a
    longer one, and the static cache stays that size (a cut stream still decodes). Never more
    than the grammar allows (two tokens per coefficient per bit-plane), nor, with GPT-2's
    position table, than the table holds."""
    bound = int(2 * tok.layout.size * max(1, max(tok.max_planes(int(x)) for x in exponents)))
    max_tokens = max_tokens or tok.config.max_tokens
    limit = min(bound, int(max_tokens)) if max_tokens else min(bound, config.n_positions - 1)
    if config.use_abs_pos:
        limit = min(limit, config.n_positions - 1)
    return limit


def _on(a: np.ndarray, device) -> torch.Tensor:
    """A numpy array as a tensor on ``device``."""
    t = torch.from_numpy(np.ascontiguousarray(a))
    return t if device.type == "cpu" else t.to(device, non_blocking=True)


def _draw(logits, b, guided, cfg, temperature, top_k, top_p, gen) -> torch.Tensor:
    if guided:
        logits = logits[b:] + cfg * (logits[:b] - logits[b:])
    logits = _filter(logits / max(temperature, 1e-6), top_k, top_p)
    return torch.multinomial(logits.softmax(-1), 1, generator=gen)[:, 0]        # (B,)


@torch.no_grad()
def _sample_grid(model, classes, tok, *, top_k, top_p, temperature, cfg, seed, prefix,
                 progress, kv_cache="float32"):
    """Fixed-length sequences (band codes, pixels) in raster order over the static cache."""
    from tqdm import tqdm

    config = model.config
    b, n = len(classes), tok.tokens_per_image
    if tok.n_tokens != config.n_tokens or tok.kind != config.token_kind:
        raise ValueError(f"a {tok.kind} tokenizer of {tok.n_tokens} codes does not fit this "
                         f"{config.token_kind} model of {config.n_tokens}")
    n0 = 0
    if prefix is not None:
        prefix = np.asarray(prefix, np.int64)
        if prefix.ndim != 2 or len(prefix) != b or prefix.shape[1] >= n:
            raise ValueError(f"prefix codes must have shape ({b}, n) with n < {n}, not "
                             f"{prefix.shape}")
        if prefix.size and (prefix.min() < 0 or prefix.max() >= tok.n_tokens):
            raise ValueError(f"prefix codes must be in 0..{tok.n_tokens - 1}")
        n0 = prefix.shape[1]
    gen = torch.Generator().manual_seed(seed)
    dev = next(model.parameters()).device
    guided = cfg != 1.0
    reps = 2 if guided else 1
    ids = [config.class_token(c) for c in classes]
    if guided:
        ids += [config.class_token(config.num_classes)] * b
    ids = torch.tensor(ids)[:, None]                                              # (R*B, 1)
    slots = torch.as_tensor(tok.slots, dtype=torch.long)                          # (L, 7)
    out = torch.zeros(b, n, dtype=torch.long)
    if n0:
        out[:, :n0] = torch.from_numpy(prefix)
        ids = torch.cat([ids, out[:, :n0].repeat(reps, 1)], 1)                    # (R*B, 1+n0)
    own = torch.cat([torch.full((1, 7), -1, dtype=torch.long), slots[:n0]])       # (1+n0, 7)
    e = torch.zeros(reps * b, dtype=torch.long, device=dev)
    slots_d = slots.to(dev)
    dec = StaticKVDecoder(model, reps * b, n, cache=kv_cache)
    embeds = model.embed(ids.to(dev), own.to(dev).expand(reps * b, -1, -1),
                         slots_d[:n0 + 1].expand(reps * b, -1, -1), e)
    logits = dec.forward(embeds)[:, -1].float().cpu()                             # (R*B, K)
    for t in tqdm(range(n0, n), disable=not progress, desc="sample", unit="tok"):
        out[:, t] = _draw(logits, b, guided, cfg, temperature, top_k, top_p, gen)
        if t == n - 1:
            break
        embeds = model.embed(out[:, t:t + 1].repeat(reps, 1).to(dev),
                             slots_d[t].expand(reps * b, 1, 7),
                             slots_d[t + 1].expand(reps * b, 1, 7), e)
        logits = dec.forward(embeds)[:, -1].float().cpu()
    codes = out.numpy()
    return codes, tok.decode(codes)


def _batch(tok, out_tokens, lengths, exponents) -> TokenBatch:
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    flat = np.concatenate([out_tokens[i, :lengths[i]] for i in range(len(lengths))])
    return TokenBatch(flat.astype(np.uint8), offsets, exponents.astype(np.int32), meta=tok.meta)
