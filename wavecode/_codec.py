"""Numba kernels of the ``.wvc`` codec: the wavelet-language scan, entropy coded.

The scan is :mod:`wavecode._scan`'s (``_kind`` / ``_legal`` / ``_choose`` / ``_apply``): each token
is binarized into the decisions it answers and each decision is coded with an adaptive binary
range coder (LZMA's carry-less design, 16-bit probabilities mixed from a fast and a slow
estimate). Decisions the grammar forces (e.g. the fourth 2x2 of a split 4x4 block whose first
three were empty) are not coded at all.

Binarization of a token at a decision of kind k:

* group4: ``split`` (0 = Group4x4); after a split the same entry answers a group2 decision;
* group2: ``split`` (0 = Group2x2); after a split, a coefficient decision;
* coefficient: ``significant`` (0 = Insignificant); then the sign (NowSignificantPos/Neg);
* refinement: the bit (NextAccuracy0/1).

Contexts (the ideas of EBCOT / ECECOW): significance from the 8 neighbours' significance (the
JPEG 2000 tables, by orientation), the parent's significance, the resolution class and luma vs
chroma; sign from the horizontal and vertical neighbours' signs (JPEG 2000's 5 contexts and sign
prediction); refinement from how many refinements the coefficient has had and its neighbourhood;
group decisions from the parent and the left / upper neighbours.

Truncation: the decoder stops at the first decision whose bits are not all in the data, so any
prefix of a stream decodes to exactly the tokens the encoder emitted before that point.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from ._scan import (G2, G4, INS, K_COEF, K_DONE, K_G2, K_G4, K_REF, NA0, NSN, NSP, _POW2,
                    _POW2_BIAS, _apply, _choose, _kind, _legal, _reset, _u)

PROB_BITS = 16
_P_ONE = 1 << PROB_BITS
_TOP = 1 << 24
_FAST = 4
_SLOW = 7
# context offsets
C_G4 = 0          # 24: (band class * 2 + chroma) * 4 + parent * 2 + neighbour
C_G2 = 24         # 24
C_SIG = 48        # 108: ((band class * 2 + chroma) * 2 + parent) * 9 + JPEG 2000 class
C_SIGN = 156      # 10: chroma * 5 + sign class
C_REF = 166       # 12: (chroma * 3 + refinement index) * 2 + neighbour
N_CTX = 178

# JPEG 2000 sign coding: (h + 1, v + 1) -> context, xor bit
_SIGN_CTX = np.array([[4, 3, 2], [1, 0, 1], [2, 3, 4]], np.int64)
_SIGN_XOR = np.array([[1, 1, 1], [1, 0, 0], [0, 0, 0]], np.int64)


# --- the range coder ---------------------------------------------------------------------------

@njit(cache=True, nogil=True, inline="always")
def _prob(p1, p2, ctx):
    return (p1[ctx] + p2[ctx]) >> 1


@njit(cache=True, nogil=True, inline="always")
def _adapt(p1, p2, ctx, bit):
    if bit:
        p1[ctx] -= p1[ctx] >> _FAST
        p2[ctx] -= p2[ctx] >> _SLOW
    else:
        p1[ctx] += (_P_ONE - p1[ctx]) >> _FAST
        p2[ctx] += (_P_ONE - p2[ctx]) >> _SLOW


@njit(cache=True, nogil=True, inline="always")
def _enc_shift(st, out):
    # st: low, range, cache, cache_size, pos
    low = st[0]
    if low < 0xFF000000 or low >= 0x100000000:
        carry = low >> 32
        temp = st[2]
        while True:
            out[st[4]] = (temp + carry) & 0xFF
            st[4] += 1
            temp = 0xFF
            st[3] -= 1
            if st[3] == 0:
                break
        st[2] = (low >> 24) & 0xFF
    st[3] += 1
    st[0] = (low & 0x00FFFFFF) << 8


@njit(cache=True, nogil=True, inline="always")
def _enc_bit(st, out, p1, p2, ctx, bit):
    p = _prob(p1, p2, ctx)
    bound = (st[1] >> PROB_BITS) * p
    if bit:
        st[0] += bound
        st[1] -= bound
    else:
        st[1] = bound
    _adapt(p1, p2, ctx, bit)
    while st[1] < _TOP:
        st[1] <<= 8
        _enc_shift(st, out)


@njit(cache=True, nogil=True, inline="always")
def _dec_bit(st, data, p1, p2, ctx):
    """Decode one decision; st: code, range, pos, exhausted. After a byte is found missing,
    ``st[3]`` is set and the caller must stop (the returned bit is still exact)."""
    p = _prob(p1, p2, ctx)
    bound = (st[1] >> PROB_BITS) * p
    if st[0] < bound:
        st[1] = bound
        bit = 0
    else:
        st[0] -= bound
        st[1] -= bound
        bit = 1
    _adapt(p1, p2, ctx, bit)
    while st[1] < _TOP:
        if st[2] >= data.shape[0]:
            st[3] = 1
            break
        st[1] <<= 8
        st[0] = ((st[0] << 8) | data[st[2]]) & 0xFFFFFFFF
        st[2] += 1
    return bit


# --- contexts ----------------------------------------------------------------------------------

@njit(cache=True, nogil=True, inline="always")
def _at(sgn, plane_off, width, r, c, r0, c0, h, w):
    """Sign (-1, 0, +1) of the coefficient at pyramid (r, c), 0 outside the band."""
    if r < r0 or r >= r0 + h or c < c0 or c >= c0 + w:
        return 0
    return sgn[plane_off + r * width + c]


@njit(cache=True, nogil=True, inline="always")
def _parent_sig(sgn, plane_off, width, s, r, c, bands, parent):
    ps = parent[s]
    if ps < 0:
        return 0
    sh = 1 if bands[ps, 4] < bands[s, 4] and bands[s, 4] > 1 else 0
    pr = bands[ps, 0] + min((r - bands[s, 0]) >> sh, bands[ps, 2] - 1)
    pc = bands[ps, 1] + min((c - bands[s, 1]) >> sh, bands[ps, 3] - 1)
    return 1 if sgn[plane_off + pr * width + pc] != 0 else 0


@njit(cache=True, nogil=True, inline="always")
def _sig_class(sgn, plane_off, width, r, c, r0, c0, h, w, orient):
    hh = (abs(_at(sgn, plane_off, width, r, c - 1, r0, c0, h, w))
          + abs(_at(sgn, plane_off, width, r, c + 1, r0, c0, h, w)))
    vv = (abs(_at(sgn, plane_off, width, r - 1, c, r0, c0, h, w))
          + abs(_at(sgn, plane_off, width, r + 1, c, r0, c0, h, w)))
    dd = (abs(_at(sgn, plane_off, width, r - 1, c - 1, r0, c0, h, w))
          + abs(_at(sgn, plane_off, width, r - 1, c + 1, r0, c0, h, w))
          + abs(_at(sgn, plane_off, width, r + 1, c - 1, r0, c0, h, w))
          + abs(_at(sgn, plane_off, width, r + 1, c + 1, r0, c0, h, w)))
    if orient == 1:  # horizontally high-pass: JPEG 2000 swaps the roles of h and v
        tmp = hh
        hh = vv
        vv = tmp
    if orient == 3:
        hv = hh + vv
        if dd >= 3:
            return 8
        if dd == 2:
            return 7 if hv >= 1 else 6
        if dd == 1:
            return 5 if hv >= 2 else (4 if hv == 1 else 3)
        return 2 if hv >= 2 else hv
    if hh == 2:
        return 8
    if hh == 1:
        if vv >= 1:
            return 7
        return 6 if dd >= 1 else 5
    if vv == 2:
        return 4
    if vv == 1:
        return 3
    return 2 if dd >= 2 else dd


@njit(cache=True, nogil=True, inline="always")
def _context(k, tok_stage, i, p, sgn, sp, flat, row, col, ch, sb, bands, parent, bclass,
             height, width, chroma_from):
    """Context of the decision ``tok_stage`` (0 group4, 1 group2, 2 significance, 3 sign,
    4 refinement) at entry ``i``; for sign also returns the xor bit."""
    s = sb[i]
    r = row[i]
    c = col[i]
    chan = ch[i]
    plane_off = chan * height * width
    r0 = bands[s, 0]
    c0 = bands[s, 1]
    h = bands[s, 2]
    w = bands[s, 3]
    chroma = 1 if chan >= chroma_from else 0
    cls = bclass[s]
    if tok_stage <= 1:
        par = _parent_sig(sgn, plane_off, width, s, r, c, bands, parent)
        nb = 1 if (_at(sgn, plane_off, width, r, c - 1, r0, c0, h, w) != 0
                   or _at(sgn, plane_off, width, r - 1, c, r0, c0, h, w) != 0) else 0
        base = C_G4 if tok_stage == 0 else C_G2
        return base + (cls * 2 + chroma) * 4 + par * 2 + nb, 0
    if tok_stage == 2:
        par = _parent_sig(sgn, plane_off, width, s, r, c, bands, parent)
        cl = _sig_class(sgn, plane_off, width, r, c, r0, c0, h, w, bands[s, 5])
        return C_SIG + ((cls * 2 + chroma) * 2 + par) * 9 + cl, 0
    if tok_stage == 3:
        hs = (_at(sgn, plane_off, width, r, c - 1, r0, c0, h, w)
              + _at(sgn, plane_off, width, r, c + 1, r0, c0, h, w))
        vs = (_at(sgn, plane_off, width, r - 1, c, r0, c0, h, w)
              + _at(sgn, plane_off, width, r + 1, c, r0, c0, h, w))
        hs = max(-1, min(1, hs)) + 1
        vs = max(-1, min(1, vs)) + 1
        return C_SIGN + chroma * 5 + _SIGN_CTX[hs, vs], _SIGN_XOR[hs, vs]
    ri = min(p - sp[i], 2)
    nbr = 0
    for dr in range(-1, 2):
        for dc in range(-1, 2):
            if (dr != 0 or dc != 0) and _at(sgn, plane_off, width, r + dr, c + dc,
                                             r0, c0, h, w) != 0:
                nbr = 1
    return C_REF + (chroma * 3 + ri) * 2 + nbr, 0


# --- encode / decode ---------------------------------------------------------------------------

@njit(cache=True, nogil=True)
def _codec_encode(vals, exponent, final_exponent, budget, lay, bands, parent, bclass, height,
                  width, chroma_from, total):
    """Entropy-code the scan of ``vals`` (coefficients in scan order) until the stream ends or
    ``budget`` bytes are written. Returns (bytes, number of tokens coded)."""
    blk, blk_end, quad, quad_end, starts, row, col, ch, sb, _, _, flat, nblk, nquad = lay
    n = vals.shape[0]
    mags = np.empty(n, np.float64)
    approx = np.empty(n, np.float64)
    sig = np.empty(n, np.uint8)
    bsig = np.empty(max(nblk, 1), np.int32)
    qsig = np.empty(max(nquad, 1), np.int32)
    bmax = np.zeros(max(nblk, 1), np.float64)
    qmax = np.zeros(max(nquad, 1), np.float64)
    _reset(sig, bsig, qsig, approx)
    for i in range(n):
        m = abs(vals[i])
        mags[i] = m
        if blk[i] >= 0 and m > bmax[blk[i]]:
            bmax[blk[i]] = m
        if quad[i] >= 0 and m > qmax[quad[i]]:
            qmax[quad[i]] = m
    sgn = np.zeros(total, np.int8)  # sign of every significant coefficient, pyramid layout
    sp = np.zeros(n, np.int16)
    p1 = np.full(N_CTX, _P_ONE // 2, np.int64)
    p2 = np.full(N_CTX, _P_ONE // 2, np.int64)
    cap = 1 << 16
    out = np.empty(cap, np.uint8)
    st = np.zeros(5, np.int64)
    st[1] = 0xFFFFFFFF
    st[3] = 1
    nplanes = max(exponent - final_exponent + 1, 0)
    p = 0
    i = 0
    fb = -1
    fq = -1
    root = n
    k = _kind(p, i, nplanes, sig, bsig, qsig, blk, quad, starts)
    count = 0
    while k != K_DONE and st[4] < budget:
        if st[4] + 64 > out.shape[0]:
            bigger = np.empty(2 * out.shape[0], np.uint8)
            bigger[:st[4]] = out[:st[4]]
            out = bigger
        t = _POW2[exponent - p + _POW2_BIAS]
        tok = _choose(k, i, t, vals, mags, approx, bmax, qmax, blk, quad)
        if k == K_REF:
            ctx, _ = _context(k, 4, i, p, sgn, sp, flat, row, col, ch, sb, bands, parent, bclass,
                              height, width, chroma_from)
            _enc_bit(st, out, p1, p2, ctx, tok - NA0)
        else:
            stage_done = False
            if k == K_G4 and _legal(G4, i, k, fb, fq, root, blk_end, quad_end):
                ctx, _ = _context(k, 0, i, p, sgn, sp, flat, row, col, ch, sb, bands, parent,
                                  bclass, height, width, chroma_from)
                _enc_bit(st, out, p1, p2, ctx, 0 if tok == G4 else 1)
                stage_done = tok == G4
            if not stage_done and k != K_COEF and _legal(G2, i, k, fb, fq, root, blk_end,
                                                         quad_end):
                ctx, _ = _context(k, 1, i, p, sgn, sp, flat, row, col, ch, sb, bands, parent,
                                  bclass, height, width, chroma_from)
                _enc_bit(st, out, p1, p2, ctx, 0 if tok == G2 else 1)
                stage_done = tok == G2
            if not stage_done:
                if _legal(INS, i, k, fb, fq, root, blk_end, quad_end):
                    ctx, _ = _context(k, 2, i, p, sgn, sp, flat, row, col, ch, sb, bands, parent,
                                      bclass, height, width, chroma_from)
                    _enc_bit(st, out, p1, p2, ctx, 0 if tok == INS else 1)
                if tok == NSP or tok == NSN:
                    ctx, xr = _context(k, 3, i, p, sgn, sp, flat, row, col, ch, sb, bands,
                                       parent, bclass, height, width, chroma_from)
                    _enc_bit(st, out, p1, p2, ctx, (1 if tok == NSN else 0) ^ xr)
                    sgn[flat[i]] = 1 if tok == NSP else -1
                    sp[i] = p
        count += 1
        p, i, fb, fq, root = _apply(tok, p, i, k, fb, fq, root, t, n, sig, bsig, qsig, approx,
                                    blk, blk_end, quad, quad_end)
        k = _kind(p, i, nplanes, sig, bsig, qsig, blk, quad, starts)
    for _ in range(5):
        if st[4] + 8 > out.shape[0]:
            bigger = np.empty(2 * out.shape[0], np.uint8)
            bigger[:st[4]] = out[:st[4]]
            out = bigger
        _enc_shift(st, out)
    return out[:st[4]], count


@njit(cache=True, nogil=True)
def _codec_decode(data, exponent, final_exponent, lay, bands, parent, bclass, height, width,
                  chroma_from, total, approx):
    """Decode as many tokens as ``data`` determines into ``approx`` (scan order). Returns the
    number of tokens and whether the stream was complete."""
    blk, blk_end, quad, quad_end, starts, row, col, ch, sb, _, _, flat, nblk, nquad = lay
    n = approx.shape[0]
    sig = np.empty(n, np.uint8)
    bsig = np.empty(max(nblk, 1), np.int32)
    qsig = np.empty(max(nquad, 1), np.int32)
    _reset(sig, bsig, qsig, approx)
    sgn = np.zeros(total, np.int8)
    sp = np.zeros(n, np.int16)
    p1 = np.full(N_CTX, _P_ONE // 2, np.int64)
    p2 = np.full(N_CTX, _P_ONE // 2, np.int64)
    st = np.zeros(4, np.int64)
    st[1] = 0xFFFFFFFF
    for _ in range(5):
        if st[2] >= data.shape[0]:
            st[3] = 1
            break
        st[0] = ((st[0] << 8) | data[st[2]]) & 0xFFFFFFFF
        st[2] += 1
    nplanes = max(exponent - final_exponent + 1, 0)
    p = 0
    i = 0
    fb = -1
    fq = -1
    root = n
    k = _kind(p, i, nplanes, sig, bsig, qsig, blk, quad, starts)
    count = 0
    while k != K_DONE and st[3] == 0:
        t = _POW2[exponent - p + _POW2_BIAS]
        tok = -1
        if k == K_REF:
            ctx, _ = _context(k, 4, i, p, sgn, sp, flat, row, col, ch, sb, bands, parent, bclass,
                              height, width, chroma_from)
            tok = NA0 + _dec_bit(st, data, p1, p2, ctx)
        else:
            if k == K_G4 and _legal(G4, i, k, fb, fq, root, blk_end, quad_end):
                ctx, _ = _context(k, 0, i, p, sgn, sp, flat, row, col, ch, sb, bands, parent,
                                  bclass, height, width, chroma_from)
                if _dec_bit(st, data, p1, p2, ctx) == 0:
                    tok = G4
            if tok < 0 and k != K_COEF and _legal(G2, i, k, fb, fq, root, blk_end, quad_end):
                if st[3]:
                    break
                ctx, _ = _context(k, 1, i, p, sgn, sp, flat, row, col, ch, sb, bands, parent,
                                  bclass, height, width, chroma_from)
                if _dec_bit(st, data, p1, p2, ctx) == 0:
                    tok = G2
            if tok < 0:
                significant = 1
                if _legal(INS, i, k, fb, fq, root, blk_end, quad_end):
                    if st[3]:
                        break
                    ctx, _ = _context(k, 2, i, p, sgn, sp, flat, row, col, ch, sb, bands,
                                      parent, bclass, height, width, chroma_from)
                    significant = _dec_bit(st, data, p1, p2, ctx)
                if significant == 0:
                    tok = INS
                else:
                    if st[3]:
                        break
                    ctx, xr = _context(k, 3, i, p, sgn, sp, flat, row, col, ch, sb, bands,
                                       parent, bclass, height, width, chroma_from)
                    neg = _dec_bit(st, data, p1, p2, ctx) ^ xr
                    tok = NSN if neg else NSP
                    sgn[flat[i]] = -1 if neg else 1
                    sp[i] = p
        count += 1
        p, i, fb, fq, root = _apply(tok, p, i, k, fb, fq, root, t, n, sig, bsig, qsig, approx,
                                    blk, blk_end, quad, quad_end)
        k = _kind(p, i, nplanes, sig, bsig, qsig, blk, quad, starts)
    return count, k == K_DONE
