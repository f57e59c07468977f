"""One decoding step's input embeddings on the CPU in a single numba call.

:meth:`WaveGPTForCausalLM.embed` is some twenty small torch ops (token, two slot bags with their
'start' rows, coding context, exponent); for 64 rows of one position each, their dispatch costs
more than the sums. :class:`StepEmbedding` gathers and adds the same rows in the same order in
float32, so its result equals ``embed``'s bit for bit (tested).
"""
from __future__ import annotations

import numpy as np
import torch
from numba import njit

__all__ = ["StepEmbedding"]


@njit(cache=True, nogil=True)
def _slot_sum(acc, table, start, top, off, slot, r):  # pragma: no cover - compiled
    """acc += the slot's bag (its 7 field rows summed in field order), or the start row."""
    c = acc.shape[0]
    if slot[r, 0] < 0:
        for x in range(c):
            acc[x] += start[x]
        return
    bag = np.zeros(c, np.float32)
    for f in range(slot.shape[1]):
        row = off[f] + min(max(slot[r, f], 0), top[f])
        for x in range(c):
            bag[x] += table[row, x]
    for x in range(c):
        acc[x] += bag[x]


@njit(cache=True, nogil=True)
def _embed_step(ids, own, nxt, ctx, exps, e_min, e_max, wte, slot_t, slot_start, next_t,
                next_start, top, off, ctx_t, exp_t, out):  # pragma: no cover - compiled
    """out[r] = wte[ids[r]] + slot(own[r]) + slot'(nxt[r]) (+ ctx_t[ctx[r]]) + exp_t[e], with
    e = exps[r] clamped to [e_min, e_max], minus e_min; added left to right as
    ``WaveGPTForCausalLM.embed`` adds them; an empty ``next_t`` / ``ctx_t`` means the model has
    no such input."""
    b, c = out.shape
    acc = np.empty(c, np.float32)
    for r in range(b):
        for x in range(c):
            acc[x] = wte[ids[r], x]
        _slot_sum(acc, slot_t, slot_start, top, off, own, r)
        if next_t.shape[0]:
            _slot_sum(acc, next_t, next_start, top, off, nxt, r)
        if ctx_t.shape[0]:
            k = min(max(ctx[r], 0), ctx_t.shape[0] - 1)
            for x in range(c):
                acc[x] += ctx_t[k, x]
        e = min(max(exps[r], e_min), e_max) - e_min
        for x in range(c):
            out[r, x] = acc[x] + exp_t[e, x]


class StepEmbedding:
    """``model.embed`` for one position per row (B, 1, C), on the CPU in float32.

    Built once per sampling run: it holds numpy views of the model's tables (the concatenated
    slot tables are copies, so build it after the weights are final).
    """

    def __init__(self, model):
        p = next(model.parameters())
        if p.device.type != "cpu" or p.dtype != torch.float32:
            raise ValueError(f"StepEmbedding needs a float32 model on the CPU, not {p.dtype} "
                             f"on {p.device}")
        cfg = model.config
        self.exponent_min, self.exponent_max = cfg.exponent_min, cfg.exponent_max

        def tables(emb):
            if emb is None:
                return np.zeros((0, cfg.n_embd), np.float32), np.zeros(cfg.n_embd, np.float32)
            return (torch.cat([t.weight for t in emb.tables]).detach().numpy(),
                    emb.start.detach().numpy())

        self.slot, self.slot_start = tables(model.slot_emb)
        self.next, self.next_start = tables(model.next_slot_emb)
        # the slot embedding's own clamp bounds and table offsets
        self.top, self.off = (a.numpy() for a in model.slot_emb._index(p.device))
        self.wte = model.transformer.wte.weight.detach().numpy()
        self.exp = model.exp_emb.weight.detach().numpy()
        self.ctx = (model.ctx_emb.weight.detach().numpy() if model.ctx_emb is not None
                    else np.zeros((0, cfg.n_embd), np.float32))

    def __call__(self, ids, own, nxt, exps, ctx=None) -> torch.Tensor:
        """ids (B,), own / nxt (B, 7), exps (B,), ctx (B,) int64 arrays -> (B, 1, C)."""
        b = len(ids)
        if nxt is None:
            nxt = own
        if ctx is None:
            ctx = np.zeros(b, np.int64)
        out = np.empty((b, self.wte.shape[1]), np.float32)
        _embed_step(ids, own, nxt, ctx, np.asarray(exps, np.int64), self.exponent_min,
                    self.exponent_max, self.wte, self.slot, self.slot_start, self.next,
                    self.next_start, self.top, self.off, self.ctx, self.exp, out)
        return torch.from_numpy(out)[:, None, :]                                   # (B, 1, C)
