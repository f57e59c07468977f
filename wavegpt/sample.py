"""Sampling: batched incremental decoding with a KV cache, the grammar mask at every step,
top-k / top-p / temperature and classifier-free guidance; no illegal stream, ever."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from wavecode import TokenBatch, WaveletTokenizer

from .configuration_wavegpt import PAD_ID

__all__ = ["draw_exponents", "sample"]


def draw_exponents(table: dict, classes, rng) -> np.ndarray:
    """Exponents drawn from the class-conditional counts saved at training time."""
    out = []
    for c in classes:
        counts = table.get(str(int(c))) or {k: v for t in table.values() for k, v in t.items()}
        keys = np.array([int(k) for k in counts])
        p = np.array(list(counts.values()), np.float64)
        out.append(int(rng.choice(keys, p=p / p.sum())))
    return np.array(out, np.int64)


def _filter(logits, top_k, top_p):
    if top_k:
        kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        drop = cum - sorted_logits.softmax(-1) > top_p       # keep the first token always
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    return logits


@torch.no_grad()
def sample(model, classes, *, exponents=None, run_dir=None, top_k: int | None = None,
           top_p: float | None = None, temperature: float = 1.0, cfg: float = 1.0,
           max_tokens: int | None = None, seed: int = 0):
    """Sample one stream per entry of ``classes``; returns ``(TokenBatch, images)``.

    ``exponents`` default to draws from ``run_dir/exponents.json``. ``cfg`` > 1 mixes in the
    null-class prediction (classifier-free guidance).
    """
    model.eval()
    config = model.config
    tok = WaveletTokenizer.from_meta(config.tokenizer)
    classes = np.asarray(classes, np.int64)
    b = len(classes)
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    if exponents is None:
        if run_dir is None:
            raise ValueError("give exponents or the run folder with exponents.json")
        exponents = draw_exponents(json.loads((Path(run_dir) / "exponents.json").read_text()),
                                   classes, rng)
    exponents = np.asarray(exponents, np.int64)
    state = tok.start(b, exponents)
    guided = cfg != 1.0
    reps = 2 if guided else 1
    cls_ids = [config.class_token(c) for c in classes]
    if guided:
        cls_ids += [config.class_token(config.num_classes)] * b
    ids = torch.tensor(cls_ids)[:, None]                                   # (R*B, 1)
    own = torch.full((reps * b, 1, 7), -1, dtype=torch.long)
    e = torch.from_numpy(np.tile(exponents, reps))
    past = None
    streams = [[] for _ in range(b)]
    # no stream is longer than two tokens per coefficient per bit-plane
    limit = max_tokens or int(2 * tok.layout.size * max(1, max(tok.max_planes(x) for x in exponents)))
    for _ in range(limit):
        if state.done.all():
            break
        nxt = torch.from_numpy(state.next_slots().astype(np.int64))[:, None]   # (B, 1, 7)
        mask = torch.from_numpy(state.legal_mask())                             # (B, 7)
        out = model(input_ids=ids, slots=own, next_slots=nxt.repeat(reps, 1, 1), exponents=e,
                    past_key_values=past, use_cache=True)
        past = out.past_key_values
        logits = out.logits[:, -1].float()                                     # (R*B, 7)
        if guided:
            logits = logits[b:] + cfg * (logits[:b] - logits[b:])
        logits = logits / max(temperature, 1e-6)
        logits = logits.masked_fill(~mask, float("-inf"))
        logits = _filter(logits, top_k, top_p)
        done = state.done
        probs = torch.where(torch.from_numpy(done)[:, None], torch.ones_like(logits),
                            logits.softmax(-1).nan_to_num(0.0))
        tok_t = torch.multinomial(probs, 1, generator=gen)[:, 0].numpy().astype(np.int64)
        tok_t[done] = -1
        slots_now = state.next_slots().astype(np.int64)
        state.step(tok_t)
        for i in np.flatnonzero(tok_t >= 0):
            streams[i].append(int(tok_t[i]))
        ids = torch.from_numpy(np.where(tok_t >= 0, tok_t, PAD_ID))[:, None].repeat(reps, 1)
        own = torch.from_numpy(slots_now)[:, None].repeat(reps, 1, 1)
    lens = np.array([len(s) for s in streams])
    offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    flat = np.array([t for s in streams for t in s], np.uint8)
    batch = TokenBatch(flat, offsets, exponents.astype(np.int32), meta=tok.meta)
    return batch, tok.decode(batch)
