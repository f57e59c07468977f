"""Numba kernels of the scan: one cursor that the encoder, the decoder and the grammar state share.

A *cursor* is a handful of integers -- plane ``p``, entry ``i``, the kind ``k`` of the decision due
there, and the ends of the open forced units -- plus the per-image significance state (``sig``,
per-block and per-quad significance counts) and the approximations ``approx``. The encoder and
decoder keep the integers in registers; the grammar state stores them per stream between steps.
The scan is written once, as three functions on it:

* :func:`_kind` says which decision is due at a position
  (group4 / group2 / coefficient / refinement / done);
* :func:`_legal` says whether a token may come next (the grammar);
* :func:`_apply` consumes a token and moves to the next position.

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
# fields of a stored cursor (the grammar state keeps one per stream between steps): plane, entry,
# kind, forced-block end, forced-quad end, plane-0 end, number of planes, exponent of T0, tokens
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
def _u(i):
    """An index as unsigned: numba then skips its negative-index wraparound (measured: ~1/3 of
    the scan's instructions). Only for indices known to be >= 0."""
    return np.uint64(i)


@njit(cache=True, nogil=True, inline="always")
def _kind(p, i, nplanes, sig, bsig, qsig, blk, quad, starts):
    """The kind of decision due at entry ``i`` of plane ``p``."""
    if p >= nplanes:
        return K_DONE
    if sig[_u(i)]:
        return K_REF
    s = starts[_u(i)]
    if (s & 1) and qsig[_u(quad[_u(i)])] == 0:
        if (s & 2) and bsig[_u(blk[_u(i)])] == 0:
            return K_G4
        return K_G2
    return K_COEF


@njit(cache=True, nogil=True, inline="always")
def _begin(n, nplanes, sig, bsig, qsig, blk, quad, starts):
    """The cursor at the start of a stream: ``(p, i, fb, fq, root, k)``; bit-plane 0 is an open
    unit that must hold a significant coefficient (its end is ``n``)."""
    return 0, 0, -1, -1, n, _kind(0, 0, nplanes, sig, bsig, qsig, blk, quad, starts)


@njit(cache=True, nogil=True, inline="always")
def _legal(tok, i, k, fb, fq, root, blk_end, quad_end):
    """May ``tok`` come next? (``fb``, ``fq``, ``root``: ends of the open forced units)"""
    if k == K_DONE or tok < 0 or tok > NA1:
        return False
    if k == K_REF:
        return tok >= NA0
    if tok >= NA0:
        return False
    if tok == NSP or tok == NSN:
        return True
    if tok == G4:
        return k == K_G4 and blk_end[_u(i)] != root
    # the units a zero emission here would leave open: a 4x4 or 2x2 that splits right now
    if k == K_G4:
        fb = blk_end[_u(i)]
    if tok == G2:
        if k == K_COEF:
            return False
        e = quad_end[_u(i)]
        return e != fb and e != root
    if k != K_COEF:
        fq = quad_end[_u(i)]
    e = i + 1
    return e != fb and e != fq and e != root


@njit(cache=True, nogil=True, inline="always")
def _apply(tok, p, i, k, fb, fq, root, t, n, sig, bsig, qsig, approx, blk, blk_end, quad,
           quad_end):
    """Consume a legal token at threshold ``t``; returns the new ``(p, i, fb, fq, root)``."""
    if tok >= NA0:
        # refinement: |approx| moves by t/4 towards |alpha|; branch-free, since these bits are
        # coin flips that a branch predictor cannot learn (a +- t/4 is exact either way)
        a = approx[_u(i)]
        up = np.float64(tok - NA0) * 2.0 - 1.0
        sgn = 1.0 if a > 0 else -1.0
        approx[_u(i)] = a + sgn * up * (0.25 * t)
        i += 1
    elif tok == INS:
        if k == K_G4:
            fb = blk_end[_u(i)]
        if k != K_COEF:
            fq = quad_end[_u(i)]
        i += 1
    elif tok == G2:
        if k == K_G4:
            fb = blk_end[_u(i)]
        i = quad_end[_u(i)]
    elif tok == G4:
        i = blk_end[_u(i)]
    else:
        sig[_u(i)] = 1
        if blk[_u(i)] >= 0:
            bsig[_u(blk[_u(i)])] += 1
        if quad[_u(i)] >= 0:
            qsig[_u(quad[_u(i)])] += 1
        approx[_u(i)] = 1.5 * t if tok == NSP else -1.5 * t
        fb = -1
        fq = -1
        root = -1
    if i >= n:
        p += 1
        i = 0
        fb = -1
        fq = -1
        root = -1
    return p, i, fb, fq, root


@njit(cache=True, nogil=True, inline="always")
def _choose(k, i, t, vals, mags, approx, bmax, qmax, blk, quad):
    """The token the encoder emits at a decision of kind ``k`` (not DONE)."""
    if k == K_REF:
        return NA0 + np.int64(mags[_u(i)] >= abs(approx[_u(i)]))
    if k == K_G4 and bmax[_u(blk[_u(i)])] < t:
        return G4
    if k != K_COEF and qmax[_u(quad[_u(i)])] < t:
        return G2
    if mags[_u(i)] >= t:
        return NSP if vals[_u(i)] > 0 else NSN
    return INS


@njit(cache=True, nogil=True, inline="always")
def _write_slot(slots, r, p, i, k, row, col, ch, sb, sb_level, sb_orient):
    s = sb[i]
    slots[r, 0] = p
    slots[r, 1] = row[i]
    slots[r, 2] = col[i]
    slots[r, 3] = sb_level[s]
    slots[r, 4] = sb_orient[s]
    slots[r, 5] = ch[i]
    slots[r, 6] = k


@njit(cache=True, nogil=True, _nrt=False)
def _expand_slots(entries, pk, slots, row, col, ch, sb, sb_level, sb_orient):
    """Compact slots (entry, plane*4 + kind) -> (N, 7) slot features."""
    for r in range(entries.shape[0]):
        _write_slot(slots, r, pk[r] >> 2, entries[r], pk[r] & 3, row, col, ch, sb, sb_level,
                    sb_orient)


@njit(cache=True, nogil=True, _nrt=False)
def _exponent_of(vals, final_exponent):
    """``floor(log2 max|vals|)``, or ``final_exponent - 1`` (no bit-plane) for all zeros."""
    mx = 0.0
    for i in range(vals.shape[0]):
        m = abs(vals[_u(i)])
        if m > mx:
            mx = m
    if mx == 0.0:
        return final_exponent - 1  # no bit-plane: the all-zero image
    return math.frexp(mx)[1] - 1  # floor(log2 mx), exactly


@njit(cache=True, nogil=True, _nrt=False)
def _reset(sig, bsig, qsig, approx):
    sig[:] = 0
    bsig[:] = 0
    qsig[:] = 0
    approx[:] = 0.0


@njit(cache=True, nogil=True, inline="always")
def _block_maxima(mags, blk, quad, bmax, qmax):
    """``bmax`` / ``qmax``: the largest magnitude of each 4x4 / 2x2 block (an entry with id -1
    lies in none). A block's entries are consecutive in scan order, so the running maximum of a
    run of equal ids stays in a register (random updates of the tables were ~6x slower on a
    768x512 RGB image)."""
    bmax[:] = 0.0
    qmax[:] = 0.0
    cb = np.int64(-1)
    cq = np.int64(-1)
    mb = 0.0
    mq = 0.0
    for i in range(mags.shape[0]):
        m = mags[_u(i)]
        b = np.int64(blk[_u(i)])
        q = np.int64(quad[_u(i)])
        if q != cq:
            if cq >= 0 and mq > qmax[_u(cq)]:
                qmax[_u(cq)] = mq
            cq = q
            mq = 0.0
        if b != cb:
            if cb >= 0 and mb > bmax[_u(cb)]:
                bmax[_u(cb)] = mb
            cb = b
            mb = 0.0
        mq = max(mq, m)
        mb = max(mb, m)
    if cq >= 0 and mq > qmax[_u(cq)]:
        qmax[_u(cq)] = mq
    if cb >= 0 and mb > bmax[_u(cb)]:
        bmax[_u(cb)] = mb


@njit(cache=True, nogil=True, _nrt=False)
def _encode_scan(vals, exponent, final_exponent, max_tokens, tok_out, ent_out, pk_out, pos,
                 want_slots, sig, bsig, qsig, approx, mags, bmax, qmax,
                 blk, blk_end, quad, quad_end, starts):
    """Encode one image given its coefficients ``vals`` in scan order; write tokens (and compact
    slots: entry, plane*4 + kind) from row ``pos`` of the outputs. Returns the token count."""
    n = vals.shape[0]
    _reset(sig, bsig, qsig, approx)
    for i in range(n):
        mags[_u(i)] = abs(vals[_u(i)])
    _block_maxima(mags, blk, quad, bmax, qmax)
    nplanes = max(exponent - final_exponent + 1, 0)
    p, i, fb, fq, root, k = _begin(n, nplanes, sig, bsig, qsig, blk, quad, starts)
    count = 0
    while k != K_DONE and count < max_tokens:
        t = _POW2[exponent - p + _POW2_BIAS]
        tok = _choose(k, i, t, vals, mags, approx, bmax, qmax, blk, quad)
        tok_out[_u(pos + count)] = tok
        if want_slots:
            ent_out[_u(pos + count)] = i
            pk_out[_u(pos + count)] = (p << 2) | k
        count += 1
        p, i, fb, fq, root = _apply(tok, p, i, k, fb, fq, root, t, n, sig, bsig, qsig, approx,
                                    blk, blk_end, quad, quad_end)
        k = _kind(p, i, nplanes, sig, bsig, qsig, blk, quad, starts)
    return count


@njit(cache=True, nogil=True, _nrt=False)
def _decode_scan(tokens, exponent, final_exponent, sig, bsig, qsig, approx,
                 blk, blk_end, quad, quad_end, starts):
    """Replay ``tokens`` into ``approx`` (scan order). Returns -1, or the index of the first
    illegal token."""
    n = approx.shape[0]
    _reset(sig, bsig, qsig, approx)
    nplanes = max(exponent - final_exponent + 1, 0)
    p, i, fb, fq, root, k = _begin(n, nplanes, sig, bsig, qsig, blk, quad, starts)
    for c in range(tokens.shape[0]):
        tok = tokens[_u(c)]
        if not _legal(tok, i, k, fb, fq, root, blk_end, quad_end):
            return c
        t = _POW2[exponent - p + _POW2_BIAS]
        p, i, fb, fq, root = _apply(tok, p, i, k, fb, fq, root, t, n, sig, bsig, qsig, approx,
                                    blk, blk_end, quad, quad_end)
        k = _kind(p, i, nplanes, sig, bsig, qsig, blk, quad, starts)
    return -1


# --- pixels <-> pyramid -----------------------------------------------------------------------

@njit(cache=True, nogil=True, _nrt=False)
def _analyze(img, pyr, tmp, hp, wp, top, left, ycbcr, levels, dlo, dhi, down_f, down_x, down_off):
    """uint8 (H, W, C) image -> pyramid (C * hp * wp,), zero padded, colour transformed.
    ``tmp`` is scratch of ``hp * wp``."""
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
    for k in range(c):
        _dwt2_inplace(pyr[k * plane:(k + 1) * plane], tmp, hp, wp, levels, dlo, dhi,
                      down_f, down_x, down_off)


@njit(cache=True, nogil=True, _nrt=False)
def _synthesize(pyr, tmp, out, hp, wp, top, left, ycbcr, levels, rlo, rhi, up_f, up_x, up_off):
    """Pyramid -> float64 (H, W, C) image in [0, 1] (inverse DWT, crop, colour, clip)."""
    h, w, c = out.shape
    plane = hp * wp
    for k in range(c):
        _idwt2_inplace(pyr[k * plane:(k + 1) * plane], tmp, hp, wp, levels, rlo, rhi,
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
# ``lay`` = (blk, blk_end, quad, quad_end, starts, row, col, ch, sb, sb_level, sb_orient, flat,
#            n_blocks, n_quads): the scan tables of :mod:`wavecode.layout`

@njit(cache=True, nogil=True)
def _scratch(n, nblk, nquad):
    return (np.empty(n, np.float64), np.empty(n, np.float64), np.empty(n, np.float64),
            np.empty(n, np.uint8), np.empty(max(nblk, 1), np.int32),
            np.empty(max(nquad, 1), np.int32), np.empty(max(nblk, 1), np.float64),
            np.empty(max(nquad, 1), np.float64))


@njit(cache=True, nogil=True)
def _move_down(buf, dst, src, n):
    """``buf[dst:dst + n] = buf[src:src + n]`` for ``dst <= src`` (overlap allowed), in place."""
    for i in range(n):
        buf[dst + i] = buf[src + i]


@njit(cache=True, nogil=True)
def _encode_images(images, lo, hi, hp, wp, top, left, ycbcr, levels, final_exponent, max_tokens,
                   want_slots, plan, lay, tokens, ents, pks):
    """Encode ``images[lo:hi]`` (uint8 (B, H, W, C)) into the buffers ``tokens`` (uint8),
    ``ents`` (int32) and ``pks`` (uint8; the last two of length 1 without slots), which double
    when an image might not fit.

    Returns ``(tokens, entries, plane_kinds, counts, exponents)`` for that range (views of the
    buffers). The caller allocates the buffers (one region of each per thread, see
    ``tokenizer._gather`` and ``tokenizer._small_pages``): allocating them in here, one set
    per thread, and concatenating the results cost ~2x in page faults (measured).
    """
    dlo, dhi, _, _, down_f, down_x, down_off, _, _, _ = plan
    blk, blk_end, quad, quad_end, starts, _, _, _, _, _, _, flat, nblk, nquad = lay
    n = flat.shape[0]
    c = images.shape[3]
    pyr = np.empty(c * hp * wp, np.float64)
    tmp = np.empty(hp * wp, np.float64)
    vals, mags, approx, sig, bsig, qsig, bmax, qmax = _scratch(n, nblk, nquad)
    nimg = hi - lo
    counts = np.empty(nimg, np.int64)
    exps = np.empty(nimg, np.int32)
    pos = 0
    for b in range(nimg):
        _analyze(images[lo + b], pyr, tmp, hp, wp, top, left, ycbcr, levels, dlo, dhi,
                 down_f, down_x, down_off)
        for i in range(n):
            vals[i] = pyr[flat[i]]
        e = _exponent_of(vals, final_exponent)
        exps[b] = e
        # an entry gives at most two tokens per plane
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
        cnt = _encode_scan(vals, e, final_exponent, max_tokens, tokens, ents, pks, pos,
                           want_slots, sig, bsig, qsig, approx, mags, bmax, qmax,
                           blk, blk_end, quad, quad_end, starts)
        counts[b] = cnt
        pos += cnt
    if want_slots:
        return tokens[:pos], ents[:pos], pks[:pos], counts, exps
    return tokens[:pos], ents[:0], pks[:0], counts, exps


@njit(cache=True, nogil=True)
def _encode_pyramids(pyrs, final_exponent, max_tokens, lay, exps_in, tokens, ents, pks, offsets,
                     counts, exps_out, want_slots):
    """Encode coefficient pyramids (B, C*H*W) given exponents (or -2**31 to compute them) into
    preallocated outputs; ``offsets[b]`` is where image b starts."""
    blk, blk_end, quad, quad_end, starts, _, _, _, _, _, _, flat, nblk, nquad = lay
    n = flat.shape[0]
    vals, mags, approx, sig, bsig, qsig, bmax, qmax = _scratch(n, nblk, nquad)
    for b in range(pyrs.shape[0]):
        for i in range(n):
            vals[i] = pyrs[b, flat[i]]
        e = exps_in[b] if exps_in[b] > -(2 ** 31) else _exponent_of(vals, final_exponent)
        exps_out[b] = e
        counts[b] = _encode_scan(vals, e, final_exponent, max_tokens, tokens, ents, pks,
                                 offsets[b], want_slots, sig, bsig, qsig, approx, mags, bmax,
                                 qmax, blk, blk_end, quad, quad_end, starts)


@njit(cache=True, nogil=True)
def _decode_images(tokens, offsets, exps, lo, hi, out, hp, wp, top, left, ycbcr, levels,
                   final_exponent, plan, lay, errors, want_pixels, coef_out):
    """Decode streams ``lo:hi`` into ``out[b]`` (float64 (H, W, C)); ``errors[b]`` gets -1 or the
    index of the first illegal token. With ``want_pixels`` False, the approximations are written
    to ``coef_out[b]`` (flattened pyramid) instead."""
    _, _, rlo, rhi, _, _, _, up_f, up_x, up_off = plan
    blk, blk_end, quad, quad_end, starts, _, _, _, _, _, _, flat, nblk, nquad = lay
    n = flat.shape[0]
    c = out.shape[3]
    pyr = np.empty(c * hp * wp, np.float64)
    tmp = np.empty(hp * wp, np.float64)
    _, _, approx, sig, bsig, qsig, _, _ = _scratch(n, nblk, nquad)
    for b in range(lo, hi):
        err = _decode_scan(tokens[offsets[b]:offsets[b + 1]], exps[b], final_exponent,
                           sig, bsig, qsig, approx, blk, blk_end, quad, quad_end, starts)
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
    blk, blk_end, quad, quad_end, starts, _, _, _, _, _, _, flat, nblk, nquad = lay
    n = flat.shape[0]
    sig[:] = 0
    bsig[:] = 0
    qsig[:] = 0
    approx[:] = 0.0
    for b in range(cur.shape[0]):
        nplanes = max(exps[b] - final_exponent + 1, 0)
        p, i, fb, fq, root, k = _begin(n, nplanes, sig[b], bsig[b], qsig[b], blk, quad, starts)
        cur[b, _P] = p
        cur[b, _I] = i
        cur[b, _FB] = fb
        cur[b, _FQ] = fq
        cur[b, _ROOT] = root
        cur[b, _K] = k
        cur[b, _NP] = nplanes
        cur[b, _E] = exps[b]
        cur[b, _N] = 0


@njit(cache=True, nogil=True, _nrt=False)
def _state_step(cur, sig, bsig, qsig, approx, tokens, lay):
    """One token per stream (-1: leave that stream alone). Checks every stream first and
    changes nothing if one token is illegal; returns -1 or the first offending stream."""
    blk, blk_end, quad, quad_end, starts, _, _, _, _, _, _, flat, nblk, nquad = lay
    n = flat.shape[0]
    for b in range(cur.shape[0]):
        c = cur[b]
        if tokens[b] >= 0 and not _legal(tokens[b], c[_I], c[_K], c[_FB], c[_FQ], c[_ROOT],
                                         blk_end, quad_end):
            return b
    for b in range(cur.shape[0]):
        if tokens[b] < 0:
            continue
        c = cur[b]
        t = _POW2[c[_E] - c[_P] + _POW2_BIAS]
        p, i, fb, fq, root = _apply(tokens[b], c[_P], c[_I], c[_K], c[_FB], c[_FQ], c[_ROOT], t,
                                    n, sig[b], bsig[b], qsig[b], approx[b], blk, blk_end, quad,
                                    quad_end)
        c[_P] = p
        c[_I] = i
        c[_FB] = fb
        c[_FQ] = fq
        c[_ROOT] = root
        c[_N] += 1
        c[_K] = _kind(p, i, c[_NP], sig[b], bsig[b], qsig[b], blk, quad, starts)
    return -1


@njit(cache=True, nogil=True, _nrt=False)
def _state_mask(cur, mask, lay):
    blk_end = lay[1]
    quad_end = lay[3]
    for b in range(cur.shape[0]):
        c = cur[b]
        for t in range(7):
            mask[b, t] = _legal(t, c[_I], c[_K], c[_FB], c[_FQ], c[_ROOT], blk_end, quad_end)


@njit(cache=True, nogil=True, _nrt=False)
def _state_slots(cur, slots, lay):
    _, _, _, _, _, row, col, ch, sb, sb_level, sb_orient, _, _, _ = lay
    for b in range(cur.shape[0]):
        if cur[b, _K] == K_DONE:
            slots[b, :] = -1
        else:
            _write_slot(slots, b, cur[b, _P], cur[b, _I], cur[b, _K], row, col, ch, sb, sb_level,
                        sb_orient)


@njit(cache=True, nogil=True)
def _analyze_batch(images, pyrs, hp, wp, top, left, ycbcr, levels, plan):
    dlo, dhi, _, _, down_f, down_x, down_off, _, _, _ = plan
    tmp = np.empty(hp * wp, np.float64)
    for b in range(images.shape[0]):
        _analyze(images[b], pyrs[b], tmp, hp, wp, top, left, ycbcr, levels, dlo, dhi,
                 down_f, down_x, down_off)


@njit(cache=True, nogil=True)
def _synthesize_batch(pyrs, out, hp, wp, top, left, ycbcr, levels, plan):
    _, _, rlo, rhi, _, _, _, up_f, up_x, up_off = plan
    tmp = np.empty(hp * wp, np.float64)
    buf = np.empty(pyrs.shape[1], np.float64)
    for b in range(pyrs.shape[0]):
        buf[:] = pyrs[b]
        _synthesize(buf, tmp, out[b], hp, wp, top, left, ycbcr, levels, rlo, rhi,
                    up_f, up_x, up_off)
