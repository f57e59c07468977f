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
from numba import njit

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
def _fwd97_line(x, n, stride, base, tmp):
    """In-place forward 9/7 of ``x[base + k*stride]``, k < n; output low half then high half."""
    if n < 2:
        return
    ne = (n + 1) // 2
    nd = n // 2
    for k in range(n):
        tmp[k] = x[base + k * stride]
    # tmp holds the interleaved signal; lift in place on even/odd positions
    for k in range(nd):
        r = tmp[2 * k + 2] if 2 * k + 2 < n else tmp[2 * k]
        tmp[2 * k + 1] += _A * (tmp[2 * k] + r)
    for k in range(ne):
        left = tmp[2 * k - 1] if k > 0 else tmp[1]
        right = tmp[2 * k + 1] if 2 * k + 1 < n else tmp[2 * k - 1]
        tmp[2 * k] += _B * (left + right)
    for k in range(nd):
        r = tmp[2 * k + 2] if 2 * k + 2 < n else tmp[2 * k]
        tmp[2 * k + 1] += _G * (tmp[2 * k] + r)
    for k in range(ne):
        left = tmp[2 * k - 1] if k > 0 else tmp[1]
        right = tmp[2 * k + 1] if 2 * k + 1 < n else tmp[2 * k - 1]
        tmp[2 * k] += _D * (left + right)
    for k in range(ne):
        x[base + k * stride] = tmp[2 * k] * _LO
    for k in range(nd):
        x[base + (ne + k) * stride] = tmp[2 * k + 1] * _HI


@njit(cache=True, nogil=True, _nrt=False)
def _inv97_line(x, n, stride, base, tmp):
    if n < 2:
        return
    ne = (n + 1) // 2
    nd = n // 2
    for k in range(ne):
        tmp[2 * k] = x[base + k * stride] / _LO
    for k in range(nd):
        tmp[2 * k + 1] = x[base + (ne + k) * stride] / _HI
    for k in range(ne):
        left = tmp[2 * k - 1] if k > 0 else tmp[1]
        right = tmp[2 * k + 1] if 2 * k + 1 < n else tmp[2 * k - 1]
        tmp[2 * k] -= _D * (left + right)
    for k in range(nd):
        r = tmp[2 * k + 2] if 2 * k + 2 < n else tmp[2 * k]
        tmp[2 * k + 1] -= _G * (tmp[2 * k] + r)
    for k in range(ne):
        left = tmp[2 * k - 1] if k > 0 else tmp[1]
        right = tmp[2 * k + 1] if 2 * k + 1 < n else tmp[2 * k - 1]
        tmp[2 * k] -= _B * (left + right)
    for k in range(nd):
        r = tmp[2 * k + 2] if 2 * k + 2 < n else tmp[2 * k]
        tmp[2 * k + 1] -= _A * (tmp[2 * k] + r)
    for k in range(n):
        x[base + k * stride] = tmp[k]


@njit(cache=True, nogil=True, _nrt=False)
def _fwd53_line(x, n, stride, base, tmp):
    """In-place reversible 5/3 (integers held in float64, exact below 2**53)."""
    if n < 2:
        return
    ne = (n + 1) // 2
    nd = n // 2
    for k in range(n):
        tmp[k] = x[base + k * stride]
    for k in range(nd):
        r = tmp[2 * k + 2] if 2 * k + 2 < n else tmp[2 * k]
        tmp[2 * k + 1] -= np.floor((tmp[2 * k] + r) / 2.0)
    for k in range(ne):
        left = tmp[2 * k - 1] if k > 0 else tmp[1]
        right = tmp[2 * k + 1] if 2 * k + 1 < n else tmp[2 * k - 1]
        tmp[2 * k] += np.floor((left + right + 2.0) / 4.0)
    for k in range(ne):
        x[base + k * stride] = tmp[2 * k]
    for k in range(nd):
        x[base + (ne + k) * stride] = tmp[2 * k + 1]


@njit(cache=True, nogil=True, _nrt=False)
def _inv53_line(x, n, stride, base, tmp):
    if n < 2:
        return
    ne = (n + 1) // 2
    nd = n // 2
    for k in range(ne):
        tmp[2 * k] = x[base + k * stride]
    for k in range(nd):
        tmp[2 * k + 1] = x[base + (ne + k) * stride]
    for k in range(ne):
        left = tmp[2 * k - 1] if k > 0 else tmp[1]
        right = tmp[2 * k + 1] if 2 * k + 1 < n else tmp[2 * k - 1]
        tmp[2 * k] -= np.floor((left + right + 2.0) / 4.0)
    for k in range(nd):
        r = tmp[2 * k + 2] if 2 * k + 2 < n else tmp[2 * k]
        tmp[2 * k + 1] += np.floor((tmp[2 * k] + r) / 2.0)
    for k in range(n):
        x[base + k * stride] = tmp[k]


@njit(cache=True, nogil=True, _nrt=False)
def _fwd2d(x, h, w, levels, reversible, tmp):
    """Forward 2-D transform of the ``h x w`` plane ``x`` (row-major), in place."""
    ch = h
    cw = w
    for _ in range(levels):
        for r in range(ch):
            if reversible:
                _fwd53_line(x, cw, 1, r * w, tmp)
            else:
                _fwd97_line(x, cw, 1, r * w, tmp)
        for c in range(cw):
            if reversible:
                _fwd53_line(x, ch, w, c, tmp)
            else:
                _fwd97_line(x, ch, w, c, tmp)
        ch = (ch + 1) // 2
        cw = (cw + 1) // 2


@njit(cache=True, nogil=True, _nrt=False)
def _inv2d(x, h, w, levels, reversible, tmp):
    for lev in range(levels - 1, -1, -1):
        ch = h
        cw = w
        for _ in range(lev):
            ch = (ch + 1) // 2
            cw = (cw + 1) // 2
        for c in range(cw):
            if reversible:
                _inv53_line(x, ch, w, c, tmp)
            else:
                _inv97_line(x, ch, w, c, tmp)
        for r in range(ch):
            if reversible:
                _inv53_line(x, cw, 1, r * w, tmp)
            else:
                _inv97_line(x, cw, 1, r * w, tmp)


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
