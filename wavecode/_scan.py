"""Numba kernels of the scan: one cursor that the encoder, the decoder and the grammar state share.

A *cursor* is a small int64 array (fields ``_P`` ... below) plus the per-image significance state
(``sig``, per-block and per-quad significance counts) and the approximations ``approx``. The scan is
written once, as three functions on it:

* :func:`_settle` moves the cursor to the next decision point and records its *kind*
  (group4 / group2 / coefficient / refinement / done);
* :func:`_legal` says whether a token may come next (the grammar);
* :func:`_apply` consumes a token.

The encoder picks the token from the coefficients (:func:`_choose`); the decoder and the grammar
state take it from the stream. None of them forks the scan.

Grammar: a zero emission (Group4x4, Group2x2, Insignificant) is illegal when it would close a unit
that must hold a significant coefficient but has none yet: a 4x4 or 2x2 block that split although it
had no significant coefficient, and bit-plane 0 (``T0 <= max|alpha|``). The cursor keeps the end
entry of each such open unit (``_FB``, ``_FQ``, ``_ROOT``, -1 when none); any NowSignificant token
satisfies all of them at once.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from ._dwt import _dwt2_inplace, _idwt2_inplace

# token ids (the spec)
G4, G2, INS, NSP, NSN, NA0, NA1 = 0, 1, 2, 3, 4, 5, 6
# decision kinds (slot kinds); DONE: the stream is complete
K_G4, K_G2, K_COEF, K_REF, K_DONE = 0, 1, 2, 3, 4
# cursor fields: plane, entry, kind, forced-block end, forced-quad end, plane-0 end,
# number of planes, exponent of T0, tokens consumed
_P, _I, _K, _FB, _FQ, _ROOT, _NP, _E, _N = 0, 1, 2, 3, 4, 5, 6, 7, 8
CURSOR_FIELDS = 9
# JPEG's full-range YCbCr with centred chroma; the inverse is the exact matrix inverse (the usual
# rounded constants 1.402 ... lose 1e-6, which would spoil lossless round trips)
YCBCR = np.array([[0.299, 0.587, 0.114],
                  [-0.168736, -0.331264, 0.5],
                  [0.5, -0.418688, -0.081312]])
YCBCR_INV = np.linalg.inv(YCBCR)
# powers of two by table: libm's ldexp per token cost more than the rest of the scan
_POW2_BIAS = 1100
_POW2 = np.ldexp(1.0, np.arange(-_POW2_BIAS, 1024))
N_SLOT = 7  # plane, row, col, level, orientation, channel, kind


@njit(cache=True, nogil=True, inline="always")
def _settle(cur, n, sig, bsig, qsig, blk, blk_start, quad, quad_start):
    """Advance to the next decision point (wrap planes) and set its kind."""
    if cur[_I] >= n:
        cur[_P] += 1
        cur[_I] = 0
        cur[_FB] = -1
        cur[_FQ] = -1
        cur[_ROOT] = -1
    if cur[_P] >= cur[_NP]:
        cur[_K] = K_DONE
        return
    i = cur[_I]
    if sig[i]:
        cur[_K] = K_REF
        return
    q = quad[i]
    if q >= 0 and quad_start[i] and qsig[q] == 0:
        b = blk[i]
        if b >= 0 and blk_start[i] and bsig[b] == 0:
            cur[_K] = K_G4
        else:
            cur[_K] = K_G2
    else:
        cur[_K] = K_COEF


@njit(cache=True, nogil=True, inline="always")
def _start(cur, exponent, final_exponent, n, sig, bsig, qsig, blk, blk_start, quad, quad_start):
    nplanes = exponent - final_exponent + 1
    cur[_P] = 0
    cur[_I] = 0
    cur[_FB] = -1
    cur[_FQ] = -1
    cur[_ROOT] = n if nplanes > 0 else -1
    cur[_NP] = max(nplanes, 0)
    cur[_E] = exponent
    cur[_N] = 0
    _settle(cur, n, sig, bsig, qsig, blk, blk_start, quad, quad_start)


@njit(cache=True, nogil=True, inline="always")
def _legal(cur, tok, blk_end, quad_end):
    k = cur[_K]
    if k == K_DONE or tok < 0 or tok > NA1:
        return False
    if k == K_REF:
        return tok >= NA0
    if tok >= NA0:
        return False
    if tok == NSP or tok == NSN:
        return True
    i = cur[_I]
    root = cur[_ROOT]
    if tok == G4:
        return k == K_G4 and blk_end[i] != root
    # the units a zero emission here would leave open: a 4x4 that splits now, a 2x2 that splits now
    if k == K_G4:
        fb = blk_end[i]
    else:
        fb = cur[_FB]
    if tok == G2:
        if k == K_COEF:
            return False
        e = quad_end[i]
        return e != fb and e != root
    # Insignificant
    fq = quad_end[i] if k != K_COEF else cur[_FQ]
    e = i + 1
    return e != fb and e != fq and e != root


@njit(cache=True, nogil=True, inline="always")
def _apply(cur, tok, n, sig, bsig, qsig, approx, blk, blk_start, blk_end, quad, quad_start,
           quad_end):
    """Consume a (legal) token and settle on the next decision point."""
    i = cur[_I]
    k = cur[_K]
    t = _POW2[cur[_E] - cur[_P] + _POW2_BIAS]
    if tok == G4:
        cur[_I] = blk_end[i]
    elif tok == G2:
        if k == K_G4:
            cur[_FB] = blk_end[i]
        cur[_I] = quad_end[i]
    elif tok == INS:
        if k == K_G4:
            cur[_FB] = blk_end[i]
        if k != K_COEF:
            cur[_FQ] = quad_end[i]
        cur[_I] = i + 1
    elif tok == NSP or tok == NSN:
        sig[i] = 1
        if blk[i] >= 0:
            bsig[blk[i]] += 1
        if quad[i] >= 0:
            qsig[quad[i]] += 1
        approx[i] = 1.5 * t if tok == NSP else -1.5 * t
        cur[_FB] = -1
        cur[_FQ] = -1
        cur[_ROOT] = -1
    else:
        a = approx[i]
        d = 0.25 * t
        if (tok == NA1) == (a > 0):
            approx[i] = a + d
        else:
            approx[i] = a - d
        cur[_I] = i + 1
    cur[_N] += 1
    _settle(cur, n, sig, bsig, qsig, blk, blk_start, quad, quad_start)


@njit(cache=True, nogil=True, inline="always")
def _choose(cur, vals, mags, approx, bmax, qmax, blk, quad):
    """The token the encoder emits at the cursor (a decision point that is not DONE)."""
    k = cur[_K]
    i = cur[_I]
    if k == K_REF:
        return NA1 if mags[i] >= abs(approx[i]) else NA0
    t = _POW2[cur[_E] - cur[_P] + _POW2_BIAS]
    if k == K_G4 and bmax[blk[i]] < t:
        return G4
    if k != K_COEF and qmax[quad[i]] < t:
        return G2
    if mags[i] >= t:
        return NSP if vals[i] > 0 else NSN
    return INS


@njit(cache=True, nogil=True, inline="always")
def _write_slot(slots, r, cur, row, col, ch, sb, sb_level, sb_orient):
    i = cur[_I]
    s = sb[i]
    slots[r, 0] = cur[_P]
    slots[r, 1] = row[i]
    slots[r, 2] = col[i]
    slots[r, 3] = sb_level[s]
    slots[r, 4] = sb_orient[s]
    slots[r, 5] = ch[i]
    slots[r, 6] = cur[_K]


@njit(cache=True, nogil=True, _nrt=False)
def _expand_slots(entries, pk, slots, row, col, ch, sb, sb_level, sb_orient):
    """Compact slots (entry, plane*4 + kind) -> (N, 7) slot features."""
    for r in range(entries.shape[0]):
        i = entries[r]
        s = sb[i]
        slots[r, 0] = pk[r] >> 2
        slots[r, 1] = row[i]
        slots[r, 2] = col[i]
        slots[r, 3] = sb_level[s]
        slots[r, 4] = sb_orient[s]
        slots[r, 5] = ch[i]
        slots[r, 6] = pk[r] & 3


@njit(cache=True, nogil=True, _nrt=False)
def _exponent_of(mags, final_exponent):
    mx = 0.0
    for i in range(mags.shape[0]):
        if mags[i] > mx:
            mx = mags[i]
    if mx == 0.0:
        return final_exponent - 1  # no bit-plane: the all-zero image
    return math.frexp(mx)[1] - 1  # floor(log2 mx), exactly


@njit(cache=True, nogil=True, _nrt=False)
def _encode_scan(cur, vals, exponent, final_exponent, max_tokens, tok_out, ent_out, pk_out, pos,
                 want_slots, sig, bsig, qsig, approx, mags, bmax, qmax,
                 blk, blk_start, blk_end, quad, quad_start, quad_end):
    """Encode one image given its coefficients ``vals`` in scan order; write tokens (and compact
    slots: entry, plane*4 + kind) from row ``pos`` of the outputs. Returns the token count."""
    n = vals.shape[0]
    sig[:] = 0
    bsig[:] = 0
    qsig[:] = 0
    approx[:] = 0.0
    bmax[:] = 0.0
    qmax[:] = 0.0
    for i in range(n):
        m = abs(vals[i])
        mags[i] = m
        if blk[i] >= 0 and m > bmax[blk[i]]:
            bmax[blk[i]] = m
        if quad[i] >= 0 and m > qmax[quad[i]]:
            qmax[quad[i]] = m
    _start(cur, exponent, final_exponent, n, sig, bsig, qsig, blk, blk_start, quad, quad_start)
    count = 0
    while cur[_K] != K_DONE and count < max_tokens:
        tok = _choose(cur, vals, mags, approx, bmax, qmax, blk, quad)
        tok_out[pos + count] = tok
        if want_slots:
            ent_out[pos + count] = cur[_I]
            pk_out[pos + count] = (cur[_P] << 2) | cur[_K]
        count += 1
        _apply(cur, tok, n, sig, bsig, qsig, approx, blk, blk_start, blk_end, quad, quad_start,
               quad_end)
    return count


@njit(cache=True, nogil=True, _nrt=False)
def _decode_scan(cur, tokens, exponent, final_exponent, sig, bsig, qsig, approx,
                 blk, blk_start, blk_end, quad, quad_start, quad_end):
    """Replay ``tokens`` into ``approx`` (scan order). Returns -1, or the index of the first
    illegal token."""
    n = approx.shape[0]
    sig[:] = 0
    bsig[:] = 0
    qsig[:] = 0
    approx[:] = 0.0
    _start(cur, exponent, final_exponent, n, sig, bsig, qsig, blk, blk_start, quad, quad_start)
    for k in range(tokens.shape[0]):
        tok = tokens[k]
        if not _legal(cur, tok, blk_end, quad_end):
            return k
        _apply(cur, tok, n, sig, bsig, qsig, approx, blk, blk_start, blk_end, quad, quad_start,
               quad_end)
    return -1


# --- pixels <-> pyramid -----------------------------------------------------------------------

@njit(cache=True, nogil=True, _nrt=False)
def _analyze(img, pyr, tmp, hp, wp, top, left, ycbcr, levels, dlo, dhi, down_f, down_x, down_off):
    """uint8 (H, W, C) image -> pyramid (C * hp * wp,), zero padded, colour transformed.
    ``tmp`` is scratch of ``2 * hp * wp``."""
    h, w, c = img.shape
    pyr[:] = 0.0
    plane = hp * wp
    if ycbcr:
        for r in range(h):
            for q in range(w):
                base = (r + top) * wp + q + left
                rr = img[r, q, 0] / 255.0
                gg = img[r, q, 1] / 255.0
                bb = img[r, q, 2] / 255.0
                pyr[base] = 0.299 * rr + 0.587 * gg + 0.114 * bb
                pyr[plane + base] = -0.168736 * rr - 0.331264 * gg + 0.5 * bb
                pyr[2 * plane + base] = 0.5 * rr - 0.418688 * gg - 0.081312 * bb
    else:
        for k in range(c):
            for r in range(h):
                base = (r + top) * wp + left + k * plane
                for q in range(w):
                    pyr[base + q] = img[r, q, k] / 255.0
    t1 = tmp[:plane]
    t2 = tmp[plane:2 * plane]
    for k in range(c):
        _dwt2_inplace(pyr[k * plane:(k + 1) * plane], t1, t2, hp, wp, levels, dlo, dhi,
                      down_f, down_x, down_off)


@njit(cache=True, nogil=True, _nrt=False)
def _synthesize(pyr, tmp, out, hp, wp, top, left, ycbcr, levels, rlo, rhi, up_f, up_x, up_off):
    """Pyramid -> float64 (H, W, C) image in [0, 1] (inverse DWT, crop, colour, clip)."""
    h, w, c = out.shape
    plane = hp * wp
    for k in range(c):
        _idwt2_inplace(pyr[k * plane:(k + 1) * plane], tmp[:plane], tmp[plane:], hp, wp, levels, rlo, rhi,
                       up_f, up_x, up_off)
    for r in range(h):
        for q in range(w):
            base = (r + top) * wp + q + left
            if ycbcr:
                y = pyr[base]
                cb = pyr[plane + base]
                cr = pyr[2 * plane + base]
                for k in range(3):
                    out[r, q, k] = YCBCR_INV[k, 0] * y + YCBCR_INV[k, 1] * cb + YCBCR_INV[k, 2] * cr
            else:
                for k in range(c):
                    out[r, q, k] = pyr[k * plane + base]
            for k in range(c):
                v = out[r, q, k]
                out[r, q, k] = 0.0 if v < 0.0 else (1.0 if v > 1.0 else v)


# --- batch kernels ----------------------------------------------------------------------------

@njit(cache=True, nogil=True)
def _encode_images(images, lo, hi, hp, wp, top, left, ycbcr, levels, final_exponent, max_tokens,
                   want_slots, plan, lay, cap):
    """Encode ``images[lo:hi]`` (uint8 (B, H, W, C)) into growable buffers.

    Returns ``(tokens, entries, plane_kinds, counts, exponents)`` for that range; buffers start at
    ``cap`` tokens and double when an image might not fit.
    """
    dlo, dhi, _, _, down_f, down_x, down_off, _, _, _ = plan
    (blk, blk_start, blk_end, quad, quad_start, quad_end, row, col, ch, sb, sb_level, sb_orient,
     flat, nblk, nquad) = lay
    n = flat.shape[0]
    c = images.shape[3]
    pyr = np.empty(c * hp * wp, np.float64)
    tmp = np.empty(2 * hp * wp, np.float64)
    vals = np.empty(n, np.float64)
    mags = np.empty(n, np.float64)
    approx = np.empty(n, np.float64)
    sig = np.empty(n, np.uint8)
    bsig = np.empty(max(nblk, 1), np.int32)
    qsig = np.empty(max(nquad, 1), np.int32)
    bmax = np.empty(max(nblk, 1), np.float64)
    qmax = np.empty(max(nquad, 1), np.float64)
    nimg = hi - lo
    counts = np.empty(nimg, np.int64)
    exps = np.empty(nimg, np.int32)
    tokens = np.empty(cap, np.uint8)
    ents = np.empty(cap if want_slots else 1, np.int32)
    pks = np.empty(cap if want_slots else 1, np.uint8)
    cur = np.empty(CURSOR_FIELDS, np.int64)
    pos = 0
    # most tokens one image can take: every entry of every plane gives at most two
    for b in range(nimg):
        _analyze(images[lo + b], pyr, tmp, hp, wp, top, left, ycbcr, levels, dlo, dhi,
                 down_f, down_x, down_off)
        for i in range(n):
            vals[i] = pyr[flat[i]]
        for i in range(n):
            mags[i] = abs(vals[i])
        e = _exponent_of(mags, final_exponent)
        exps[b] = e
        bound = min(max_tokens, 2 * n * max(e - final_exponent + 1, 0))
        if pos + bound > tokens.shape[0]:
            new_cap = max(2 * tokens.shape[0], pos + bound)
            t2 = np.empty(new_cap, np.uint8)
            t2[:pos] = tokens[:pos]
            tokens = t2
            if want_slots:
                e2 = np.empty(new_cap, np.int32)
                e2[:pos] = ents[:pos]
                ents = e2
                p2 = np.empty(new_cap, np.uint8)
                p2[:pos] = pks[:pos]
                pks = p2
        cnt = _encode_scan(cur, vals, e, final_exponent, max_tokens, tokens, ents, pks, pos,
                           want_slots, sig, bsig, qsig, approx, mags, bmax, qmax,
                           blk, blk_start, blk_end, quad, quad_start, quad_end)
        counts[b] = cnt
        pos += cnt
    if want_slots:
        return tokens[:pos], ents[:pos], pks[:pos], counts, exps
    return tokens[:pos], ents[:0], pks[:0], counts, exps


@njit(cache=True, nogil=True)
def _encode_pyramids(pyrs, final_exponent, max_tokens, lay, exps_in, tokens, ents, pks, offsets,
                     counts, exps_out, want_slots):
    """Encode coefficient pyramids (B, C*H*W) given exponents (or -2**31 to compute them) into
    preallocated outputs; ``offsets[b]`` is where image b starts. Used by tests and the codec."""
    (blk, blk_start, blk_end, quad, quad_start, quad_end, row, col, ch, sb, sb_level, sb_orient,
     flat, nblk, nquad) = lay
    n = flat.shape[0]
    vals = np.empty(n, np.float64)
    mags = np.empty(n, np.float64)
    approx = np.empty(n, np.float64)
    sig = np.empty(n, np.uint8)
    bsig = np.empty(max(nblk, 1), np.int32)
    qsig = np.empty(max(nquad, 1), np.int32)
    bmax = np.empty(max(nblk, 1), np.float64)
    qmax = np.empty(max(nquad, 1), np.float64)
    cur = np.empty(CURSOR_FIELDS, np.int64)
    for b in range(pyrs.shape[0]):
        for i in range(n):
            vals[i] = pyrs[b, flat[i]]
            mags[i] = abs(vals[i])
        e = exps_in[b] if exps_in[b] > -(2 ** 31) else _exponent_of(mags, final_exponent)
        exps_out[b] = e
        counts[b] = _encode_scan(cur, vals, e, final_exponent, max_tokens, tokens, ents, pks,
                                 offsets[b], want_slots, sig, bsig, qsig, approx, mags, bmax,
                                 qmax, blk, blk_start, blk_end, quad, quad_start, quad_end)


@njit(cache=True, nogil=True)
def _decode_images(tokens, offsets, exps, lo, hi, out, hp, wp, top, left, ycbcr, levels,
                   final_exponent, plan, lay, errors, want_pixels, coef_out):
    """Decode streams ``lo:hi`` into ``out[b]`` (float64 (H, W, C)); ``errors[b]`` gets -1 or the
    index of the first illegal token. With ``want_pixels`` False, the approximations are written
    to ``coef_out[b]`` (flattened pyramid) instead."""
    _, _, rlo, rhi, _, _, _, up_f, up_x, up_off = plan
    (blk, blk_start, blk_end, quad, quad_start, quad_end, row, col, ch, sb, sb_level, sb_orient,
     flat, nblk, nquad) = lay
    n = flat.shape[0]
    c = out.shape[3]
    pyr = np.empty(c * hp * wp, np.float64)
    tmp = np.empty(2 * hp * wp, np.float64)
    approx = np.empty(n, np.float64)
    sig = np.empty(n, np.uint8)
    bsig = np.empty(max(nblk, 1), np.int32)
    qsig = np.empty(max(nquad, 1), np.int32)
    cur = np.empty(CURSOR_FIELDS, np.int64)
    for b in range(lo, hi):
        err = _decode_scan(cur, tokens[offsets[b]:offsets[b + 1]], exps[b], final_exponent,
                           sig, bsig, qsig, approx, blk, blk_start, blk_end, quad, quad_start,
                           quad_end)
        errors[b] = err
        if err >= 0:
            continue
        if want_pixels:
            pyr[:] = 0.0
            for i in range(n):
                pyr[flat[i]] = approx[i]
            _synthesize(pyr, tmp, out[b], hp, wp, top, left, ycbcr, levels, rlo, rhi,
                        up_f, up_x, up_off)
        else:
            for i in range(n):
                coef_out[b, flat[i]] = approx[i]


# --- the batch grammar state ------------------------------------------------------------------

@njit(cache=True, nogil=True, _nrt=False)
def _state_start(cur, sig, bsig, qsig, approx, exps, final_exponent, lay):
    (blk, blk_start, blk_end, quad, quad_start, quad_end, row, col, ch, sb, sb_level, sb_orient,
     flat, nblk, nquad) = lay
    n = flat.shape[0]
    sig[:] = 0
    bsig[:] = 0
    qsig[:] = 0
    approx[:] = 0.0
    for b in range(cur.shape[0]):
        _start(cur[b], exps[b], final_exponent, n, sig[b], bsig[b], qsig[b], blk, blk_start, quad,
               quad_start)


@njit(cache=True, nogil=True, _nrt=False)
def _state_step(cur, sig, bsig, qsig, approx, tokens, lay):
    """One token per stream (-1: leave that stream alone). Checks every stream first and
    changes nothing if one token is illegal; returns -1 or the first offending stream."""
    (blk, blk_start, blk_end, quad, quad_start, quad_end, row, col, ch, sb, sb_level, sb_orient,
     flat, nblk, nquad) = lay
    n = flat.shape[0]
    for b in range(cur.shape[0]):
        if tokens[b] >= 0 and not _legal(cur[b], tokens[b], blk_end, quad_end):
            return b
    for b in range(cur.shape[0]):
        if tokens[b] >= 0:
            _apply(cur[b], tokens[b], n, sig[b], bsig[b], qsig[b], approx[b], blk, blk_start,
                   blk_end, quad, quad_start, quad_end)
    return -1


@njit(cache=True, nogil=True, _nrt=False)
def _state_mask(cur, mask, lay):
    blk_end = lay[2]
    quad_end = lay[5]
    for b in range(cur.shape[0]):
        for t in range(7):
            mask[b, t] = _legal(cur[b], t, blk_end, quad_end)


@njit(cache=True, nogil=True, _nrt=False)
def _state_slots(cur, slots, lay):
    (blk, blk_start, blk_end, quad, quad_start, quad_end, row, col, ch, sb, sb_level, sb_orient,
     flat, nblk, nquad) = lay
    for b in range(cur.shape[0]):
        if cur[b, _K] == K_DONE:
            slots[b, :] = -1
        else:
            _write_slot(slots, b, cur[b], row, col, ch, sb, sb_level, sb_orient)


@njit(cache=True, nogil=True)
def _analyze_batch(images, pyrs, hp, wp, top, left, ycbcr, levels, plan):
    dlo, dhi, _, _, down_f, down_x, down_off, _, _, _ = plan
    tmp = np.empty(2 * hp * wp, np.float64)
    for b in range(images.shape[0]):
        _analyze(images[b], pyrs[b], tmp, hp, wp, top, left, ycbcr, levels, dlo, dhi,
                 down_f, down_x, down_off)


@njit(cache=True, nogil=True)
def _synthesize_batch(pyrs, out, hp, wp, top, left, ycbcr, levels, plan):
    _, _, rlo, rhi, _, _, _, up_f, up_x, up_off = plan
    tmp = np.empty(2 * hp * wp, np.float64)
    buf = np.empty(pyrs.shape[1], np.float64)
    for b in range(pyrs.shape[0]):
        buf[:] = pyrs[b]
        _synthesize(buf, tmp, out[b], hp, wp, top, left, ycbcr, levels, rlo, rhi,
                    up_f, up_x, up_off)
