"""Periodized 2-D DWT in numba, bit-identical to ``pywt.wavedec2(..., mode="periodization")``.

The token stream compares coefficients against powers of two, and MNIST has many pixels at exactly
1.0, so coefficients sit *on* thresholds: one ulp decides a token. The only way to be both fast and
exact to the spec (which is defined through PyWavelets) is to add the same products in the same
order as PyWavelets' C loops. We therefore trace those loops once per (signal length, filter length)
into *tap tables* -- for every output sample the ordered list of ``(filter index, input index)`` --
and let the numba kernels replay the tables. ``tests/test_dwt.py`` checks bit equality against
PyWavelets on random data, which would catch any difference in order.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import pywt
from numba import njit


def _trace_down(n: int, f: int) -> list[list[tuple[int, int]]]:
    """Order of the products of PyWavelets' periodized down-sampling convolution (step 2)."""
    pad = (2 - n % 2) % 2
    out: list[list[tuple[int, int]]] = []

    def wrap_tail(lst, j):
        while j < f:
            k = 0
            while k < pad and j < f:
                lst.append((j, n - 1))
                k += 1
                j += 1
            k = 0
            while k < n and j < f:
                lst.append((j, n - 1 - k))
                k += 1
                j += 1

    def wrap_head(lst, i):
        j = 0
        while i - j >= n:
            k = 0
            while k < pad and i - j >= n:
                lst.append((i - n - j, n - 1))
                k += 1
                j += 1
            k = 0
            while k < n and i - j >= n:
                lst.append((i - n - j, k))
                k += 1
                j += 1
        return j

    i = f // 2
    while i < f and i < n:
        lst = [(j, i - j) for j in range(i + 1)]
        wrap_tail(lst, i + 1)
        out.append(lst)
        i += 2
    while i < n:
        out.append([(j, i - j) for j in range(f)])
        i += 2
    while i < f and i < n + f // 2:
        lst = []
        j = wrap_head(lst, i)
        while j <= i:
            lst.append((j, i - j))
            j += 1
        wrap_tail(lst, j)
        out.append(lst)
        i += 2
    while i < n + f // 2:
        lst = []
        j = wrap_head(lst, i)
        while j < f:
            lst.append((j, i - j))
            j += 1
        out.append(lst)
        i += 2
    return out


def _trace_up(n: int, f: int) -> list[list[tuple[int, int]]]:
    """Order of the additions of PyWavelets' periodized up-sampling convolution (input length n,
    output 2n): for each output sample, the ``(filter index, input index)`` pairs in the order
    they are added to it."""
    h = f // 2
    out: list[list[tuple[int, int]]] = [[] for _ in range(2 * n)]
    start = f // 4
    end = n + start - (0 if h % 2 else 1)
    o = 0
    i = start

    def add(o_, jf, x):
        out[o_].append((2 * jf, x))
        out[o_ + 1].append((2 * jf + 1, x))

    if h % 2 == 0:
        j = 0
        while j <= start - 1:
            k = 0
            while k < n and j <= start - 1:
                out[2 * n - 1].append((2 * (start - 1 - j), k))
                out[0].append((2 * (start - 1 - j) + 1, k))
                k += 1
                j += 1
        while j <= n + start - 1 and j < h:
            out[2 * n - 1].append((2 * j, n + start - 1 - j))
            out[0].append((2 * j + 1, n + start - 1 - j))
            j += 1
        while j < h:
            k = 0
            while k < n and j < h:
                out[2 * n - 1].append((2 * j, n - 1 - k))
                out[0].append((2 * j + 1, n - 1 - k))
                k += 1
                j += 1
        o += 1

    def head(i_, o_):
        j = 0
        while i_ - j >= n:
            k = 0
            while k < n and i_ - j >= n:
                add(o_, i_ - n - j, k)
                k += 1
                j += 1
        return j

    def tail(j, o_):
        while j < h:
            k = 0
            while k < n and j < h:
                add(o_, j, n - 1 - k)
                k += 1
                j += 1

    while i < h and i < n:
        j = 0
        while j <= i:
            add(o, j, i - j)
            j += 1
        tail(j, o)
        i += 1
        o += 2
    while i < n:
        for j in range(h):
            add(o, j, i - j)
        i += 1
        o += 2
    while i < h and i < end:
        j = head(i, o)
        while j <= i and j < h:
            add(o, j, i - j)
            j += 1
        tail(j, o)
        i += 1
        o += 2
    while i < end:
        j = head(i, o)
        while j <= i and j < h:
            add(o, j, i - j)
            j += 1
        i += 1
        o += 2
    return out


def _as_table(lists: list[list[tuple[int, int]]]) -> tuple[np.ndarray, np.ndarray]:
    width = max(len(t) for t in lists)
    fi = np.full((len(lists), width), -1, np.int32)
    xi = np.zeros((len(lists), width), np.int32)
    for o, taps in enumerate(lists):
        for t, (a, b) in enumerate(taps):
            fi[o, t] = a
            xi[o, t] = b
    return fi, xi


@lru_cache(maxsize=None)
def dwt_plan(wavelet: str, height: int, width: int, levels: int):
    """Filters and tap tables for a ``levels``-deep periodized DWT of a ``height x width`` plane.

    Returns a tuple of numpy arrays, ready to pass to the numba kernels:
    ``(dec_lo, dec_hi, rec_lo, rec_hi, down_f, down_x, down_off, up_f, up_x, up_off, sizes)``,
    where the tables of every signal length used are stacked and ``*_off[n]`` gives the first row
    of length ``n``'s table.
    """
    w = pywt.Wavelet(wavelet)
    if not w.orthogonal and not w.biorthogonal:
        raise ValueError(f"wavelet {wavelet!r} is neither orthogonal nor biorthogonal")
    f_dec, f_rec = w.dec_len, w.rec_len
    if f_rec % 2:
        raise ValueError(f"wavelet {wavelet!r} has an odd reconstruction filter length")
    lengths = sorted({height >> k for k in range(levels)} | {width >> k for k in range(levels)})
    maxlen = max(height, width) + 1
    down_off = np.full(maxlen, -1, np.int64)
    up_off = np.full(maxlen, -1, np.int64)
    dfs, ufs = [], []
    drow = urow = 0
    width_d = f_dec
    width_u = 0
    for n in lengths:
        if n < 2 or n % 2:
            continue
        down = _trace_down(n, f_dec)
        up = _trace_up(n // 2, f_rec)
        assert len(down) == n // 2 and all(len(t) == f_dec for t in down)
        width_u = max(width_u, max(len(t) for t in up))
        dfs.append(down)
        ufs.append(up)
        down_off[n] = drow
        up_off[n] = urow
        drow += n // 2
        urow += n
    down_f = np.full((max(drow, 1), width_d), -1, np.int32)
    down_x = np.zeros_like(down_f)
    up_f = np.full((max(urow, 1), max(width_u, 1)), -1, np.int32)
    up_x = np.zeros_like(up_f)
    r = 0
    for down in dfs:
        a, b = _as_table(down)
        down_f[r:r + len(down)] = a
        down_x[r:r + len(down)] = b
        r += len(down)
    r = 0
    for up in ufs:
        a, b = _as_table(up)
        up_f[r:r + len(up), :a.shape[1]] = a
        up_x[r:r + len(up), :a.shape[1]] = b
        r += len(up)
    return (np.asarray(w.dec_lo, np.float64), np.asarray(w.dec_hi, np.float64),
            np.asarray(w.rec_lo, np.float64), np.asarray(w.rec_hi, np.float64),
            down_f, down_x, down_off, up_f, up_x, up_off)


@njit(cache=True, nogil=True, inline="always")
def _u(i):
    """An index as unsigned, so that numba drops its negative-index wraparound (these kernels
    only index with non-negative values; measured 2.4x on the row pass)."""
    return np.uint64(i)


@njit(cache=True, nogil=True, _nrt=False)
def _down_cols(src, sstride, n, w, flo, fhi, tf, tx, row0, dst, dstride):
    """Periodized analysis along the first axis of an ``n x w`` block (row stride ``sstride``):
    low band into ``dst`` rows ``[0, n/2)``, high band into rows ``[n/2, n)``. Each output adds
    its products in PyWavelets' order; the inner loop runs along contiguous rows, so it
    vectorizes without reordering any sum."""
    h2 = n // 2
    for o in range(h2):
        r = row0 + o
        lo = o * dstride
        hi = (h2 + o) * dstride
        for c in range(w):
            dst[_u(lo + c)] = 0.0
            dst[_u(hi + c)] = 0.0
        for t in range(tf.shape[1]):
            a = flo[_u(tf[_u(r), _u(t)])]
            b = fhi[_u(tf[_u(r), _u(t)])]
            s = tx[_u(r), _u(t)] * sstride
            for c in range(w):
                v = src[_u(s + c)]
                dst[_u(lo + c)] += a * v
                dst[_u(hi + c)] += b * v


@njit(cache=True, nogil=True, _nrt=False)
def _up_cols(src, sstride, n, w, rlo, rhi, uf, ux, row0, dst, dstride):
    """Periodized synthesis along the first axis: rows ``[0, n)`` of ``src`` are the low band,
    ``[n, 2n)`` the high band; ``2n`` output rows. Low-band products are added first, as in
    PyWavelets' ``idwt_axis``."""
    for o in range(2 * n):
        r = row0 + o
        d = o * dstride
        for c in range(w):
            dst[_u(d + c)] = 0.0
        for t in range(uf.shape[1]):
            f = uf[_u(r), _u(t)]
            if f < 0:
                break
            a = rlo[_u(f)]
            s = ux[_u(r), _u(t)] * sstride
            for c in range(w):
                dst[_u(d + c)] += a * src[_u(s + c)]
        for t in range(uf.shape[1]):
            f = uf[_u(r), _u(t)]
            if f < 0:
                break
            a = rhi[_u(f)]
            s = (n + ux[_u(r), _u(t)]) * sstride
            for c in range(w):
                dst[_u(d + c)] += a * src[_u(s + c)]


@njit(cache=True, nogil=True, _nrt=False)
def _down_rows(src, sstride, h, n, flo, fhi, tf, tx, row0, dst, dstride):
    """Periodized analysis along the second axis of an ``h x n`` block: low band into columns
    ``[0, n/2)`` of ``dst``, high band into ``[n/2, n)``; sums kept in registers."""
    h2 = n // 2
    nt = tf.shape[1]
    for rr in range(h):
        s0 = rr * sstride
        d0 = rr * dstride
        for o in range(h2):
            r = row0 + o
            alo = 0.0
            ahi = 0.0
            for t in range(nt):
                f = tf[_u(r), _u(t)]
                v = src[_u(s0 + tx[_u(r), _u(t)])]
                alo += flo[_u(f)] * v
                ahi += fhi[_u(f)] * v
            dst[_u(d0 + o)] = alo
            dst[_u(d0 + h2 + o)] = ahi


@njit(cache=True, nogil=True, _nrt=False)
def _up_rows(src, sstride, h, n, rlo, rhi, uf, ux, row0, dst, dstride):
    """Periodized synthesis along the second axis: columns ``[0, n)`` of ``src`` are the low
    band, ``[n, 2n)`` the high band; ``2n`` output columns."""
    nt = uf.shape[1]
    for rr in range(h):
        s0 = rr * sstride
        d0 = rr * dstride
        for o in range(2 * n):
            r = row0 + o
            acc = 0.0
            for t in range(nt):
                f = uf[_u(r), _u(t)]
                if f < 0:
                    break
                acc += rlo[_u(f)] * src[_u(s0 + ux[_u(r), _u(t)])]
            for t in range(nt):
                f = uf[_u(r), _u(t)]
                if f < 0:
                    break
                acc += rhi[_u(f)] * src[_u(s0 + n + ux[_u(r), _u(t)])]
            dst[_u(d0 + o)] = acc


@njit(cache=True, nogil=True, _nrt=False)
def _dwt2_inplace(pyr, tmp, hp, wp, levels, flo, fhi, down_f, down_x, down_off):
    """Forward DWT of one plane stored row-major in ``pyr[:hp*wp]`` (row stride ``wp``), in place,
    into the pyramid layout of ``pywt.coeffs_to_array``. ``tmp`` is scratch of ``hp*wp``."""
    h = hp
    w = wp
    for _ in range(levels):
        # axis -2 first (PyWavelets' dwtn order), then axis -1
        _down_cols(pyr, wp, h, w, flo, fhi, down_f, down_x, down_off[h], tmp, wp)
        _down_rows(tmp, wp, h, w, flo, fhi, down_f, down_x, down_off[w], pyr, wp)
        h //= 2
        w //= 2


@njit(cache=True, nogil=True, _nrt=False)
def _idwt2_inplace(pyr, tmp, hp, wp, levels, rlo, rhi, up_f, up_x, up_off):
    """Inverse of :func:`_dwt2_inplace` (same layout), in place."""
    for lev in range(levels - 1, -1, -1):
        h = hp >> lev
        w = wp >> lev
        # axis -1 first (PyWavelets' idwtn runs the axes in reverse), then axis -2
        _up_rows(pyr, wp, h, w // 2, rlo, rhi, up_f, up_x, up_off[w], tmp, wp)
        _up_cols(tmp, wp, h // 2, w, rlo, rhi, up_f, up_x, up_off[h], pyr, wp)
