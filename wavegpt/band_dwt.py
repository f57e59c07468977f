"""One-level 2-D DWT and its inverse as differentiable torch ops (for the band-code tokenizer).

With PyWavelets' ``periodization`` mode a one-level DWT of a length-``n`` signal (``n`` even) is
an ``n``×``n`` linear map. We take its matrix (and the inverse's) from PyWavelets itself by
transforming the unit vectors, so the bands match ``pywt.dwt2`` exactly for any wavelet
(orthogonal or biorthogonal), and the transform is two small matmuls per image that autograd
differentiates.

Bands are returned in the order LL, LH, HL, HH, named as in JPEG 2000: the first letter is the
horizontal filter, the second the vertical one (HL: high-pass along rows, vertical edges; it is
PyWavelets' ``cV``, and LH its ``cH``).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from torch import nn

__all__ = ["BANDS", "OneLevelDWT", "dwt_matrices"]

BANDS = ("LL", "LH", "HL", "HH")


@lru_cache(maxsize=32)
def dwt_matrices(wavelet: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Analysis ``A`` and synthesis ``S`` matrices (n, n) of a one-level periodized DWT:
    ``A @ x`` = [approximation, detail] and ``S @ (A @ x)`` = ``x``."""
    import pywt

    if n < 2 or n % 2:
        raise ValueError(f"a one-level DWT needs an even side, not {n}")
    try:
        w = pywt.Wavelet(wavelet)
    except ValueError:
        raise ValueError(f"unknown wavelet {wavelet!r}") from None
    eye = np.eye(n)
    a = np.stack([np.concatenate(pywt.dwt(e, w, mode="periodization")) for e in eye], axis=1)
    h = n // 2
    s = np.stack([pywt.idwt(e[:h], e[h:], w, mode="periodization") for e in eye], axis=1)
    return a, s


class OneLevelDWT(nn.Module):
    """``forward``: images (B, C, H, W) -> bands (B, 4, C, H/2, W/2); ``inverse`` the reverse."""

    def __init__(self, wavelet: str, height: int, width: int):
        super().__init__()
        ah, sh = dwt_matrices(wavelet, height)
        aw, sw = dwt_matrices(wavelet, width)
        # persistent: transformers' from_pretrained leaves unsaved buffers uninitialised
        for name, m in (("ah", ah), ("sh", sh), ("aw", aw), ("sw", sw)):
            self.register_buffer(name, torch.tensor(m, dtype=torch.float32))
        self.h, self.w = height // 2, width // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.ah @ x @ self.aw.T                                   # (B, C, H, W)
        h, w = self.h, self.w
        return torch.stack([y[..., :h, :w], y[..., h:, :w], y[..., :h, w:], y[..., h:, w:]],
                           dim=1)                                     # (B, 4, C, H/2, W/2)

    def inverse(self, bands: torch.Tensor) -> torch.Tensor:
        ll, lh, hl, hh = bands.unbind(1)                              # (B, C, H/2, W/2) each
        y = torch.cat([torch.cat([ll, hl], -1), torch.cat([lh, hh], -1)], -2)  # (B, C, H, W)
        return self.sh @ y @ self.sw.T
