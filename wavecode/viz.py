"""Pictures: image grids and progressive strips (the image rebuilt from growing prefixes)."""
from __future__ import annotations

import numpy as np

from .imageio import to_uint8

__all__ = ["grid", "prefix_lengths", "progressive_strip"]


def grid(images, ncols: int | None = None, scale: int = 1, pad: int = 2, pad_value: int = 128):
    """Tile images ``(N, H, W[, 3])`` (uint8, or float in [0, 1]) into one uint8 picture."""
    a = np.asarray(images)
    a = a if a.dtype == np.uint8 else to_uint8(a)
    if a.ndim == 3:
        a = a[..., None]
    if a.ndim != 4 or len(a) == 0:
        raise ValueError(f"grid needs a non-empty (N, H, W[, C]) stack, not shape {a.shape}")
    if scale > 1:
        a = a.repeat(scale, axis=1).repeat(scale, axis=2)
    n, h, w, c = a.shape
    ncols = ncols or int(np.ceil(np.sqrt(n)))
    nrows = -(-n // ncols)
    out = np.full((nrows * (h + pad) + pad, ncols * (w + pad) + pad, c), pad_value, np.uint8)
    for i in range(n):
        r, q = divmod(i, ncols)
        out[pad + r * (h + pad):pad + r * (h + pad) + h, pad + q * (w + pad):pad + q * (w + pad) + w] = a[i]
    return out[..., 0] if c == 1 else out


#: the most pictures a progressive display makes of one stream
MAX_STEPS = 256


def prefix_lengths(total: int, steps: int, mode: str = "geometric", plane_ends=None):
    """Prefix lengths for a progressive display of a ``total``-token stream.

    ``geometric`` spaces them evenly in log-length (coarse steps get their share), ``linear``
    evenly in length, ``planes`` at the ends of the bit-planes (``plane_ends``).
    """
    if not 1 <= steps <= MAX_STEPS:
        raise ValueError(f"steps must be in 1..{MAX_STEPS} (one picture each), not {steps}")
    if mode == "planes":
        if plane_ends is None:
            raise ValueError("mode 'planes' needs the plane ends")
        return [int(x) for x in plane_ends]
    if mode == "linear":
        ks = np.linspace(total / steps, total, steps)
    elif mode == "geometric":
        ks = np.geomspace(1, max(total, 1), steps)
    else:
        raise ValueError(f"mode must be geometric, linear or planes, not {mode!r}")
    return [int(round(k)) for k in ks]


def progressive_strip(tokenizer, batch, steps: int = 8, mode: str = "geometric", scale: int = 1,
                      original=None):
    """One row per stream of ``batch``: its image after growing prefixes, left to right (and the
    original at the right end when given). Returns a uint8 picture."""
    rows = []
    for b in range(len(batch)):
        total = int(batch.lengths[b])
        if mode == "planes":
            if batch.plane_kinds is None:
                raise ValueError("mode 'planes' needs a batch encoded with slots")
            planes = batch.plane_kinds[batch.offsets[b]:batch.offsets[b + 1]] >> 2
            ends = list(np.flatnonzero(np.diff(planes)) + 1) + [total]
            ks = prefix_lengths(total, steps, "planes", ends)
        else:
            ks = prefix_lengths(total, steps, mode)
        # the same stream once per prefix length, decoded in one call
        frames = list(tokenizer.decode(batch.subset([b] * len(ks)).select(np.asarray(ks))))
        if original is not None:
            o = np.asarray(original[b])
            frames.append(o / 255.0 if o.dtype == np.uint8 else o)
        rows.extend(frames)
    ncols = len(rows) // max(len(batch), 1)
    return grid(np.stack(rows), ncols=ncols, scale=scale)
