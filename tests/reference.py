"""A slow, obvious implementation of the wavelet language, written straight from the spec.

It shares no code with ``wavecode`` (only PyWavelets for the transform): the numba kernels are
checked against it. Grayscale or 3-channel, any size; recursion over blocks instead of the flat
cursor the kernels use.
"""
from __future__ import annotations

import math

import numpy as np
import pywt

G4, G2, INS, NSP, NSN, NA0, NA1 = range(7)
K_G4, K_G2, K_COEF, K_REF = range(4)


def levels_for(h, w):
    lev = 0
    while math.ceil(min(h, w) / 2 ** (lev + 1)) >= 2:
        lev += 1
    return lev


def to_pyramid(img_u8, wavelet, levels=None, color="ycbcr"):
    """uint8 (H, W) or (H, W, 3) -> (C, Hp, Wp) float64 pyramid, per the spec."""
    x = img_u8.astype(np.float64) / 255.0
    if x.ndim == 2:
        x = x[..., None]
    h, w, c = x.shape
    if c == 3 and color == "ycbcr":
        r, g, b = x[..., 0], x[..., 1], x[..., 2]
        x = np.stack([0.299 * r + 0.587 * g + 0.114 * b,
                      -0.168736 * r - 0.331264 * g + 0.5 * b,
                      0.5 * r - 0.418688 * g - 0.081312 * b], axis=-1)
    lev = levels_for(h, w) if levels is None else levels
    s = 2 ** lev
    hp, wp = -(-h // s) * s, -(-w // s) * s
    top, left = (hp - h) // 2, (wp - w) // 2
    out = np.zeros((c, hp, wp))
    for k in range(c):
        plane = np.zeros((hp, wp))
        plane[top:top + h, left:left + w] = x[..., k]
        if lev == 0:
            out[k] = plane
        else:
            coeffs = pywt.wavedec2(plane, wavelet, mode="periodization", level=lev)
            out[k] = pywt.coeffs_to_array(coeffs)[0]
    return out, lev, (top, left)


def from_pyramid(pyr, wavelet, levels, shape, color="ycbcr"):
    c, hp, wp = pyr.shape
    h, w = shape[:2]
    top, left = (hp - h) // 2, (wp - w) // 2
    planes = []
    for k in range(c):
        if levels == 0:
            rec = pyr[k]
        else:
            _, slices = pywt.coeffs_to_array(
                pywt.wavedec2(np.zeros((hp, wp)), wavelet, mode="periodization", level=levels))
            coeffs = pywt.array_to_coeffs(pyr[k], slices, output_format="wavedec2")
            rec = pywt.waverec2(coeffs, wavelet, mode="periodization")
        planes.append(rec[top:top + h, left:left + w])
    x = np.stack(planes, axis=-1)
    if c == 3 and color == "ycbcr":
        m = np.linalg.inv(np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5],
                                    [0.5, -0.418688, -0.081312]]))
        y, cb, cr = x[..., 0], x[..., 1], x[..., 2]
        x = np.stack([m[k, 0] * y + m[k, 1] * cb + m[k, 2] * cr for k in range(3)], -1)
    x = np.clip(x, 0.0, 1.0)
    return x[..., 0] if c == 1 else x


def subband_list(hp, wp, levels):
    hl, wl = hp >> levels, wp >> levels
    out = [(0, 0, hl, wl, 0, 0)]
    for k in range(levels):
        h, w = hl << k, wl << k
        out += [(0, w, h, w, k + 1, 1), (h, 0, h, w, k + 1, 2), (h, w, h, w, k + 1, 3)]
    return out


def blocks_of(r0, c0, h, w):
    """Top-level blocks of a subband: lists of 2x2 groups, each a list of (row, col)."""
    b = 4 if min(h, w) >= 4 else (2 if min(h, w) >= 2 else 1)
    for br in range(0, h, b):
        for bc in range(0, w, b):
            if b == 1:
                yield ("coef", (r0 + br, c0 + bc))
            elif b == 2:
                yield ("quad", [(r0 + r, c0 + c) for r in range(br, min(br + 2, h))
                                for c in range(bc, min(bc + 2, w))])
            else:
                quads = []
                for qr in range(br, min(br + 4, h), 2):
                    for qc in range(bc, min(bc + 4, w), 2):
                        quads.append([(r0 + r, c0 + c) for r in range(qr, min(qr + 2, h))
                                      for c in range(qc, min(qc + 2, w))])
                yield ("block", quads)


def encode_pyramid(pyr, levels, final_exponent, e=None, max_tokens=None):
    """Tokens, slots ``(plane, row, col, level, orient, channel, kind)`` and the exponent."""
    c, hp, wp = pyr.shape
    if e is None:
        mx = np.abs(pyr).max()
        e = final_exponent - 1 if mx == 0 else math.floor(math.log2(mx))
    toks, slots = [], []
    approx = np.zeros_like(pyr)
    sig = np.zeros(pyr.shape, bool)
    bands = subband_list(hp, wp, levels)

    def emit(t, p, rc, band, ch, kind):
        toks.append(t)
        slots.append((p, rc[0], rc[1], band[4], band[5], ch, kind))

    for p in range(e - final_exponent + 1):
        T = 2.0 ** (e - p)

        def coef(rc, ch, band, kind):
            a = pyr[ch][rc]
            if sig[ch][rc]:
                emit(NA1 if abs(a) >= abs(approx[ch][rc]) else NA0, p, rc, band, ch, K_REF)
                step = T / 4 if abs(a) >= abs(approx[ch][rc]) else -T / 4
                approx[ch][rc] = math.copysign(abs(approx[ch][rc]) + step, approx[ch][rc])
            elif abs(a) >= T:
                emit(NSP if a > 0 else NSN, p, rc, band, ch, kind)
                sig[ch][rc] = True
                approx[ch][rc] = 1.5 * T if a > 0 else -1.5 * T
                coef(rc, ch, band, K_REF)
            else:
                emit(INS, p, rc, band, ch, kind)

        def quad(cells, ch, band, kind):
            if not any(sig[ch][rc] for rc in cells):
                if all(abs(pyr[ch][rc]) < T for rc in cells):
                    emit(G2, p, cells[0], band, ch, kind)
                    return
            else:
                kind = K_COEF  # no group decision at a 2x2 that holds a significant coefficient
            for i, rc in enumerate(cells):
                coef(rc, ch, band, kind if i == 0 else K_COEF)

        for band in bands:
            for ch in range(c):
                for what, item in blocks_of(*band[:4]):
                    if what == "coef":
                        coef(item, ch, band, K_COEF)
                    elif what == "quad":
                        quad(item, ch, band, K_G2)
                    else:
                        cells = [rc for q in item for rc in q]
                        k = K_G4
                        if not any(sig[ch][rc] for rc in cells):
                            if all(abs(pyr[ch][rc]) < T for rc in cells):
                                emit(G4, p, cells[0], band, ch, K_G4)
                                continue
                        else:
                            k = K_G2
                        for i, q in enumerate(item):
                            quad(q, ch, band, k if i == 0 else K_G2)
    if max_tokens is not None:
        toks, slots = toks[:max_tokens], slots[:max_tokens]
    return np.array(toks, np.uint8), np.array(slots, np.int16).reshape(-1, 7), e


def encode_image(img_u8, wavelet, final_exponent, levels=None, color="ycbcr", max_tokens=None):
    pyr, lev, _ = to_pyramid(img_u8, wavelet, levels, color)
    return encode_pyramid(pyr, lev, final_exponent, max_tokens=max_tokens)


def decode_tokens(tokens, e, final_exponent, shape_cpyr, levels):
    """Replay a (prefix of a) stream into the approximation pyramid. Raises ValueError on a
    token that does not fit."""
    c, hp, wp = shape_cpyr
    approx = np.zeros(shape_cpyr)
    sig = np.zeros(shape_cpyr, bool)
    it = iter(list(int(t) for t in tokens))
    bands = subband_list(hp, wp, levels)

    class Stop(Exception):
        pass

    def nxt():
        try:
            return next(it)
        except StopIteration:
            raise Stop from None

    try:
        for p in range(e - final_exponent + 1):
            T = 2.0 ** (e - p)

            def refine(rc, ch):
                t = nxt()
                if t not in (NA0, NA1):
                    raise ValueError("expected a refinement")
                step = T / 4 if t == NA1 else -T / 4
                approx[ch][rc] = math.copysign(abs(approx[ch][rc]) + step, approx[ch][rc])

            def coef(rc, ch, t=None):
                if sig[ch][rc]:
                    return refine(rc, ch)
                t = nxt() if t is None else t
                if t in (NSP, NSN):
                    sig[ch][rc] = True
                    approx[ch][rc] = 1.5 * T if t == NSP else -1.5 * T
                    refine(rc, ch)
                elif t != INS:
                    raise ValueError("expected a coefficient token")

            def quad(cells, ch, t=None):
                if not any(sig[ch][rc] for rc in cells):
                    t = nxt() if t is None else t
                    if t == G2:
                        return
                for i, rc in enumerate(cells):
                    coef(rc, ch, t if i == 0 else None)

            for band in bands:
                for ch in range(c):
                    for what, item in blocks_of(*band[:4]):
                        if what == "coef":
                            coef(item, ch)
                        elif what == "quad":
                            quad(item, ch)
                        else:
                            cells = [rc for q in item for rc in q]
                            t = None
                            if not any(sig[ch][rc] for rc in cells):
                                t = nxt()
                                if t == G4:
                                    continue
                            for i, q in enumerate(item):
                                quad(q, ch, t if i == 0 else None)
    except Stop:
        pass
    return approx


def j2k_sig_class(orient, h, v, d):
    """JPEG 2000's significance context (0..8) from the numbers of significant horizontal,
    vertical and diagonal neighbours (ITU-T T.800 Table D.1); orientation 1 (top-right band)
    swaps h and v, 3 (diagonal band) ranks d first."""
    if orient == 1:
        h, v = v, h
    if orient == 3:
        hv = h + v
        if d >= 3:
            return 8
        if d == 2:
            return 7 if hv >= 1 else 6
        if d == 1:
            return 5 if hv >= 2 else (4 if hv == 1 else 3)
        return 2 if hv >= 2 else hv
    if h == 2:
        return 8
    if h == 1:
        return 7 if v >= 1 else (6 if d >= 1 else 5)
    if v == 2:
        return 4
    if v == 1:
        return 3
    return 2 if d >= 2 else d


def context_of(prefix, e, final_exponent, shape_cpyr, levels, slot):
    """The coding context before the next token (see wavecode.context), from the decoded prefix
    and the next slot (plane, row, col, level, orientation, channel, kind)."""
    plane, row, col, level, orient, ch, kind = (int(x) for x in slot)
    approx = decode_tokens(prefix, e, final_exponent, shape_cpyr, levels)[ch]
    sig = approx != 0
    _, hp, wp = shape_cpyr
    bands = subband_list(hp, wp, levels)
    r0, c0, h, w, _, _ = next(b for b in bands if b[4] == level and b[5] == orient)

    def s(r, c):
        return int(r0 <= r < r0 + h and c0 <= c < c0 + w and sig[r, c])

    hh = s(row, col - 1) + s(row, col + 1)
    vv = s(row - 1, col) + s(row + 1, col)
    dd = s(row - 1, col - 1) + s(row - 1, col + 1) + s(row + 1, col - 1) + s(row + 1, col + 1)
    t = 2.0 ** (e - plane)

    def since(a):
        return min(int(math.floor(math.log2(abs(a) / t))), 2)

    par = 0
    if level >= 1:
        if level == 1:
            pr, pc = row - r0, col - c0
        else:
            pb = next(b for b in bands if b[4] == level - 1 and b[5] == orient)
            pr, pc = pb[0] + (row - r0) // 2, pb[1] + (col - c0) // 2
        if sig[pr, pc]:
            par = 1 if since(approx[pr, pc]) == 0 else 2
    ref = since(approx[row, col]) if kind == K_REF else 0
    return (j2k_sig_class(orient, hh, vv, dd) * 3 + par) * 3 + ref
