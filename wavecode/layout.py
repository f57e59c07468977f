"""The scan order of the wavelet language, as flat tables the numba kernels walk.

One bit-plane visits every coefficient exactly once, in this order (the spec of issue 2):
subbands coarse to fine (LL, then per level from the coarsest the quadrants
``[0:h, w:2w]``, ``[h:2h, 0:w]``, ``[h:2h, w:2w]``); inside a subband, for each channel, aligned
blocks of side ``b = min(4, h, w)`` in raster order; a 4x4 block splits into its 2x2 blocks in
raster order, a 2x2 block into its coefficients in raster order. Blocks that overhang a subband
whose side is not a multiple of ``b`` are clipped to it.

The scan is flattened into *entries*: entry ``i`` is the i-th coefficient visited. For every entry
the tables give its position (channel, row, column in the pyramid, subband) and the block and 2x2
"quad" it belongs to (id, whether it is the first entry, and the entry just past the end). A
group token at entry ``i`` skips to ``blk_end[i]`` or ``quad_end[i]``.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

__all__ = ["ScanLayout", "scan_layout", "subbands"]


def subbands(height: int, width: int, levels: int) -> list[tuple[int, int, int, int, int, int]]:
    """Subbands in scan order as ``(row0, col0, h, w, level, orientation)``.

    ``level`` is 0 for LL and 1 .. ``levels`` for detail levels from the coarsest to the finest;
    ``orientation`` is 0 for LL and 1, 2, 3 for the quadrants top-right, bottom-left, bottom-right.
    """
    hl, wl = height >> levels, width >> levels
    out = [(0, 0, hl, wl, 0, 0)]
    for k in range(levels):
        h, w = hl << k, wl << k
        out += [(0, w, h, w, k + 1, 1), (h, 0, h, w, k + 1, 2), (h, w, h, w, k + 1, 3)]
    return out


@dataclass(frozen=True)
class ScanLayout:
    """Flat scan tables for a ``channels x height x width`` pyramid (see module docstring)."""

    channels: int
    height: int
    width: int
    levels: int
    ch: np.ndarray          # (N,) int32 channel of each entry
    row: np.ndarray         # (N,) int32 row in the pyramid
    col: np.ndarray         # (N,) int32 column in the pyramid
    flat: np.ndarray        # (N,) int64 index into the flattened (C, H, W) pyramid
    sb: np.ndarray          # (N,) int32 subband index
    blk: np.ndarray         # (N,) int32 4x4-block id, -1 outside 4x4 blocks
    blk_start: np.ndarray   # (N,) uint8 first entry of its 4x4 block
    blk_end: np.ndarray     # (N,) int32 entry just past its 4x4 block
    quad: np.ndarray        # (N,) int32 2x2-block id, -1 for 1x1 subbands
    quad_start: np.ndarray  # (N,) uint8
    quad_end: np.ndarray    # (N,) int32
    starts: np.ndarray      # (N,) uint8 bit 0: first entry of a 2x2, bit 1: of a 4x4 block
    sb_level: np.ndarray    # (S,) int16
    sb_orient: np.ndarray   # (S,) int16
    n_blocks: int
    n_quads: int

    @property
    def size(self) -> int:
        """Number of entries (coefficients) in one bit-plane."""
        return int(self.ch.shape[0])



@lru_cache(maxsize=32)
def scan_layout(channels: int, height: int, width: int, levels: int) -> ScanLayout:
    """Build (and cache) the scan tables of a pyramid.

    Parameters
    ----------
    channels, height, width : int
        Pyramid shape; ``height`` and ``width`` must be multiples of ``2**levels``.
    levels : int
        Number of DWT levels (0 means the image itself is the LL band).
    """
    if channels < 1 or height < 1 or width < 1 or levels < 0:
        raise ValueError(f"invalid pyramid shape {(channels, height, width)} with {levels} levels")
    if height % (1 << levels) or width % (1 << levels):
        raise ValueError(f"pyramid {height}x{width} is not a multiple of 2**{levels}")
    ch, row, col, sbi, blk, bst, bend, quad, qst, qend = ([] for _ in range(10))
    nb = nq = 0
    bands = subbands(height, width, levels)
    for s, (r0, c0, h, w, _, _) in enumerate(bands):
        b = 4 if min(h, w) >= 4 else (2 if min(h, w) >= 2 else 1)
        for c in range(channels):
            for br in range(0, h, b):
                for bc in range(0, w, b):
                    start_b = len(ch)
                    sub = 2 if b == 4 else b
                    has_blk = b == 4
                    for qr in range(br, min(br + b, h), sub):
                        for qc in range(bc, min(bc + b, w), sub):
                            start_q = len(ch)
                            for rr in range(qr, min(qr + sub, h)):
                                for cc in range(qc, min(qc + sub, w)):
                                    ch.append(c)
                                    row.append(r0 + rr)
                                    col.append(c0 + cc)
                                    sbi.append(s)
                                    blk.append(nb if has_blk else -1)
                                    quad.append(nq if b >= 2 else -1)
                                    qst.append(len(ch) - 1 == start_q)
                                    bst.append(has_blk and len(ch) - 1 == start_b)
                            qend.extend([len(ch)] * (len(ch) - start_q))
                            if b >= 2:
                                nq += 1
                    bend.extend([len(ch)] * (len(ch) - start_b))
                    if has_blk:
                        nb += 1
    i32 = lambda a: np.asarray(a, np.int32)  # noqa: E731
    row_a, col_a, ch_a = i32(row), i32(col), i32(ch)
    return ScanLayout(
        channels=channels, height=height, width=width, levels=levels,
        ch=ch_a, row=row_a, col=col_a,
        flat=(ch_a.astype(np.int64) * height + row_a) * width + col_a,
        sb=i32(sbi), blk=i32(blk), blk_start=np.asarray(bst, np.uint8), blk_end=i32(bend),
        quad=i32(quad), quad_start=np.asarray(qst, np.uint8), quad_end=i32(qend),
        starts=((np.asarray(qst, np.uint8) & (i32(quad) >= 0))
                | (np.asarray(bst, np.uint8) << 1)).astype(np.uint8),
        sb_level=np.asarray([b[4] for b in bands], np.int16),
        sb_orient=np.asarray([b[5] for b in bands], np.int16),
        n_blocks=nb, n_quads=nq,
    )
