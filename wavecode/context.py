"""The coding context of the next decision: what an EBCOT-style entropy coder conditions on.

Before each token the decoder state already knows, for the coefficient (or the first coefficient
of the block) the token is about:

* ``sig``: the JPEG 2000 significance class (0..8) of its 8 neighbours in the subband, by
  orientation (the same table as the ``.wvc`` codec);
* ``parent``: 0 no parent or not yet significant, 1 significant since this bit-plane, 2 earlier;
* ``ref``: for a refinement, how many planes ago the coefficient became significant (0, 1, 2+).

The id ``(sig * 3 + parent) * 3 + ref`` (``N_CONTEXTS`` = 81 values) is a deterministic function
of the prefix, like the slot. ``wavegpt`` can embed it next to the slot so that a small model does
not have to find the parent and the neighbours by attention (``WaveGPTConfig.use_context``).
"""
from __future__ import annotations

import numpy as np
from numba import njit

from ._codec import _SIG_CLASS, context_tables
from ._scan import (K_DONE, K_REF, NA1, _P, _I, _K, _E, _POW2, _POW2_BIAS, _apply, _begin, _kind,
                    _legal, _reset, _u)
from .layout import subbands

__all__ = ["N_CONTEXTS", "context_tables_of"]

N_CONTEXTS = 81


def context_tables_of(tokenizer):
    """``(nbr, parent, ori)``: per entry, the entries of its 8 neighbours in the subband (-1
    outside), of its parent (-1 none) and its subband orientation."""
    lay = tokenizer.layout
    hp, wp = tokenizer.padded_shape
    nbm, pfl, _, ori = context_tables(lay, subbands(hp, wp, tokenizer.levels), tokenizer.levels,
                                      tokenizer.image_shape[2], blocks=False)
    inv = np.full(lay.channels * lay.height * lay.width, -1, np.int64)
    inv[lay.flat] = np.arange(lay.size)
    offs = [-1, 1, -wp, wp, -wp - 1, -wp + 1, wp - 1, wp + 1]
    nbr = np.full((lay.size, 8), -1, np.int64)
    for j, off in enumerate(offs):
        ok = (nbm >> j) & 1 == 1
        nbr[ok, j] = inv[lay.flat[ok] + off]
    parent = np.where(pfl >= 0, inv[np.maximum(pfl, 0)], -1)
    return nbr, parent.astype(np.int64), np.asarray(ori, np.int64)


@njit(cache=True, nogil=True, inline="always")
def _since(a, t):
    """Planes since a significant coefficient with approximation ``a`` became significant, at
    threshold ``t`` (its |a| lies in [T_s, 2 T_s))."""
    r = abs(a) / t
    n = 0
    while r >= 2.0 and n < 2:
        r *= 0.5
        n += 1
    return n


@njit(cache=True, nogil=True, inline="always")
def _context(i, k, t, sig, approx, nbr, parent, ori):
    h = np.int64(sig[_u(max(nbr[_u(i), 0], 0))] if nbr[_u(i), 0] >= 0 else 0) + \
        np.int64(sig[_u(max(nbr[_u(i), 1], 0))] if nbr[_u(i), 1] >= 0 else 0)
    v = np.int64(sig[_u(max(nbr[_u(i), 2], 0))] if nbr[_u(i), 2] >= 0 else 0) + \
        np.int64(sig[_u(max(nbr[_u(i), 3], 0))] if nbr[_u(i), 3] >= 0 else 0)
    d = np.int64(0)
    for j in range(4, 8):
        q = nbr[_u(i), j]
        if q >= 0:
            d += np.int64(sig[_u(q)])
    c = _SIG_CLASS[_u(ori[_u(i)]), _u(h), _u(v), _u(d)]
    par = 0
    pe = parent[_u(i)]
    if pe >= 0 and sig[_u(pe)]:
        par = 1 if _since(approx[_u(pe)], t) == 0 else 2
    ref = 0
    if k == K_REF:
        ref = _since(approx[_u(i)], t)
    return (c * 3 + par) * 3 + ref


@njit(cache=True, nogil=True, _nrt=False)
def _annotate_scan(tokens, exponent, final_exponent, sig, bsig, qsig, approx,
                   blk, blk_end, quad, quad_end, starts, bits_out, ent_out, pk_out,
                   with_ctx, nbr, parent, ori, ctx_out):
    """Replay ``tokens``, writing what was known before each token ``c``: the legal set as 7
    bits (bit t: token t legal), the compact slot (entry, plane * 4 + kind) and, with
    ``with_ctx``, the coding context. Returns -1, or the index of the first illegal token."""
    n = approx.shape[0]
    _reset(sig, bsig, qsig, approx)
    nplanes = max(exponent - final_exponent + 1, 0)
    p, i, fb, fq, root, k = _begin(n, nplanes, sig, bsig, qsig, blk, quad, starts)
    for c in range(tokens.shape[0]):
        bits = 0
        for t in range(7):
            if _legal(t, i, k, fb, fq, root, blk_end, quad_end):
                bits |= 1 << t
        bits_out[_u(c)] = bits
        ent_out[_u(c)] = i
        pk_out[_u(c)] = (p << 2) | k
        tok = tokens[_u(c)]
        if tok < 0 or tok > NA1 or not (bits >> tok) & 1:
            return c
        t = _POW2[exponent - p + _POW2_BIAS]
        if with_ctx:
            ctx_out[_u(c)] = _context(i, k, t, sig, approx, nbr, parent, ori)
        p, i, fb, fq, root = _apply(tok, p, i, k, fb, fq, root, t, n, sig, bsig, qsig, approx,
                                    blk, blk_end, quad, quad_end)
        k = _kind(p, i, nplanes, sig, bsig, qsig, blk, quad, starts)
    return -1


@njit(cache=True, nogil=True)
def _annotate(tokens, offsets, exps, final_exponent, lay, bits, ents, pks, with_ctx, nbr,
              parent, ori, ctx, errors):
    """:func:`_annotate_scan` over a batch of streams (flat outputs aligned with ``tokens``)."""
    blk, blk_end, quad, quad_end, starts, _, _, _, _, _, _, flat, nblk, nquad = lay
    n = flat.shape[0]
    approx = np.empty(n, np.float64)
    sig = np.empty(n, np.uint8)
    bsig = np.empty(max(nblk, 1), np.int32)
    qsig = np.empty(max(nquad, 1), np.int32)
    for b in range(offsets.shape[0] - 1):
        lo, hi = offsets[b], offsets[b + 1]
        errors[b] = _annotate_scan(tokens[lo:hi], exps[b], final_exponent, sig, bsig, qsig,
                                   approx, blk, blk_end, quad, quad_end, starts, bits[lo:hi],
                                   ents[lo:hi], pks[lo:hi], with_ctx, nbr, parent, ori,
                                   ctx[lo:hi])


@njit(cache=True, nogil=True, _nrt=False)
def _state_contexts(cur, sig, approx, nbr, parent, ori, out):
    for b in range(cur.shape[0]):
        if cur[b, _K] == K_DONE:
            out[b] = 0
        else:
            t = _POW2[cur[b, _E] - cur[b, _P] + _POW2_BIAS]
            out[b] = _context(cur[b, _I], cur[b, _K], t, sig[b], approx[b], nbr, parent, ori)

