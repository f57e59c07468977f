"""Token streams (wavecode TokenBatch) -> padded model inputs (see modeling_wavegpt)."""
from __future__ import annotations

import json
from functools import lru_cache

import numpy as np
import torch


__all__ = ["batch_streams", "batch_codes", "legal_masks", "tokenizer_of"]


def batch_streams(batch, labels, config, max_len: int | None = None) -> dict:
    """Padded tensors for the streams of a ``wavecode.TokenBatch``.

    Returns ``input_ids`` (B, T), ``slots`` and ``next_slots`` (B, T, 7), ``exponents`` (B,),
    ``labels`` (B, T) with -100 at padding, ``attention_mask`` (B, T), and with
    ``config.use_context`` ``next_contexts`` (B, T). ``labels`` here are the class labels of the
    images (``config.num_classes`` for the null class).
    """
    b = len(batch)
    lens = batch.lengths
    t = int(lens.max()) if max_len is None else int(max_len)
    t = max(t, 1)
    slots_all = batch.slots
    ids = np.full((b, t), config.pad_id, np.int64)
    own = np.full((b, t, 7), -1, np.int64)
    nxt = np.full((b, t, 7), -1, np.int64)
    tgt = np.full((b, t), -100, np.int64)
    mask = np.zeros((b, t), np.int64)
    for i in range(b):
        n = min(int(lens[i]), t)
        s = batch.stream(i)[:n].astype(np.int64)
        sl = slots_all[batch.offsets[i]:batch.offsets[i] + n].astype(np.int64)
        ids[i, 0] = config.class_token(int(labels[i]))
        ids[i, 1:n] = s[:n - 1]
        own[i, 1:n] = sl[:n - 1]
        nxt[i, :n] = sl
        tgt[i, :n] = s
        mask[i, :max(n, 1)] = 1
    out = {"input_ids": torch.from_numpy(ids), "slots": torch.from_numpy(own),
           "next_slots": torch.from_numpy(nxt),
           "exponents": torch.from_numpy(batch.exponents.astype(np.int64)),
           "labels": torch.from_numpy(tgt), "attention_mask": torch.from_numpy(mask)}
    if getattr(config, "use_context", False):
        ctx_all = tokenizer_of(config).contexts(batch)
        ctx = np.zeros((b, t), np.int64)
        for i in range(b):
            n = min(int(lens[i]), t)
            ctx[i, :n] = ctx_all[batch.offsets[i]:batch.offsets[i] + n]
        out["next_contexts"] = torch.from_numpy(ctx)
    return out


def batch_codes(codes, labels, config, slots) -> dict:
    """Model inputs for fixed-length token sequences (band codes, pixels) ``codes`` (B, L) with
    their ``slots`` (L, 7): as :func:`batch_streams`, no padding, exponents 0."""
    codes = torch.as_tensor(np.asarray(codes, np.int64))                   # (B, L)
    b, n = codes.shape
    cls = torch.tensor([config.class_token(int(c)) for c in labels])[:, None]
    sl = torch.as_tensor(slots, dtype=torch.long)                           # (L, 7)
    own = torch.cat([torch.full((1, 7), -1, dtype=torch.long), sl[:-1]])    # (L, 7)
    return {"input_ids": torch.cat([cls, codes[:, :-1]], 1),               # (B, L)
            "slots": own.expand(b, n, 7), "next_slots": sl.expand(b, n, 7),
            "exponents": torch.zeros(b, dtype=torch.long), "labels": codes,
            "attention_mask": torch.ones(b, n, dtype=torch.long)}


@lru_cache(maxsize=8)
def _tokenizer(meta_json: str):
    from wavecode import WaveletTokenizer
    return WaveletTokenizer.from_meta(json.loads(meta_json))


def tokenizer_of(config):
    """The (cached) tokenizer a model config was trained with."""
    return _tokenizer(json.dumps(config.tokenizer, sort_keys=True))


def legal_masks(batch, tokenizer, max_len: int) -> torch.Tensor:
    """(B, T, 7) bool: the legal set before each token of each stream (the grammar), all True at
    padding so that masking never empties a row."""
    b = len(batch)
    bits = tokenizer.legal_bits(batch)                                      # (N,) uint8
    masks = np.full((b, max_len), 0x7F, np.uint8)
    for i in range(b):
        n = min(int(batch.lengths[i]), max_len)
        masks[i, :n] = bits[batch.offsets[i]:batch.offsets[i] + n]
    unpacked = (masks[..., None] >> np.arange(7, dtype=np.uint8)) & 1       # (B, T, 7)
    return torch.from_numpy(unpacked.astype(np.bool_))
