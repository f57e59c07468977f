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

import os
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numba import njit

__all__ = ["ScanLayout", "scan_layout", "layout_from_bands", "subbands"]


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



@njit(cache=True, nogil=True)
def _fill(bands, channels, width, ch, row, col, sbi, blk, bst, bend, quad, qst, qend):
    """Walk the scan (see module docstring) and fill the entry tables; returns the block and
    quad counts."""
    pos = 0
    nb = 0
    nq = 0
    for s in range(bands.shape[0]):
        r0, c0, h, w = bands[s, 0], bands[s, 1], bands[s, 2], bands[s, 3]
        m = min(h, w)
        b = 4 if m >= 4 else (2 if m >= 2 else 1)
        sub = 2 if b == 4 else b
        for c in range(channels):
            for br in range(0, h, b):
                for bc in range(0, w, b):
                    start_b = pos
                    for qr in range(br, min(br + b, h), sub):
                        for qc in range(bc, min(bc + b, w), sub):
                            start_q = pos
                            for rr in range(qr, min(qr + sub, h)):
                                for cc in range(qc, min(qc + sub, w)):
                                    ch[pos] = c
                                    row[pos] = r0 + rr
                                    col[pos] = c0 + cc
                                    sbi[pos] = s
                                    blk[pos] = nb if b == 4 else -1
                                    quad[pos] = nq if b >= 2 else -1
                                    qst[pos] = pos == start_q and b >= 2
                                    bst[pos] = pos == start_b and b == 4
                                    pos += 1
                            for k in range(start_q, pos):
                                qend[k] = pos
                            if b >= 2:
                                nq += 1
                    for k in range(start_b, pos):
                        bend[k] = pos
                    if b == 4:
                        nb += 1
    return nb, nq


def check_memory(need: int, what: str) -> None:
    """``ValueError`` when ``need`` bytes exceed this machine's physical memory: sizes come from
    files (a .wvc header, a token file's metadata), and a few bytes can ask for terabytes."""
    try:
        have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):     # not POSIX: allocations fail as they may
        return
    if need > have:
        raise ValueError(f"not enough memory {what} (needs over {need / 2 ** 30:.0f} GiB, this "
                         f"machine has {have / 2 ** 30:.0f})")


#: bytes per entry of the scan tables (eight int32, two uint8, flat int64, starts)
_TABLE_BYTES = 43


def layout_from_bands(channels: int, height: int, width: int, bands) -> ScanLayout:
    """Scan tables for any list of subband rectangles ``(row0, col0, h, w, level, orientation)``
    (in scan order) of a ``channels x height x width`` pyramid."""
    bands = np.asarray(bands, np.int64).reshape(-1, 6)
    n = int(channels * np.sum(bands[:, 2] * bands[:, 3]))
    check_memory(_TABLE_BYTES * n, f"for the scan tables of a {channels}x{height}x{width} pyramid")
    i32 = lambda: np.empty(n, np.int32)  # noqa: E731
    ch, row, col, sbi, blk, bend, quad, qend = (i32() for _ in range(8))
    bst = np.empty(n, np.uint8)
    qst = np.empty(n, np.uint8)
    nb, nq = _fill(bands, channels, width, ch, row, col, sbi, blk, bst, bend, quad, qst, qend)
    return ScanLayout(
        channels=channels, height=height, width=width, levels=int(bands[:, 4].max(initial=0)),
        ch=ch, row=row, col=col,
        flat=(ch.astype(np.int64) * height + row) * width + col,
        sb=sbi, blk=blk, blk_start=bst, blk_end=bend, quad=quad, quad_start=qst, quad_end=qend,
        starts=(qst | (bst << 1)).astype(np.uint8),
        sb_level=bands[:, 4].astype(np.int16), sb_orient=bands[:, 5].astype(np.int16),
        n_blocks=int(nb), n_quads=int(nq),
    )


@lru_cache(maxsize=32)
def scan_layout(channels: int, height: int, width: int, levels: int) -> ScanLayout:
    """Build (and cache) the scan tables of a dyadic pyramid.

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
    return layout_from_bands(channels, height, width, subbands(height, width, levels))
