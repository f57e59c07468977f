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

from ._lifting import _inv2d
from ._scan import YCBCR_INV
from ._scan import (G2, G4, INS, K_COEF, K_DONE, K_G4, K_REF, NA0, NSN, NSP, _POW2, _POW2_BIAS,
                    _apply, _begin, _choose, _kind, _legal, _reset, _u)

PROB_BITS = 16
_P_ONE = 1 << PROB_BITS
_TOP = 1 << 24
_FAST = 4
_SLOW = 7
_RATE = np.minimum(_SLOW, 1 + np.floor(np.log2(np.arange(128) + 2))).astype(np.int64)
# context offsets
C_G4 = 0          # 36: (band class * 2 + chroma) * 6 + parent * 2 + neighbour
C_G2 = 36         # 36
C_SIG = 72        # 162: ((band class * 2 + chroma) * 3 + parent) * 9 + JPEG 2000 class
C_SIGN = 234      # 10: chroma * 5 + sign class
C_REF = 244       # 12: (chroma * 3 + refinement index) * 2 + neighbour
N_CTX = 256

# JPEG 2000 sign coding: (h + 1, v + 1) -> context, xor bit
_SIGN_CTX = np.array([[4, 3, 2], [1, 0, 1], [2, 3, 4]], np.int64)
_SIGN_XOR = np.array([[1, 1, 1], [1, 0, 0], [0, 0, 0]], np.int64)


# --- the range coder ---------------------------------------------------------------------------

@njit(cache=True, nogil=True, inline="always")
def _prob(p1, p2, ctx):
    return (p1[ctx] + p2[ctx, 0]) >> 1


@njit(cache=True, nogil=True, inline="always")
def _adapt(p1, p2, ctx, bit):
    # the slow estimate learns at rate ~1/(n+2) over its first n decisions, then 2**-_SLOW
    n = p2[ctx, 1]
    slow = _RATE[n]
    fast = min(slow, _FAST)
    if n < _RATE.shape[0] - 1:
        p2[ctx, 1] = n + 1
    if bit:
        p1[ctx] -= p1[ctx] >> fast
        p2[ctx, 0] -= p2[ctx, 0] >> slow
    else:
        p1[ctx] += (_P_ONE - p1[ctx]) >> fast
        p2[ctx, 0] += (_P_ONE - p2[ctx, 0]) >> slow


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
# Per-entry tables, precomputed once per image shape (see codec._plan):
#   nbm[i]   bit j set when neighbour j of entry i lies in the same subband (j: left, right, up,
#            down, up-left, up-right, down-left, down-right)
#   pfl[i]   pyramid index of the parent coefficient, -1 for none
#   cb[i]    resolution class * 2 + chroma
#   ori[i]   subband orientation (0 LL, 1 top-right, 2 bottom-left, 3 bottom-right)

def _sig_class_table() -> np.ndarray:
    """JPEG 2000's significance classes (0..8) by orientation, h, v, d neighbour counts."""
    t = np.zeros((4, 3, 3, 5), np.int64)
    for o in range(4):
        for h in range(3):
            for v in range(3):
                for d in range(5):
                    hh, vv = (v, h) if o == 1 else (h, v)
                    if o == 3:
                        hv = hh + vv
                        c = (8 if d >= 3 else (7 if hv >= 1 else 6) if d == 2 else
                             (5 if hv >= 2 else 4 if hv == 1 else 3) if d == 1 else
                             (2 if hv >= 2 else hv))
                    elif hh == 2:
                        c = 8
                    elif hh == 1:
                        c = 7 if vv >= 1 else (6 if d >= 1 else 5)
                    elif vv == 2:
                        c = 4
                    elif vv == 1:
                        c = 3
                    else:
                        c = 2 if d >= 2 else d
                    t[o, h, v, d] = c
    return t


_SIG_CLASS = _sig_class_table()


@njit(cache=True, nogil=True, inline="always")
def _nb(sgn, f, m, bit, off):
    """Sign of a neighbour (0 when insignificant or outside the subband)."""
    if m & bit:
        v = sgn[_u(f + off)]
        return np.int64(1) if v > 0 else (np.int64(-1) if v < 0 else np.int64(0))
    return np.int64(0)


@njit(cache=True, nogil=True, inline="always")
def _parent_class(sgn, pf, p):
    """0: no parent or insignificant; 1: significant since this plane; 2: since an earlier one
    (``sgn`` holds +-(plane of significance + 1))."""
    if pf < 0:
        return 0
    v = abs(np.int64(sgn[_u(pf)]))
    if v == 0:
        return 0
    return 1 if v == p + 1 else 2


@njit(cache=True, nogil=True, inline="always")
def _ctx_group(stage, i, p, sgn, flat, nbm, pfl, cb, width):
    f = flat[_u(i)]
    m = nbm[_u(i)]
    par = _parent_class(sgn, pfl[_u(i)], p)
    nbr = 1 if (_nb(sgn, f, m, 1, -1) != 0 or _nb(sgn, f, m, 4, -width) != 0) else 0
    base = C_G4 if stage == 0 else C_G2
    return base + cb[_u(i)] * 6 + par * 2 + nbr


@njit(cache=True, nogil=True, inline="always")
def _ctx_sig(i, p, sgn, flat, nbm, pfl, cb, ori, width):
    f = flat[_u(i)]
    m = nbm[_u(i)]
    hh = abs(_nb(sgn, f, m, 1, -1)) + abs(_nb(sgn, f, m, 2, 1))
    vv = abs(_nb(sgn, f, m, 4, -width)) + abs(_nb(sgn, f, m, 8, width))
    dd = (abs(_nb(sgn, f, m, 16, -width - 1)) + abs(_nb(sgn, f, m, 32, -width + 1))
          + abs(_nb(sgn, f, m, 64, width - 1)) + abs(_nb(sgn, f, m, 128, width + 1)))
    par = _parent_class(sgn, pfl[_u(i)], p)
    return C_SIG + (cb[_u(i)] * 3 + par) * 9 + _SIG_CLASS[ori[_u(i)], hh, vv, dd]


@njit(cache=True, nogil=True, inline="always")
def _ctx_sign(i, sgn, flat, nbm, cb, width):
    f = flat[_u(i)]
    m = nbm[_u(i)]
    hs = _nb(sgn, f, m, 1, -1) + _nb(sgn, f, m, 2, 1)
    vs = _nb(sgn, f, m, 4, -width) + _nb(sgn, f, m, 8, width)
    hs = max(-1, min(1, hs)) + 1
    vs = max(-1, min(1, vs)) + 1
    return C_SIGN + (cb[_u(i)] & 1) * 5 + _SIGN_CTX[hs, vs], _SIGN_XOR[hs, vs]


@njit(cache=True, nogil=True, inline="always")
def _ctx_ref(i, p, sgn, sp, flat, nbm, cb, width):
    f = flat[_u(i)]
    m = nbm[_u(i)]
    nbr = 0
    if (_nb(sgn, f, m, 1, -1) != 0 or _nb(sgn, f, m, 2, 1) != 0 or _nb(sgn, f, m, 4, -width) != 0
            or _nb(sgn, f, m, 8, width) != 0):
        nbr = 1
    ri = min(p - sp[_u(i)], 2)
    return C_REF + ((cb[_u(i)] & 1) * 3 + ri) * 2 + nbr


# --- encode / decode ---------------------------------------------------------------------------

@njit(cache=True, nogil=True, _nrt=False)
def _encode_loop(cur, vals, mags, approx, sig, bsig, qsig, bmax, qmax, sgn, sp, p1, p2, st, out,
                 exponent, nplanes, budget, lay, cx, width):
    """The encoder's scan; returns when done, over budget, or ``out`` nearly full (then the
    caller grows ``out`` and calls again: the cursor lives in ``cur``)."""
    blk, blk_end, quad, quad_end, starts, _, _, _, _, _, _, flat, nblk, nquad = lay
    nbm, pfl, cb, ori = cx
    n = vals.shape[0]
    p, i, fb, fq, root, k, count = cur[0], cur[1], cur[2], cur[3], cur[4], cur[5], cur[6]
    while k != K_DONE and st[4] < budget and st[4] + 64 <= out.shape[0]:
        t = _POW2[exponent - p + _POW2_BIAS]
        tok = _choose(k, i, t, vals, mags, approx, bmax, qmax, blk, quad)
        if k == K_REF:
            _enc_bit(st, out, p1, p2, _ctx_ref(i, p, sgn, sp, flat, nbm, cb, width), tok - NA0)
        else:
            done = False
            if k == K_G4 and _legal(G4, i, k, fb, fq, root, blk_end, quad_end):
                _enc_bit(st, out, p1, p2, _ctx_group(0, i, p, sgn, flat, nbm, pfl, cb, width),
                         0 if tok == G4 else 1)
                done = tok == G4
            if not done and k != K_COEF and _legal(G2, i, k, fb, fq, root, blk_end, quad_end):
                _enc_bit(st, out, p1, p2, _ctx_group(1, i, p, sgn, flat, nbm, pfl, cb, width),
                         0 if tok == G2 else 1)
                done = tok == G2
            if not done:
                if _legal(INS, i, k, fb, fq, root, blk_end, quad_end):
                    _enc_bit(st, out, p1, p2, _ctx_sig(i, p, sgn, flat, nbm, pfl, cb, ori, width),
                             0 if tok == INS else 1)
                if tok == NSP or tok == NSN:
                    ctx, xr = _ctx_sign(i, sgn, flat, nbm, cb, width)
                    _enc_bit(st, out, p1, p2, ctx, (1 if tok == NSN else 0) ^ xr)
                    sgn[_u(flat[_u(i)])] = p + 1 if tok == NSP else -(p + 1)
                    sp[_u(i)] = p
        count += 1
        p, i, fb, fq, root = _apply(tok, p, i, k, fb, fq, root, t, n, sig, bsig, qsig, approx,
                                    blk, blk_end, quad, quad_end)
        k = _kind(p, i, nplanes, sig, bsig, qsig, blk, quad, starts)
    cur[0], cur[1], cur[2], cur[3], cur[4], cur[5], cur[6] = p, i, fb, fq, root, k, count


@njit(cache=True, nogil=True)
def _codec_encode(vals, exponent, final_exponent, budget, lay, cx, width, total):
    """Entropy-code the scan of ``vals`` (coefficients in scan order) until the stream ends or
    ``budget`` bytes are written. Returns (bytes, number of tokens coded)."""
    blk, blk_end, quad, quad_end, starts, _, _, _, _, _, _, flat, nblk, nquad = lay
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
    p2 = np.zeros((N_CTX, 2), np.int64)
    p2[:, 0] = _P_ONE // 2
    out = np.empty(1 << 16, np.uint8)
    st = np.zeros(5, np.int64)
    st[1] = 0xFFFFFFFF
    st[3] = 1
    nplanes = max(exponent - final_exponent + 1, 0)
    cur = np.zeros(7, np.int64)
    cur[0], cur[1], cur[2], cur[3], cur[4], cur[5] = _begin(n, nplanes, sig, bsig, qsig, blk,
                                                            quad, starts)
    while True:
        _encode_loop(cur, vals, mags, approx, sig, bsig, qsig, bmax, qmax, sgn, sp, p1, p2, st,
                     out, exponent, nplanes, budget, lay, cx, width)
        if cur[5] == K_DONE or st[4] >= budget:
            break
        bigger = np.empty(2 * out.shape[0], np.uint8)
        bigger[:st[4]] = out[:st[4]]
        out = bigger
    if st[4] + 8 > out.shape[0]:
        bigger = np.empty(out.shape[0] + 16, np.uint8)
        bigger[:st[4]] = out[:st[4]]
        out = bigger
    for _ in range(5):
        _enc_shift(st, out)
    return out[:st[4]], cur[6]


@njit(cache=True, nogil=True, _nrt=False)
def _decode_loop(data, exponent, nplanes, lay, cx, width, approx, sig, bsig, qsig, sgn, sp, p1,
                 p2, st):
    blk, blk_end, quad, quad_end, starts, _, _, _, _, _, _, flat, nblk, nquad = lay
    nbm, pfl, cb, ori = cx
    n = approx.shape[0]
    p, i, fb, fq, root, k = _begin(n, nplanes, sig, bsig, qsig, blk, quad, starts)
    count = 0
    while k != K_DONE and st[3] == 0:
        t = _POW2[exponent - p + _POW2_BIAS]
        tok = -1
        if k == K_REF:
            tok = NA0 + _dec_bit(st, data, p1, p2, _ctx_ref(i, p, sgn, sp, flat, nbm, cb, width))
        else:
            if k == K_G4 and _legal(G4, i, k, fb, fq, root, blk_end, quad_end):
                if _dec_bit(st, data, p1, p2,
                            _ctx_group(0, i, p, sgn, flat, nbm, pfl, cb, width)) == 0:
                    tok = G4
            if tok < 0 and k != K_COEF and _legal(G2, i, k, fb, fq, root, blk_end, quad_end):
                if st[3]:
                    break
                if _dec_bit(st, data, p1, p2,
                            _ctx_group(1, i, p, sgn, flat, nbm, pfl, cb, width)) == 0:
                    tok = G2
            if tok < 0:
                significant = 1
                if _legal(INS, i, k, fb, fq, root, blk_end, quad_end):
                    if st[3]:
                        break
                    significant = _dec_bit(st, data, p1, p2,
                                           _ctx_sig(i, p, sgn, flat, nbm, pfl, cb, ori, width))
                if significant == 0:
                    tok = INS
                else:
                    if st[3]:
                        break
                    ctx, xr = _ctx_sign(i, sgn, flat, nbm, cb, width)
                    neg = _dec_bit(st, data, p1, p2, ctx) ^ xr
                    tok = NSN if neg else NSP
                    sgn[_u(flat[_u(i)])] = -(p + 1) if neg else p + 1
                    sp[_u(i)] = p
        count += 1
        p, i, fb, fq, root = _apply(tok, p, i, k, fb, fq, root, t, n, sig, bsig, qsig, approx,
                                    blk, blk_end, quad, quad_end)
        k = _kind(p, i, nplanes, sig, bsig, qsig, blk, quad, starts)
    return count, k == K_DONE


@njit(cache=True, nogil=True)
def _codec_decode(data, exponent, final_exponent, lay, cx, width, total, approx):
    """Decode as many tokens as ``data`` determines into ``approx`` (scan order). Returns the
    number of tokens and whether the stream was complete."""
    nblk, nquad = lay[12], lay[13]
    n = approx.shape[0]
    sig = np.empty(n, np.uint8)
    bsig = np.empty(max(nblk, 1), np.int32)
    qsig = np.empty(max(nquad, 1), np.int32)
    _reset(sig, bsig, qsig, approx)
    sgn = np.zeros(total, np.int8)
    sp = np.zeros(n, np.int16)
    p1 = np.full(N_CTX, _P_ONE // 2, np.int64)
    p2 = np.zeros((N_CTX, 2), np.int64)
    p2[:, 0] = _P_ONE // 2
    st = np.zeros(4, np.int64)
    st[1] = 0xFFFFFFFF
    for _ in range(5):
        if st[2] >= data.shape[0]:
            st[3] = 1
            break
        st[0] = ((st[0] << 8) | data[st[2]]) & 0xFFFFFFFF
        st[2] += 1
    nplanes = max(exponent - final_exponent + 1, 0)
    return _decode_loop(data, exponent, nplanes, lay, cx, width, approx, sig, bsig, qsig, sgn,
                        sp, p1, p2, st)


@njit(cache=True, nogil=True)
def _pixels(approx, flat, norms, lossless, complete, c, h, w, levels, out):
    """Coefficients in scan order -> uint8 image ``out`` (H, W, C): lossless snapping or norm
    scaling, inverse transform per channel, inverse colour transform, level shift, rounding."""
    pyr = np.zeros(c * h * w)
    for i in range(approx.shape[0]):
        a = approx[i]
        if lossless:
            m = abs(a)
            # a complete stream leaves each coefficient in [lo, lo + 1/2): one integer
            v = np.ceil(m - 0.25) if complete else np.rint(m)
            a = v if a >= 0 else -v
        else:
            a = a / norms[i]
        pyr[flat[i]] = a
    tmp = np.empty(h * w + max(h, w) + 2)
    for k in range(c):
        _inv2d(pyr[k * h * w:(k + 1) * h * w], h, w, levels, lossless, tmp)
    plane = h * w
    for q in range(plane):
        if c == 1:
            out[q // w, q % w, 0] = min(255.0, max(0.0, np.rint(pyr[q] + 128.0)))
            continue
        y = pyr[q]
        cb = pyr[plane + q]
        cr = pyr[2 * plane + q]
        if lossless:
            g = y - np.floor((cb + cr) / 4.0)
            rgb0 = cr + g
            rgb1 = g
            rgb2 = cb + g
        else:
            rgb0 = YCBCR_INV[0, 0] * y + YCBCR_INV[0, 1] * cb + YCBCR_INV[0, 2] * cr
            rgb1 = YCBCR_INV[1, 0] * y + YCBCR_INV[1, 1] * cb + YCBCR_INV[1, 2] * cr
            rgb2 = YCBCR_INV[2, 0] * y + YCBCR_INV[2, 1] * cb + YCBCR_INV[2, 2] * cr
        out[q // w, q % w, 0] = min(255.0, max(0.0, np.rint(rgb0 + 128.0)))
        out[q // w, q % w, 1] = min(255.0, max(0.0, np.rint(rgb1 + 128.0)))
        out[q // w, q % w, 2] = min(255.0, max(0.0, np.rint(rgb2 + 128.0)))


def context_tables(lay, bands, levels, channels):
    """The per-entry context tables (see above) of a layout."""
    b = np.asarray(bands, np.int64).reshape(-1, 6)
    sb = lay.sb
    r0, c0, h, w = b[sb, 0], b[sb, 1], b[sb, 2], b[sb, 3]
    r, c = lay.row.astype(np.int64), lay.col.astype(np.int64)
    inside = [(r, c - 1), (r, c + 1), (r - 1, c), (r + 1, c), (r - 1, c - 1), (r - 1, c + 1),
              (r + 1, c - 1), (r + 1, c + 1)]
    nbm = np.zeros(lay.size, np.uint8)
    for j, (rr, cc) in enumerate(inside):
        ok = (rr >= r0) & (rr < r0 + h) & (cc >= c0) & (cc < c0 + w)
        nbm |= (ok.astype(np.uint8) << j)
    # parents: level 1 details -> LL (same size), level k > 1 -> level k-1, same orientation
    parent = np.full(len(b), -1, np.int64)
    for s, (_, _, _, _, lev, orient) in enumerate(b):
        if lev == 1:
            parent[s] = 0
        elif lev > 1:
            parent[s] = next(j for j, q in enumerate(b) if q[4] == lev - 1 and q[5] == orient)
    ps = parent[sb]
    has = ps >= 0
    psafe = np.where(has, ps, 0)
    shift = np.where(b[sb, 4] > 1, 1, 0)
    pr = b[psafe, 0] + np.minimum((r - r0) >> shift, b[psafe, 2] - 1)
    pc = b[psafe, 1] + np.minimum((c - c0) >> shift, b[psafe, 3] - 1)
    pfl = np.where(has, (lay.ch.astype(np.int64) * lay.height + pr) * lay.width + pc, -1)
    lev = b[sb, 4]
    bclass = np.where(lev >= levels, 2, np.where(lev == levels - 1, 1, 0))
    if levels == 0:
        bclass[:] = 0
    chroma = (lay.ch >= 1).astype(np.int64) if channels == 3 else np.zeros(lay.size, np.int64)
    cb = (bclass * 2 + chroma).astype(np.int64)
    ori = b[sb, 5].astype(np.int64)
    return nbm, pfl.astype(np.int64), cb, ori
