"""Pixels <-> coefficient pyramids of a tokenizer (padding, colour transform, periodized DWT).

Bit-identical to the spec's PyWavelets pipeline (``uint8 / 255``, centred zero padding,
``pywt.wavedec2(x, wavelet, mode="periodization", level=L)`` laid out by
``pywt.coeffs_to_array``), computed by the numba kernels of :mod:`wavecode._dwt`.
"""
from __future__ import annotations

import numpy as np

from . import _scan

__all__ = ["analyze", "synthesize"]


def analyze(tokenizer, images) -> np.ndarray:
    """uint8 images (B, H, W[, 3]) -> float64 pyramids (B, C, Hp, Wp)."""
    a = tokenizer._images(images)
    hp, wp = tokenizer.padded_shape
    c = tokenizer.image_shape[2]
    out = np.empty((len(a), c * hp * wp), np.float64)
    _scan._analyze_batch(a, out, hp, wp, tokenizer.pad[0], tokenizer.pad[1], tokenizer._ycbcr,
                         tokenizer.levels, tokenizer._plan)
    return out.reshape(len(a), c, hp, wp)


def synthesize(tokenizer, pyramids) -> np.ndarray:
    """float64 pyramids (B, C, Hp, Wp) -> images in [0, 1], (B, H, W) or (B, H, W, 3)."""
    h, w, c = tokenizer.image_shape
    hp, wp = tokenizer.padded_shape
    p = np.asarray(pyramids, np.float64)
    if p.ndim != 4 or p.shape[1:] != (c, hp, wp):
        raise ValueError(f"pyramids must have shape (B, {c}, {hp}, {wp}), not {p.shape}")
    p = np.ascontiguousarray(p).reshape(len(p), -1)
    out = np.empty((len(p), h, w, c), np.float64)
    _scan._synthesize_batch(p, out, hp, wp, tokenizer.pad[0], tokenizer.pad[1], tokenizer._ycbcr,
                            tokenizer.levels, tokenizer._plan)
    return out[..., 0] if c == 1 else out
