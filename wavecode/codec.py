"""The ``.wvc`` image codec: the wavelet-language scan, entropy coded (an embedded coder).

>>> data = compress(image, bpp=0.5)        # uint8 (H, W) or (H, W, 3) -> bytes
>>> image2 = decompress(data)              # -> uint8, same shape
>>> decompress(data[:1000])                # any prefix (past the header) decodes, coarser

Lossy files use the CDF 9/7 lifting transform (symmetric extension, any size) with JPEG's
irreversible colour transform; ``lossless=True`` uses the reversible 5/3 integer transform and the
reversible colour transform, and decodes bit-exactly. Rate control is truncation: the stream is
embedded, so ``bpp`` simply cuts it.

File format (little-endian)::

    offset size  field
    0      3     magic b"WVC"
    3      1     version (14)
    4      4     height (uint32)
    8      4     width (uint32)
    12     1     channels (1 or 3)
    13     1     DWT levels
    14     1     transform: 0 = CDF 9/7 (lossy), 1 = LeGall 5/3 (lossless)
    15     1     bit depth (8)
    16     1     exponent e of the first bit-plane T0 = 2**e (int8)
    17     1     final exponent: the last bit-plane is 2**final (int8)
    18     1     colour transform: 0 none, 1 YCbCr (irreversible), 2 RCT (reversible)
    19     1     reserved (0)
    20     4     CRC-32 of bytes 0..19
    24     ...   range-coded payload (may be cut anywhere)
"""
from __future__ import annotations

import math
import numbers
import struct
import zlib
from functools import lru_cache

import numba
import numpy as np

from . import _codec
from ._codec_prior import PRIOR
from ._lifting import _fwd2d, codec_bands
from ._scan import YCBCR
from .layout import check_memory, layout_from_bands

__all__ = ["compress", "decompress", "info", "HEADER_SIZE"]

MAGIC = b"WVC"
# 14: run mode: one decision for a run of up to 16 quiet empty 4x4 blocks (a third fewer
# decisions on Kodak); 13: no adaptive probability map after the mixer (the scan ~1.35x
# faster, 0.07-0.09 % in BD-rate; with it, a decoder choice: reconstruction biases 0.1 /
# 0.04); 12: each probability
# mixed from its context's two estimates by an online logistic mixer and refined by an adaptive
# probability map (per decision kind), and as many DWT levels as leave the coarsest subband 4
# samples on its short side; 11: sign contexts also by the diagonal
# neighbours' signs; 10: sign contexts per resolution class and orientation; 9: chroma
# significance sees the co-located luma coefficient; 8: chroma group decisions the co-located
# luma block; 7: busy adjacent blocks counted (0, 1, 2+); 6: group decisions see the adjacent
# blocks and the parents' 2x2 block; 5: one wake-up decision per empty subband and plane; 4:
# trained initial probabilities; 3: refinements one plane late; 2: three passes per bit-plane;
# 1: the plain scan order. Files of other versions are refused (no decoder
# for them is kept: the format is young).
VERSION = 14
_HEADER = struct.Struct("<3sBIIBBBBbbBB")
HEADER_SIZE = _HEADER.size + 4
#: RD thinning: coefficients in [T, RDO_THIN * T) with no neighbour reaching T are left out of
#: the plane the cut falls in
RDO_THIN = 1.5
#: ... and the coder guesses that plane at its start when the rest of the budget is within this
#: many times the previous plane's bytes (coding it thinned at once; recoded if wrong)
RDO_GUESS = 2.0
LOSSY_FINAL_EXPONENT = -2       # in grey levels: far below what any rate in practice needs
MAX_SIDE = 1 << 16


def _levels_for(h: int, w: int) -> int:
    """As many levels as leave the coarsest subband at least 4 samples on its short side (7
    for a 512-pixel side; OpenJPEG's default is 5): the coarse subbands of a smaller LL cost
    fewer bits at low rates."""
    levels = 0
    while -(-min(h, w) // (1 << (levels + 1))) >= 4:
        levels += 1
    return levels


_COLOUR_NORMS = np.sqrt((np.linalg.inv(YCBCR) ** 2).sum(axis=0)) / np.sqrt(3.0)


@lru_cache(maxsize=4)  # tables of a 768x512 RGB image take ~60 MB
def _plan(channels: int, height: int, width: int, levels: int):
    bands = codec_bands(height, width, levels)
    lay = layout_from_bands(channels, height, width, bands)
    k = (lay.blk, lay.blk_end, lay.quad, lay.quad_end, lay.starts, lay.row, lay.col, lay.ch,
         lay.sb, lay.sb_level, lay.sb_orient, lay.flat, lay.n_blocks, lay.n_quads)
    cx = _codec.context_tables(lay, bands, levels, channels)
    # the scan positions as int32: the coder reads one per decision (and ~4 MB less)
    k = k[:11] + (lay.flat.astype(np.int32),) + k[12:]
    # 9/7 coefficients are scaled by their synthesis-basis norms, so that one threshold means one
    # squared error in every subband
    norms = _band_norms(height, width, levels)[lay.sb]
    if channels == 3:
        # ... and by the norm of each channel's column of the inverse colour transform, so that
        # the threshold also means one squared error in RGB
        norms = norms * _COLOUR_NORMS[lay.ch]
    return lay, k, cx, norms


def _norms_1d(n: int, levels: int) -> list[tuple[float, float]]:
    """Synthesis-basis norms of a low and a high coefficient at each depth (1 = finest)."""
    from ._lifting import _inv_line
    sizes = [n]
    for _ in range(levels):
        sizes.append((sizes[-1] + 1) // 2)
    tmp = np.empty(n + 2)
    out = []
    for d in range(1, levels + 1):
        pair = []
        for high in (False, True):
            m = sizes[d - 1]
            lo_n = sizes[d]
            if high and m - lo_n == 0:
                pair.append(1.0)
                continue
            x = np.zeros(n)
            x[(lo_n + (m - lo_n) // 2) if high else lo_n // 2] = 1.0
            for lev in range(d - 1, -1, -1):
                _inv_line(x, sizes[lev], 1, 0, False, tmp)
            pair.append(float(np.sqrt(np.sum(x * x))))
        out.append(tuple(pair))
    return out


@lru_cache(maxsize=16)
def _band_norms(height: int, width: int, levels: int) -> np.ndarray:
    """Norm of the 2-D synthesis basis function of each subband (separable: row x column)."""
    rows = _norms_1d(width, levels)    # along a row: horizontal direction
    cols = _norms_1d(height, levels)
    out = []
    for (_, _, _, _, lev, orient) in codec_bands(height, width, levels):
        if lev == 0:
            d = levels
            out.append(rows[d - 1][0] * cols[d - 1][0] if levels else 1.0)
            continue
        d = levels - lev + 1
        horiz_high = orient in (1, 3)
        vert_high = orient in (2, 3)
        out.append(rows[d - 1][int(horiz_high)] * cols[d - 1][int(vert_high)])
    return np.asarray(out)


def _check_image(image) -> np.ndarray:
    a = np.asarray(image)
    if a.dtype != np.uint8:
        raise ValueError(f"image must be uint8, not {a.dtype}")
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] != 3):
        raise ValueError(f"image must be (H, W) or (H, W, 3), not shape {a.shape}")
    if a.shape[0] < 1 or a.shape[1] < 1 or max(a.shape[:2]) >= MAX_SIDE:
        raise ValueError(f"image sides must be in 1..{MAX_SIDE - 1}, not {a.shape[:2]}")
    return a


def _to_planes(a: np.ndarray, lossless: bool) -> np.ndarray:
    """uint8 image -> level-shifted, colour-transformed float64 planes (C, H, W)."""
    img = a if a.ndim == 3 else a[..., None]
    out = np.empty((img.shape[2],) + img.shape[:2])
    _codec._planes(img, lossless, out)
    return out


def _coefficients(a: np.ndarray, lossless: bool):
    h, w = a.shape[:2]
    planes = _to_planes(a, lossless)
    c = planes.shape[0]
    levels = _levels_for(h, w)
    tmp = np.empty(h * w + max(h, w) + 2)
    for k in range(c):
        flat = np.ascontiguousarray(planes[k]).ravel()
        _fwd2d(flat, h, w, levels, lossless, tmp)
        planes[k] = flat.reshape(h, w)
    return planes, levels


def _run_encoder(a: np.ndarray, lossless: bool, budget: int, prior: np.ndarray,
                 rdo: bool = False):
    """(levels, exponent, final exponent, payload, final coder state) of an image.

    ``rdo`` (lossy, when the budget cuts the stream): the plane the cut falls in is coded again,
    from the coder's state at its start, with its lone coefficients set to zero -- their
    significance costs many bits (a rare event in a quiet neighbourhood) for little distortion,
    bits the rest of that plane uses better (``_codec._codec_encode``, ``thin``). The decoder
    needs nothing to know: it is a choice of what to code.
    """
    h, w = a.shape[:2]
    planes, levels = _coefficients(a, lossless)
    c = planes.shape[0]
    lay, k, cx, norms = _plan(c, h, w, levels)
    vals = planes.ravel()[lay.flat]
    if not lossless:
        vals = vals * norms
    mx = float(np.abs(vals).max()) if vals.size else 0.0
    final = 0 if lossless else LOSSY_FINAL_EXPONENT
    exponent = final - 1 if mx == 0 else int(np.frexp(mx)[1]) - 1
    thin = RDO_THIN if rdo and not lossless else 0.0
    payload, _, state, _, _ = _codec._codec_encode(vals, exponent, final, budget, k, cx, w,
                                                   c * h * w, prior, thin, c, 8, RDO_GUESS)
    return levels, exponent, final, payload, state


def coder_state(image, bpp: float, prior: np.ndarray | None = None) -> np.ndarray:
    """The coder's probability state (N_CTX, 2) after lossy-coding ``image`` to ``bpp``, starting
    from ``prior`` (default: flat): the statistics ``benchmarks/train_codec_prior.py`` learns
    the initial state from."""
    a = _check_image(image)
    budget = max(int(bpp * a.shape[0] * a.shape[1] / 8) - HEADER_SIZE, 0)
    return _run_encoder(a, False, budget, _codec.FLAT_PRIOR if prior is None else prior)[4]


def _encode(a: np.ndarray, lossless: bool, budget: int, rdo: bool = True) -> bytes:
    h, w = a.shape[:2]
    c = 1 if a.ndim == 2 else 3
    levels, exponent, final, payload, _ = _run_encoder(a, lossless, budget, PRIOR, rdo)
    head = _HEADER.pack(MAGIC, VERSION, h, w, c, levels, 1 if lossless else 0, 8, exponent, final,
                        (2 if lossless else 1) if c == 3 else 0, 0)
    return head + struct.pack("<I", zlib.crc32(head)) + payload.tobytes()


def compress(image, *, bpp: float | None = None, psnr: float | None = None,
             lossless: bool = False, max_bytes: int | None = None, rdo: bool = True) -> bytes:
    """Encode an 8-bit image into a ``.wvc`` byte string.

    Parameters
    ----------
    image : uint8 array, (H, W) or (H, W, 3)
    bpp : float, optional
        Target size in bits per pixel (the whole file, header included).
    psnr : float, optional
        Smallest file whose PSNR (dB, over all channels) reaches this.
    lossless : bool
        Reversible 5/3 transform; the full stream decodes bit-exactly.
    max_bytes : int, optional
        Cap on the file size.
    rdo : bool
        When the size cuts the stream: code the plane the cut falls in again, from the coder's
        state at its start, without its lone, barely significant coefficients (better PSNR at
        the same size, ~1.25x the encoding time; the decoder is the same). False: one pass.
    """
    a = _check_image(image)
    if sum(x is not None for x in (bpp, psnr)) > 1:
        raise ValueError("give at most one of bpp and psnr")
    if lossless and (bpp is not None or psnr is not None):
        raise ValueError("lossless takes no bpp or psnr target")
    h, w = a.shape[:2]
    limit = np.iinfo(np.int64).max // 2
    if bpp is not None:
        if not (isinstance(bpp, numbers.Real) and math.isfinite(bpp) and bpp > 0):
            raise ValueError(f"bpp must be a finite number > 0, not {bpp!r}")
        limit = int(min(bpp * h * w / 8, limit))   # 1e308 bpp: no limit, not an overflow
    if psnr is not None and not (isinstance(psnr, numbers.Real) and math.isfinite(psnr)
                                 and psnr > 0):
        raise ValueError(f"psnr must be a finite number > 0 (dB), not {psnr!r}")
    if max_bytes is not None:
        _check_count("max_bytes", max_bytes, HEADER_SIZE, " (the header size)")
        limit = min(limit, int(max_bytes))
    limit = max(limit, HEADER_SIZE)
    data = _encode(a, lossless, limit - HEADER_SIZE, rdo)[:limit]
    if psnr is None:
        return data
    return data[:_shortest_prefix_reaching(data, a, float(psnr))]


def _psnr(a, b) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def _shortest_prefix_reaching(data: bytes, a: np.ndarray, target: float) -> int:
    lo, hi = HEADER_SIZE, len(data)
    if _psnr(decompress(data), a) < target:
        return hi
    while lo < hi:  # PSNR grows with every byte: bisect the cut
        mid = (lo + hi) // 2
        if _psnr(decompress(data[:mid]), a) >= target:
            hi = mid
        else:
            lo = mid + 1
    return lo


def _check_count(name: str, v, lo: int, why: str = "") -> None:
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < lo:
        raise ValueError(f"{name} must be an integer >= {lo}{why}, not {v!r}")


def _as_bytes(data) -> bytes:
    """``data`` as bytes: bytes, bytearray, memoryview or a uint8 array (not text)."""
    if isinstance(data, bytes):
        return data
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    if isinstance(data, np.ndarray) and data.dtype == np.uint8:
        return data.tobytes()
    raise TypeError(f"a .wvc file is bytes, not {type(data).__name__}")


def info(data: bytes) -> dict:
    """The header of a ``.wvc`` byte string as a dict (``ValueError`` if it is not one)."""
    b = _as_bytes(data)
    if len(b) < 3 or b[:3] != MAGIC:
        raise ValueError("not a .wvc file (bad magic)")
    if len(b) < HEADER_SIZE:
        raise ValueError(f"truncated .wvc header ({len(b)} of {HEADER_SIZE} bytes)")
    fields = _HEADER.unpack(b[:_HEADER.size])
    (crc,) = struct.unpack("<I", b[_HEADER.size:HEADER_SIZE])
    if zlib.crc32(b[:_HEADER.size]) != crc:
        raise ValueError("corrupted .wvc header (CRC mismatch)")
    _, version, h, w, c, levels, transform, depth, exponent, final, colour, _ = fields
    if version != VERSION:
        raise ValueError(f"unsupported .wvc version {version} (this wavecode reads version "
                         f"{VERSION} only: re-encode the image)")
    if not (1 <= h < MAX_SIDE and 1 <= w < MAX_SIDE and c in (1, 3) and depth == 8
            and transform in (0, 1) and colour in (0, 1, 2) and levels <= _levels_for(h, w)
            and levels == _levels_for(h, w) and final <= exponent + 1 and exponent <= 40):
        raise ValueError("invalid .wvc header fields")
    return {"height": h, "width": w, "channels": c, "levels": levels,
            "transform": "5/3 reversible" if transform else "9/7 irreversible",
            "lossless": bool(transform), "bit_depth": depth, "exponent": exponent,
            "final_exponent": final, "colour": ("none", "YCbCr", "RCT")[colour],
            "payload_bytes": len(b) - HEADER_SIZE, "bpp": 8 * len(b) / (h * w)}


# the decoder's tables and buffers, per coefficient: ~77 bytes measured on Kodak (scan tables
# ~51, contexts' state and coefficients ~26); a lower bound, to refuse hopeless sizes up front
# (a header is the file's word: 34 bytes can ask for terabytes)
_BYTES_PER_COEFFICIENT = 64


def decompress(data, *, max_bytes: int | None = None, return_complete: bool = False):
    """Decode a ``.wvc`` byte string (or its first ``max_bytes``) into a uint8 image.

    A cut stream decodes to the coarser image its bytes determine. With ``return_complete``,
    also returns whether the whole stream was present.
    """
    b = _as_bytes(data)
    if max_bytes is not None:
        _check_count("max_bytes", max_bytes, 0)
        b = b[:max_bytes]
    hdr = info(b)
    h, w, c, levels = hdr["height"], hdr["width"], hdr["channels"], hdr["levels"]
    lossless = hdr["lossless"]
    check_memory(_BYTES_PER_COEFFICIENT * h * w * c, f"to decode a {h}x{w}x{c} image")
    try:
        lay, k, cx, norms = _plan(c, h, w, levels)
        payload = np.frombuffer(b, np.uint8, offset=HEADER_SIZE)
        approx = np.empty(lay.size, np.float64)
        _, complete = _codec._codec_decode(payload, hdr["exponent"], hdr["final_exponent"], k,
                                           cx, w, c * h * w, approx, PRIOR)
        out = np.empty((h, w, c), np.uint8)
        _codec._pixels(approx, lay.flat, norms, lossless, complete, c, h, w, levels,
                       numba.get_num_threads(), out)
    except MemoryError:     # the header's size is the file's word: a few bytes can ask for TBs
        raise ValueError(f"not enough memory to decode a {h}x{w}x{c} image") from None
    img = out[..., 0] if c == 1 else out
    return (img, bool(complete)) if return_complete else img
