"""Lifting wavelet transforms for the codec: CDF 9/7 (float) and LeGall 5/3 (reversible integer).

Any length (odd too), whole-sample symmetric extension as in JPEG 2000; a length-n signal gives
``ceil(n/2)`` low-pass and ``floor(n/2)`` high-pass samples. In 2-D, every level transforms the
rows, then the columns of the current LL region, in place: the low half lands first, so the
pyramid keeps the layout of ``pywt.coeffs_to_array`` (LL top-left; per level the quadrants
top-right = horizontal high-pass, bottom-left, bottom-right).

The 9/7 filters are scaled to unit synthesis-basis norm (``_LO``/``_HI`` below), so a threshold
means the same squared error in every subband -- what an embedded bit-plane coder needs.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from ._dwt import _u

# CDF 9/7 lifting steps (Daubechies & Sweldens); K scales the bands
_A = -1.586134342059924
_B = -0.052980118572961
_G = 0.882911075530934
_D = 0.443506852043971
_K = 1.230174104914001
# with these scales the synthesis basis functions have unit norm (orthonormal-like)
_LO = np.sqrt(2.0) / _K
_HI = _K / np.sqrt(2.0)


@njit(cache=True, nogil=True, _nrt=False)
def _lift_rows(t, n, cw, coef, odd):
    """One lifting step on whole rows of ``t`` (``n`` rows of ``cw``; a 1-D signal is ``cw=1``):
    odd rows (``odd``) get ``coef`` times the sum of their even neighbours, or even rows that of
    their odd neighbours; whole-sample symmetric extension at both ends. The inner loop runs
    along a row, so it vectorizes. (Undoing a step is the same step with ``-coef``: exact.)"""
    if odd:
        for k in range(n // 2):
            r = 2 * k + 1
            a = (r - 1) * cw
            b = (r + 1) * cw if r + 1 < n else (r - 1) * cw
            d = r * cw
            for j in range(cw):
                t[_u(d + j)] += coef * (t[_u(a + j)] + t[_u(b + j)])
    else:
        for k in range((n + 1) // 2):
            r = 2 * k
            a = (r - 1) * cw if r > 0 else cw
            b = (r + 1) * cw if r + 1 < n else (r - 1) * cw
            d = r * cw
            for j in range(cw):
                t[_u(d + j)] += coef * (t[_u(a + j)] + t[_u(b + j)])


@njit(cache=True, nogil=True, _nrt=False)
def _lift_rows_int(t, n, cw, odd, sign):
    """The two 5/3 integer steps on whole rows (see :func:`_lift_rows`): predict (odd rows) and
    update (even rows); ``sign`` +1 applies a step, -1 undoes it."""
    if odd:
        for k in range(n // 2):
            r = 2 * k + 1
            a = (r - 1) * cw
            b = (r + 1) * cw if r + 1 < n else (r - 1) * cw
            d = r * cw
            for j in range(cw):
                t[_u(d + j)] -= sign * np.floor((t[_u(a + j)] + t[_u(b + j)]) / 2.0)
    else:
        for k in range((n + 1) // 2):
            r = 2 * k
            a = (r - 1) * cw if r > 0 else cw
            b = (r + 1) * cw if r + 1 < n else (r - 1) * cw
            d = r * cw
            for j in range(cw):
                t[_u(d + j)] += sign * np.floor((t[_u(a + j)] + t[_u(b + j)] + 2.0) / 4.0)


@njit(cache=True, nogil=True, _nrt=False)
def _lift(t, n, cw, reversible, forward):
    """All lifting steps of one level on the interleaved rows of ``t`` (no band scaling)."""
    if reversible:
        if forward:
            _lift_rows_int(t, n, cw, True, 1.0)
            _lift_rows_int(t, n, cw, False, 1.0)
        else:
            _lift_rows_int(t, n, cw, False, -1.0)
            _lift_rows_int(t, n, cw, True, -1.0)
    elif forward:
        _lift_rows(t, n, cw, _A, True)
        _lift_rows(t, n, cw, _B, False)
        _lift_rows(t, n, cw, _G, True)
        _lift_rows(t, n, cw, _D, False)
    else:
        _lift_rows(t, n, cw, -_D, False)
        _lift_rows(t, n, cw, -_G, True)
        _lift_rows(t, n, cw, -_B, False)
        _lift_rows(t, n, cw, -_A, True)


@njit(cache=True, nogil=True, inline="always")
def _split_term(t, d, a, b, coef, mode, sign):
    """One sample of a lifting step: ``t[d]`` from ``t[a] + t[b]`` (float step with ``coef``,
    or the 5/3 integer predict (``mode`` 1) / update (2) step, applied with ``sign``)."""
    if mode == 0:
        t[_u(d)] += coef * (t[_u(a)] + t[_u(b)])
    elif mode == 1:
        t[_u(d)] -= sign * np.floor((t[_u(a)] + t[_u(b)]) / 2.0)
    else:
        t[_u(d)] += sign * np.floor((t[_u(a)] + t[_u(b)] + 2.0) / 4.0)


@njit(cache=True, nogil=True, _nrt=False)
def _step_split(t, n, odd, coef, mode, sign):
    """:func:`_lift_rows` on one signal of length ``n`` held split: its even samples in
    ``t[:ne]``, its odd ones in ``t[ne:n]``. The same sums in the same order, so the same bits;
    contiguous loops without the boundary tests inside, so they vectorize."""
    ne = (n + 1) // 2
    nh = n // 2
    if odd:         # odd sample k: even neighbours k and k + 1 (k, k at the right end)
        m = min(nh, ne - 1)
        if mode == 0:
            for k in range(m):
                t[_u(ne + k)] += coef * (t[_u(k)] + t[_u(k + 1)])
        else:
            for k in range(m):
                _split_term(t, ne + k, k, k + 1, coef, mode, sign)
        if nh == ne:
            _split_term(t, ne + nh - 1, nh - 1, nh - 1, coef, mode, sign)
    else:           # even sample k: odd neighbours k - 1 and k (0, 0 at the left end)
        _split_term(t, 0, ne, ne, coef, mode, sign)
        if mode == 0:
            for k in range(1, nh):
                t[_u(k)] += coef * (t[_u(ne + k - 1)] + t[_u(ne + k)])
        else:
            for k in range(1, nh):
                _split_term(t, k, ne + k - 1, ne + k, coef, mode, sign)
        if ne > nh and ne > 1:
            _split_term(t, ne - 1, ne + nh - 1, ne + nh - 1, coef, mode, sign)


@njit(cache=True, nogil=True, _nrt=False)
def _lift_split(t, n, reversible, forward):
    """All lifting steps of one level on a split signal (see :func:`_step_split`)."""
    if reversible:
        if forward:
            _step_split(t, n, True, 0.0, 1, 1.0)
            _step_split(t, n, False, 0.0, 2, 1.0)
        else:
            _step_split(t, n, False, 0.0, 2, -1.0)
            _step_split(t, n, True, 0.0, 1, -1.0)
    elif forward:
        _step_split(t, n, True, _A, 0, 1.0)
        _step_split(t, n, False, _B, 0, 1.0)
        _step_split(t, n, True, _G, 0, 1.0)
        _step_split(t, n, False, _D, 0, 1.0)
    else:
        _step_split(t, n, False, -_D, 0, 1.0)
        _step_split(t, n, True, -_G, 0, 1.0)
        _step_split(t, n, False, -_B, 0, 1.0)
        _step_split(t, n, True, -_A, 0, 1.0)


@njit(cache=True, nogil=True, _nrt=False)
def _fwd_line(x, n, stride, base, reversible, tmp):
    """In-place forward transform of ``x[base + k*stride]``, k < n: low half, then high half.
    (Lifted split -- evens, then odds -- which is where the halves end up anyway.)"""
    if n < 2:
        return
    ne = (n + 1) // 2
    for k in range(ne):
        tmp[_u(k)] = x[_u(base + 2 * k * stride)]
    for k in range(n // 2):
        tmp[_u(ne + k)] = x[_u(base + (2 * k + 1) * stride)]
    _lift_split(tmp, n, reversible, True)
    lo = 1.0 if reversible else _LO
    hi = 1.0 if reversible else _HI
    for k in range(ne):
        x[_u(base + k * stride)] = tmp[_u(k)] * lo
    for k in range(ne, n):
        x[_u(base + k * stride)] = tmp[_u(k)] * hi


@njit(cache=True, nogil=True, _nrt=False)
def _inv_line(x, n, stride, base, reversible, tmp):
    if n < 2:
        return
    lo = 1.0 if reversible else _LO
    hi = 1.0 if reversible else _HI
    ne = (n + 1) // 2
    for k in range(ne):
        tmp[_u(k)] = x[_u(base + k * stride)] / lo
    for k in range(ne, n):
        tmp[_u(k)] = x[_u(base + k * stride)] / hi
    _lift_split(tmp, n, reversible, False)
    for k in range(ne):
        x[_u(base + 2 * k * stride)] = tmp[_u(k)]
    for k in range(n // 2):
        x[_u(base + (2 * k + 1) * stride)] = tmp[_u(ne + k)]


@njit(cache=True, nogil=True, _nrt=False)
def _fwd_cols(x, ch, cw, w, reversible, t):
    """Vertical analysis of the ``ch x cw`` region of ``x`` (row stride ``w``), rows at a time."""
    if ch < 2:
        return
    for r in range(ch):
        for j in range(cw):
            t[_u(r * cw + j)] = x[_u(r * w + j)]
    _lift(t, ch, cw, reversible, True)
    lo = 1.0 if reversible else _LO
    hi = 1.0 if reversible else _HI
    ne = (ch + 1) // 2
    for r in range(ch):
        dst = (r // 2 if r % 2 == 0 else ne + r // 2) * w
        s = lo if r % 2 == 0 else hi
        for j in range(cw):
            x[_u(dst + j)] = t[_u(r * cw + j)] * s


@njit(cache=True, nogil=True, _nrt=False)
def _inv_cols(x, ch, cw, w, reversible, t):
    _inv_cols_part(x, ch, 0, cw, w, reversible, t)


@njit(cache=True, nogil=True, _nrt=False)
def _inv_cols_part(x, ch, j0, j1, w, reversible, t):
    """Vertical synthesis of the columns ``j0 <= j < j1`` of the ``ch``-row region of ``x``
    (row stride ``w``); ``t`` holds ``ch * (j1 - j0)``. Columns are independent: any split of
    them gives the same values."""
    if ch < 2:
        return
    cw = j1 - j0
    ne = (ch + 1) // 2
    lo = 1.0 if reversible else _LO
    hi = 1.0 if reversible else _HI
    for r in range(ch):
        src = (r // 2 if r % 2 == 0 else ne + r // 2) * w + j0
        s = lo if r % 2 == 0 else hi
        for j in range(cw):
            t[_u(r * cw + j)] = x[_u(src + j)] / s
    _lift(t, ch, cw, reversible, False)
    for r in range(ch):
        for j in range(cw):
            x[_u(r * w + j0 + j)] = t[_u(r * cw + j)]


@njit(cache=True, nogil=True, _nrt=False)
def _fwd2d(x, h, w, levels, reversible, tmp):
    """Forward 2-D transform of the ``h x w`` plane ``x`` (row-major), in place; ``tmp`` needs
    ``h * w`` (at least ``max(h, w) + 2``) elements."""
    ch = h
    cw = w
    for _ in range(levels):
        for r in range(ch):
            _fwd_line(x, cw, 1, r * w, reversible, tmp)
        _fwd_cols(x, ch, cw, w, reversible, tmp)
        ch = (ch + 1) // 2
        cw = (cw + 1) // 2


@njit(cache=True, nogil=True, inline="always")
def _level_shape(h, w, lev):
    """Rows and columns of the region that level ``lev`` (0: the finest) splits."""
    for _ in range(lev):
        h = (h + 1) // 2
        w = (w + 1) // 2
    return h, w


@njit(cache=True, nogil=True, _nrt=False)
def _inv2d(x, h, w, levels, reversible, tmp):
    for lev in range(levels - 1, -1, -1):
        ch, cw = _level_shape(h, w, lev)
        _inv_cols(x, ch, cw, w, reversible, tmp)
        for r in range(ch):
            _inv_line(x, cw, 1, r * w, reversible, tmp)


@njit(cache=True, nogil=True, parallel=True)
def _inv2d_par(x, h, w, levels, reversible, parts):
    """:func:`_inv2d` with each level's columns, then its rows, split into ``parts`` ranges that
    run in parallel, each with its own work buffer. Columns (rows) are transformed independently
    and in the same order, so the values are :func:`_inv2d`'s to the bit."""
    for lev in range(levels - 1, -1, -1):
        ch, cw = _level_shape(h, w, lev)
        for k in prange(parts):
            j0 = cw * k // parts
            j1 = cw * (k + 1) // parts
            if j1 > j0:
                _inv_cols_part(x, ch, j0, j1, w, reversible, np.empty(ch * (j1 - j0)))
        for k in prange(parts):
            tmp = np.empty(cw + 2)
            for r in range(ch * k // parts, ch * (k + 1) // parts):
                _inv_line(x, cw, 1, r * w, reversible, tmp)


def codec_bands(height: int, width: int, levels: int):
    """Subbands of the lifting pyramid in scan order, ``(row0, col0, h, w, level, orientation)``
    (the same convention as :func:`wavecode.layout.subbands`, with ceil/floor band sizes)."""
    sizes = [(height, width)]
    for _ in range(levels):
        h, w = sizes[-1]
        sizes.append(((h + 1) // 2, (w + 1) // 2))
    hl, wl = sizes[levels]
    out = [(0, 0, hl, wl, 0, 0)]
    for k in range(levels):
        h, w = sizes[levels - k - 1]       # the region this level splits
        lh, lw = sizes[levels - k]         # its low half
        out += [(0, lw, lh, w - lw, k + 1, 1), (lh, 0, h - lh, lw, k + 1, 2),
                (lh, lw, h - lh, w - lw, k + 1, 3)]
    return [b for b in out if b[2] > 0 and b[3] > 0]
