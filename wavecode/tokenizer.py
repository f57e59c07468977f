"""Images <-> streams of the 7-token wavelet language (the public tokenizer API).

>>> tok = WaveletTokenizer.from_preset("mnist", image_shape=(28, 28))
>>> batch = tok.encode(images)            # uint8 (B, 28, 28)
>>> recon = tok.decode(batch)             # float64 (B, 28, 28) in [0, 1]
>>> coarse = tok.decode(batch, prefix=200)

The language is specified in the README ("The wavelet language") and pinned by ``tests/``.
"""
from __future__ import annotations

import json
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Optional

import numpy as np
import pywt

from . import _scan
from ._dwt import dwt_plan
from ._files import write_atomic
from .layout import ScanLayout, scan_layout

if TYPE_CHECKING:
    from .grammar import GrammarState

__all__ = ["TOKEN_NAMES", "SLOT_FIELDS", "SLOT_KINDS", "PRESETS", "TokenizerConfig",
           "TokenBatch", "WaveletTokenizer"]

TOKEN_NAMES = ("Group4x4", "Group2x2", "Insignificant", "NowSignificantPos",
               "NowSignificantNeg", "NextAccuracy0", "NextAccuracy1")
#: columns of a slot array
SLOT_FIELDS = ("plane", "row", "col", "level", "orientation", "channel", "kind")
#: values of the ``kind`` column (the decision the token answers)
SLOT_KINDS = ("group4", "group2", "coefficient", "refinement")
_NO_LIMIT = np.iinfo(np.int64).max // 4


@dataclass(frozen=True)
class TokenizerConfig:
    """Settings of the wavelet language.

    Parameters
    ----------
    wavelet : str
        Any orthogonal or biorthogonal PyWavelets wavelet (``"haar"``, ``"bior4.4"``, ...).
    final_exponent : int
        The last bit-plane has threshold ``2**final_exponent``.
    levels : int or None
        DWT levels; ``None`` picks the most that leave the LL band at least 2 on its short side.
    color : str
        ``"ycbcr"`` (default; JPEG's full-range transform, centred chroma) or ``"rgb"`` for
        3-channel images; ignored for grayscale.
    max_tokens : int or None
        Token budget: streams are cut after this many tokens (the best image at that budget).
    """

    wavelet: str = "haar"
    final_exponent: int = -3
    levels: Optional[int] = None
    color: str = "ycbcr"
    max_tokens: Optional[int] = None

    def __post_init__(self):
        if self.wavelet not in pywt.wavelist(kind="discrete"):
            raise ValueError(f"unknown wavelet {self.wavelet!r}")
        if self.color not in ("ycbcr", "rgb"):
            raise ValueError(f"color must be 'ycbcr' or 'rgb', not {self.color!r}")
        if self.levels is not None and not 0 <= self.levels <= 15:
            raise ValueError(f"levels must be in 0..15, not {self.levels}")
        if self.max_tokens is not None and self.max_tokens < 0:
            raise ValueError(f"max_tokens must be >= 0, not {self.max_tokens}")
        if not -40 <= self.final_exponent <= 20:
            raise ValueError(f"final_exponent must be in -40..20, not {self.final_exponent}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TokenizerConfig":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


#: the settings of the paper's experiments
PRESETS = {
    "mnist": TokenizerConfig(wavelet="haar", final_exponent=-3),
    "fashion-mnist": TokenizerConfig(wavelet="bior4.4", final_exponent=-4),
}


def auto_levels(height: int, width: int) -> int:
    """Most DWT levels that leave the LL band at least 2 samples on its short side (0 for 1-pixel
    sides)."""
    short = min(height, width)
    levels = 0
    while -(-short // (2 ** (levels + 1))) >= 2:
        levels += 1
    return levels


@dataclass
class TokenBatch:
    """Token streams of a batch of images, stored flat.

    Attributes
    ----------
    tokens : (N,) uint8
        All streams end to end.
    offsets : (B + 1,) int64
        Stream ``b`` is ``tokens[offsets[b]:offsets[b + 1]]``.
    exponents : (B,) int32
        ``e`` with ``T0 = 2**e`` per image (side information).
    entries : (N,) int32 or None
        Compact slots: the scan entry (coefficient) of each token's decision ...
    plane_kinds : (N,) uint8 or None
        ... and ``plane * 4 + kind``. :attr:`slots` expands both into :data:`SLOT_FIELDS`.
    meta : dict
        Tokenizer settings and image shape (what decoding needs).
    """

    tokens: np.ndarray
    offsets: np.ndarray
    exponents: np.ndarray
    entries: Optional[np.ndarray] = None
    plane_kinds: Optional[np.ndarray] = None
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def slots(self) -> np.ndarray:
        """(N, 7) int16 slot of every token, columns :data:`SLOT_FIELDS`."""
        if self.entries is None:
            raise ValueError("this batch was encoded without slots")
        return WaveletTokenizer.from_meta(self.meta).expand_slots(self.entries, self.plane_kinds)

    def stream(self, b: int) -> np.ndarray:
        return self.tokens[self.offsets[b]:self.offsets[b + 1]]

    def stream_slots(self, b: int) -> np.ndarray:
        if self.entries is None:
            raise ValueError("this batch was encoded without slots")
        sl = slice(self.offsets[b], self.offsets[b + 1])
        return WaveletTokenizer.from_meta(self.meta).expand_slots(self.entries[sl],
                                                                  self.plane_kinds[sl])

    def subset(self, index) -> "TokenBatch":
        """The streams ``index`` (ints, in that order, repeats allowed)."""
        idx = np.asarray(index, np.int64).reshape(-1)
        if idx.size and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise ValueError(f"stream index out of range for a batch of {len(self)}")
        idx = idx % max(len(self), 1)
        lens = self.lengths[idx]
        offs = np.zeros(len(idx) + 1, np.int64)
        np.cumsum(lens, out=offs[1:])
        keep = np.arange(offs[-1], dtype=np.int64) + np.repeat(self.offsets[idx] - offs[:-1], lens)
        pick = (lambda a: None if a is None else a[keep])
        return TokenBatch(self.tokens[keep], offs, self.exponents[idx], pick(self.entries),
                          pick(self.plane_kinds), dict(self.meta))

    def select(self, keep_per_stream: np.ndarray) -> "TokenBatch":
        """Keep the first ``keep_per_stream[b]`` tokens of each stream."""
        lens = np.minimum(self.lengths, keep_per_stream)
        offs = np.zeros(len(self) + 1, np.int64)
        np.cumsum(lens, out=offs[1:])
        # flat indices of the kept tokens, without a Python loop over streams
        keep = np.arange(offs[-1], dtype=np.int64) + np.repeat(self.offsets[:-1] - offs[:-1], lens)
        pick = (lambda a: None if a is None else a[keep])
        return TokenBatch(self.tokens[keep], offs, self.exponents.copy(), pick(self.entries),
                          pick(self.plane_kinds), dict(self.meta))

    def truncate(self, n: int) -> "TokenBatch":
        """Keep the first ``n`` tokens of every stream (a coarser image of each)."""
        if n < 0:
            raise ValueError(f"prefix length must be >= 0, not {n}")
        n = min(int(n), len(self.tokens))         # longer than any stream: the whole streams
        return self.select(np.full(len(self), n, np.int64))

    def save(self, path) -> None:
        """Write an ``.npz`` (atomically: temp file + rename)."""
        arrays = dict(tokens=self.tokens, offsets=self.offsets, exponents=self.exponents,
                      meta=np.array(json.dumps(self.meta)))
        if self.entries is not None:
            arrays.update(entries=self.entries, plane_kinds=self.plane_kinds)

        def write(tmp):
            with open(tmp, "wb") as f:   # a file object: numpy appends no ".npz"
                np.savez_compressed(f, **arrays)

        write_atomic(path, write)

    @classmethod
    def load(cls, path) -> "TokenBatch":
        """Read a file written by :meth:`save`; ``ValueError`` if it is not one."""
        try:
            with open(os.fspath(path), "rb") as f:
                if f.read(4) != b"PK\x03\x04":  # np.load would blame pickled data
                    raise ValueError("not an .npz archive")
            with np.load(os.fspath(path), allow_pickle=False) as z:
                missing = {"tokens", "offsets", "exponents"} - set(z.files)
                if missing:
                    raise ValueError(f"not a token file (missing {sorted(missing)})")
                has = "entries" in z.files and "plane_kinds" in z.files
                tb = cls(z["tokens"], z["offsets"], z["exponents"],
                         z["entries"] if has else None, z["plane_kinds"] if has else None,
                         json.loads(str(z["meta"])) if "meta" in z.files else {})
        except FileNotFoundError:
            raise ValueError(f"{path}: no such file") from None
        except Exception as exc:  # zipfile, pickle and format errors alike: one clear line
            raise ValueError(f"{path}: cannot read token file ({exc})") from None
        try:
            tb.validate()
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
        return tb

    def validate(self) -> None:
        """Check shapes and dtypes; ``ValueError`` with the reason otherwise."""
        t, o, e = self.tokens, self.offsets, self.exponents
        if t.ndim != 1 or o.ndim != 1 or e.ndim != 1:
            raise ValueError("tokens, offsets and exponents must be 1-D")
        if len(o) < 1 or len(e) != len(o) - 1:
            raise ValueError(f"{len(o)} offsets do not fit {len(e)} exponents")
        if not (np.issubdtype(t.dtype, np.integer) and np.issubdtype(o.dtype, np.integer)
                and np.issubdtype(e.dtype, np.integer)):
            raise ValueError("tokens, offsets and exponents must be integer arrays")
        if o[0] != 0 or o[-1] != len(t) or np.any(np.diff(o) < 0):
            raise ValueError("offsets must start at 0, not decrease, and end at len(tokens)")
        if (self.entries is None) != (self.plane_kinds is None):
            raise ValueError("entries and plane_kinds come together")
        if self.entries is not None and (self.entries.shape != t.shape
                                         or self.plane_kinds.shape != t.shape):
            raise ValueError("entries and plane_kinds must have one value per token")


try:  # numpy advises huge pages on large arrays; this switches the advice (numpy >= 1.20)
    from numpy._core.multiarray import _set_madvise_hugepage
except ImportError:  # numpy 1.x
    try:
        from numpy.core.multiarray import _set_madvise_hugepage
    except ImportError:
        _set_madvise_hugepage = None


_small_pages_lock = threading.Lock()
_small_pages_users = 0
_small_pages_was = True


@contextmanager
def _small_pages():
    """Allocate without numpy's huge-page advice (4 KiB pages). Where the kernel compacts memory
    to serve an advised fault (THP ``defrag=madvise``), fresh 2 MiB pages cost anywhere from
    0.3x to 6x the time of 4 KiB pages on this project's machine (80 MB: 4-5 ms or ~94 ms against
    16 ms); the batch encoder's and decoder's outputs take the steady cost. Only numpy's flag is
    switched, for the moment of the allocation (a concurrent allocation elsewhere may miss its
    advice then: a matter of speed, never of results)."""
    global _small_pages_users, _small_pages_was
    if _set_madvise_hugepage is None:
        yield
        return
    with _small_pages_lock:     # concurrent calls: the first switches, the last restores
        if _small_pages_users == 0:
            _small_pages_was = _set_madvise_hugepage(False)
        _small_pages_users += 1
    try:
        yield
    finally:
        with _small_pages_lock:
            _small_pages_users -= 1
            if _small_pages_users == 0:
                _set_madvise_hugepage(_small_pages_was)


def _kernel_tokens(tokens) -> np.ndarray:
    """Tokens as the kernels read them: uint8, as the encoder writes them (no copy). Another
    integer type is narrowed, every value outside 0..6 becoming 255, which the kernels reject as
    illegal like the value itself (decoding used to widen all tokens to int64: ~110 MB of fresh
    pages for the MNIST test set, more time than the decoding on this machine's 4 KiB pages)."""
    t = np.ascontiguousarray(tokens)
    if t.dtype == np.uint8:
        return t
    return np.where((t >= 0) & (t <= 6), t, 255).astype(np.uint8)


def _gather(parts, buf, cap):
    """The chunks' outputs end to end. Chunk ``j`` wrote into ``buf[j * cap:]``; when every
    chunk stayed in its region, the streams move down in place instead of being copied into a
    fresh array: the moves land mostly on pages the chunks already touched. (Copying the later
    chunks' own buffers after the first chunk's output instead, into fresh pages, was 5-20 %
    slower. The price: the pages past the output that the chunks touched stay with it, up to
    the first chunk's unused room, ~25 % of the output for MNIST.)"""
    if len(parts) == 1:
        return parts[0]
    start = buf.ctypes.data
    in_place = all(p.size == 0 or (p.ctypes.data == start + j * cap * buf.itemsize
                                   and p.size <= cap) for j, p in enumerate(parts))
    if not in_place:                 # a chunk outgrew its region: the kernel reallocated it
        return np.concatenate(parts)
    pos = 0
    for j, p in enumerate(parts):
        src, gap = j * cap, j * cap - pos
        # blocks no longer than the gap do not overlap: plain copies (memcpy)
        step = max(gap, 1 << 16)
        for o in range(0, p.size if j and gap else 0, step):
            m = min(step, p.size - o)
            if gap >= m:
                buf[pos + o:pos + o + m] = buf[src + o:src + o + m]
            else:
                _scan._move_down(buf, pos + o, src + o, m)
        pos += p.size
    return buf[:pos]


class WaveletTokenizer:
    """The wavelet language for images of one shape.

    Parameters
    ----------
    config : TokenizerConfig or str
        Settings, or a preset name from :data:`PRESETS`.
    image_shape : tuple
        ``(H, W)`` for grayscale or ``(H, W, 3)`` for colour.
    threads : int or None
        Worker threads of the batch kernels (default: all cores).
    """

    def __init__(self, config, image_shape, threads: Optional[int] = None):
        if isinstance(config, str):
            if config not in PRESETS:
                raise ValueError(f"unknown preset {config!r}; choose from {sorted(PRESETS)}")
            config = PRESETS[config]
        self.config: TokenizerConfig = config
        shape = tuple(int(s) for s in image_shape)
        if len(shape) == 2:
            shape = shape + (1,)
        if len(shape) != 3 or shape[2] not in (1, 3) or min(shape[:2]) < 1:
            raise ValueError(f"image_shape must be (H, W) or (H, W, 3), not {tuple(image_shape)}")
        self.image_shape = shape
        h, w, c = shape
        levels = auto_levels(h, w) if config.levels is None else config.levels
        step = 1 << levels
        self.levels = levels
        self.padded_shape = (-(-h // step) * step, -(-w // step) * step)
        hp, wp = self.padded_shape
        self.pad = ((hp - h) // 2, (wp - w) // 2)  # top, left (centred)
        self.layout: ScanLayout = scan_layout(c, hp, wp, levels)
        self._plan = dwt_plan(config.wavelet, hp, wp, levels)
        lay = self.layout
        self._lay = (lay.blk, lay.blk_end, lay.quad, lay.quad_end, lay.starts, lay.row, lay.col,
                     lay.ch, lay.sb, lay.sb_level, lay.sb_orient, lay.flat, lay.n_blocks,
                     lay.n_quads)
        self._ycbcr = c == 3 and config.color == "ycbcr"
        self.threads = threads or os.cpu_count() or 1

    @classmethod
    def from_preset(cls, name: str, image_shape, **overrides) -> "WaveletTokenizer":
        """A preset (``"mnist"``, ``"fashion-mnist"``) with some settings overridden."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}")
        return cls(TokenizerConfig(**{**PRESETS[name].to_dict(), **overrides}), image_shape)

    def __repr__(self) -> str:
        return (f"WaveletTokenizer({self.config}, image_shape={self.image_shape}, "
                f"levels={self.levels}, padded={self.padded_shape})")

    # -- helpers -------------------------------------------------------------------------------
    @property
    def meta(self) -> dict:
        """What a token file needs to be decoded again."""
        return {"config": self.config.to_dict(), "image_shape": list(self.image_shape)}

    @classmethod
    def from_meta(cls, meta: dict) -> "WaveletTokenizer":
        try:
            return cls(TokenizerConfig.from_dict(meta["config"]), tuple(meta["image_shape"]))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"token file has no tokenizer settings ({exc})") from None

    def max_planes(self, exponent: int) -> int:
        return max(int(exponent) - self.config.final_exponent + 1, 0)

    def _images(self, images) -> np.ndarray:
        a = np.asarray(images)
        h, w, c = self.image_shape
        if a.dtype != np.uint8:
            raise ValueError(f"images must be uint8, not {a.dtype}")
        if c == 1 and a.ndim == 3:
            a = a[..., None]
        if a.ndim != 4 or a.shape[1:] != (h, w, c):
            want = f"(B, {h}, {w})" if c == 1 else f"(B, {h}, {w}, {c})"
            raise ValueError(f"images must have shape {want}, not {np.asarray(images).shape}")
        return np.ascontiguousarray(a)

    def _chunks(self, n: int):
        k = max(1, min(self.threads, n // 64 or 1))
        edges = np.linspace(0, n, k + 1).astype(np.int64)
        return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]

    # -- encode / decode -----------------------------------------------------------------------
    def encode(self, images, *, max_tokens: Optional[int] = None, slots: bool = True) -> TokenBatch:
        """Encode a batch of uint8 images.

        Parameters
        ----------
        images : uint8 array, (B, H, W) or (B, H, W, 3)
        max_tokens : int, optional
            Overrides the configured budget.
        slots : bool
            Also return the slot of every token.
        """
        a = self._images(images)
        budget = max_tokens if max_tokens is not None else self.config.max_tokens
        if budget is not None and budget < 0:
            raise ValueError(f"max_tokens must be >= 0, not {budget}")
        budget = _NO_LIMIT if budget is None else min(int(budget), _NO_LIMIT)
        hp, wp = self.padded_shape
        top, left = self.pad
        chunks = self._chunks(len(a))
        cap = max(1024, int(len(a) * self.layout.size * 2 // max(len(chunks), 1)))
        cap = min(cap, 1 << 24)
        # one buffer per output, a region of ``cap`` per chunk, in 4 KiB pages (_small_pages);
        # the chunks' streams are then moved together in place (_gather)
        n_buf = cap * len(chunks)
        with _small_pages():
            bufs = (np.empty(n_buf, np.uint8),
                    np.empty(n_buf if slots else len(chunks), np.int32),
                    np.empty(n_buf if slots else len(chunks), np.uint8))

        def run(j):
            lo, hi = chunks[j]
            regions = [buf[j * cap:(j + 1) * cap] if len(buf) == n_buf else buf[j:j + 1]
                       for buf in bufs]
            return _scan._encode_images(a, lo, hi, hp, wp, top, left, self._ycbcr, self.levels,
                                        self.config.final_exponent, budget, slots, self._plan,
                                        self._lay, *regions)

        if len(chunks) == 1:
            parts = [run(0)]
        else:
            with ThreadPoolExecutor(len(chunks)) as ex:
                parts = list(ex.map(run, range(len(chunks))))
        if not parts:
            return TokenBatch(np.zeros(0, np.uint8), np.zeros(1, np.int64),
                              np.zeros(0, np.int32), np.zeros(0, np.int32) if slots else None,
                              np.zeros(0, np.uint8) if slots else None, self.meta)
        offsets = np.zeros(len(a) + 1, np.int64)
        np.cumsum(np.concatenate([p[3] for p in parts]), out=offsets[1:])
        out = [_gather([p[k] for p in parts], bufs[k], cap) for k in range(3)]
        return TokenBatch(out[0], offsets, np.concatenate([p[4] for p in parts]),
                          out[1] if slots else None, out[2] if slots else None, self.meta)

    def encode_pyramids(self, pyramids, exponents=None, *, max_tokens=None, slots=True):
        """Encode coefficient pyramids directly (float64 (B, C, Hp, Wp)); mainly for tests and
        for checking that a stream is realisable."""
        p = np.ascontiguousarray(pyramids, dtype=np.float64)
        c = self.image_shape[2]
        want = (c,) + self.padded_shape
        if p.ndim != 4 or p.shape[1:] != want:
            raise ValueError(f"pyramids must have shape (B, {want[0]}, {want[1]}, {want[2]})")
        b = len(p)
        budget = _NO_LIMIT if max_tokens is None else min(int(max_tokens), _NO_LIMIT)
        e_in = np.full(b, -(2 ** 31), np.int64) if exponents is None else \
            np.asarray(exponents, np.int64)
        # upper bound per image, then compact
        emax = max(int(np.max(e_in)) if exponents is not None and b else 0, 0)
        if exponents is None and b:
            mx = float(np.abs(p).max())
            emax = math.frexp(mx)[1] if mx > 0 else 0
        if emax - self.config.final_exponent + 1 > 64:
            raise ValueError("coefficients span more than 64 bit-planes above the final threshold")
        per = min(budget, 2 * self.layout.size * max(emax - self.config.final_exponent + 2, 1))
        offs = np.arange(b + 1, dtype=np.int64) * per
        toks = np.empty(max(b * per, 1), np.uint8)
        ents = np.empty(max(b * per, 1), np.int32)
        pks = np.empty(max(b * per, 1), np.uint8)
        counts = np.empty(b, np.int64)
        exps = np.empty(b, np.int32)
        _scan._encode_pyramids(p.reshape(b, -1), self.config.final_exponent, budget, self._lay,
                               e_in, toks, ents, pks, offs, counts, exps, slots)
        full = TokenBatch(toks[:b * per], offs, exps, ents[:b * per] if slots else None,
                          pks[:b * per] if slots else None, self.meta)
        return full.select(counts)

    def _check_streams(self, batch: TokenBatch, prefix) -> TokenBatch:
        if not isinstance(batch, TokenBatch):
            raise ValueError("expected a TokenBatch")
        batch.validate()
        if prefix is not None:
            batch = batch.truncate(int(prefix))
        return batch

    def _raise_illegal(self, batch: TokenBatch, errors: np.ndarray):
        b = int(np.flatnonzero(errors >= 0)[0])
        k = int(errors[b])
        t = int(batch.stream(b)[k])
        # replay to say what was expected there
        st = self.start(1, batch.exponents[b:b + 1])
        for tk in batch.stream(b)[:k]:
            st.step(np.array([tk]))
        if st.done[0]:
            what = "the stream is already complete after the final bit-plane"
        else:
            legal = [TOKEN_NAMES[i] for i in np.flatnonzero(st.legal_mask()[0])]
            what = "expected one of " + ", ".join(legal)
        name = TOKEN_NAMES[t] if 0 <= t < 7 else f"id {t}"
        raise ValueError(f"illegal token {name} at position {k} of stream {b}: {what}")

    def decode(self, batch: TokenBatch, *, prefix: Optional[int] = None) -> np.ndarray:
        """Decode streams (or their first ``prefix`` tokens) to float64 images in [0, 1].

        Returns (B, H, W) for grayscale, (B, H, W, 3) for colour. Raises ``ValueError`` naming the
        first illegal token.
        """
        batch = self._check_streams(batch, prefix)
        h, w, c = self.image_shape
        hp, wp = self.padded_shape
        top, left = self.pad
        b = len(batch)
        with _small_pages():
            out = np.empty((b, h, w, c), np.float64)
        errors = np.full(b, -1, np.int64)
        toks = _kernel_tokens(batch.tokens)
        exps = np.asarray(batch.exponents, np.int64)
        offs = np.asarray(batch.offsets, np.int64)
        self._check_exponents(exps)
        dummy = np.zeros((1, 1), np.float64)

        def run(lo_hi):
            _scan._decode_images(toks, offs, exps, lo_hi[0], lo_hi[1], out, hp, wp, top, left,
                                 self._ycbcr, self.levels, self.config.final_exponent,
                                 self._plan, self._lay, errors, True, dummy)

        chunks = self._chunks(b)
        if len(chunks) <= 1:
            for ch in chunks:
                run(ch)
        else:
            with ThreadPoolExecutor(len(chunks)) as ex:
                list(ex.map(run, chunks))
        if np.any(errors >= 0):
            self._raise_illegal(batch, errors)
        return out[..., 0] if c == 1 else out

    def decode_pyramids(self, batch: TokenBatch, *, prefix: Optional[int] = None) -> np.ndarray:
        """The approximations ``alpha~`` as float64 (B, C, Hp, Wp) pyramids."""
        batch = self._check_streams(batch, prefix)
        c = self.image_shape[2]
        hp, wp = self.padded_shape
        b = len(batch)
        coef = np.zeros((b, c * hp * wp), np.float64)
        errors = np.full(b, -1, np.int64)
        exps = np.asarray(batch.exponents, np.int64)
        self._check_exponents(exps)
        _scan._decode_images(_kernel_tokens(batch.tokens), np.asarray(batch.offsets, np.int64),
                             exps, 0, b, np.zeros((0, 1, 1, c)), hp, wp, 0, 0, False, self.levels,
                             self.config.final_exponent, self._plan, self._lay, errors, False, coef)
        if np.any(errors >= 0):
            self._raise_illegal(batch, errors)
        return coef.reshape(b, c, hp, wp)

    def _replay(self, batch: TokenBatch, contexts: bool = False):
        """One pass over the streams: legal bits, compact slots and (optionally) contexts of
        every token (:func:`wavecode.context._annotate`)."""
        from .context import _annotate
        batch = self._check_streams(batch, None)
        toks = _kernel_tokens(batch.tokens)
        exps = np.asarray(batch.exponents, np.int64)
        self._check_exponents(exps)
        m = len(toks)
        bits, pks = np.zeros(m, np.uint8), np.zeros(m, np.uint8)
        ents = np.zeros(m, np.int32)
        ctx = np.zeros(m if contexts else 1, np.uint8)
        if contexts:
            nbr, parent, ori = self.context_tables
        else:
            nbr = np.zeros((1, 8), np.int64)
            parent = ori = np.zeros(1, np.int64)
        errors = np.full(len(batch), -1, np.int64)
        _annotate(toks, np.asarray(batch.offsets, np.int64), exps, self.config.final_exponent,
                  self._lay, bits, ents, pks, contexts, nbr, parent, ori, ctx, errors)
        if np.any(errors >= 0):
            self._raise_illegal(batch, errors)
        return batch, bits, ents, pks, ctx

    @property
    def context_tables(self):
        """Neighbour / parent / orientation tables of :mod:`wavecode.context` (built once)."""
        if getattr(self, "_ctx", None) is None:
            from .context import context_tables_of
            self._ctx = context_tables_of(self)
        return self._ctx

    def contexts(self, batch: TokenBatch) -> np.ndarray:
        """The coding context (:mod:`wavecode.context`) before every token, uint8 aligned with
        ``batch.tokens``; what :meth:`GrammarState.next_contexts` says at each step."""
        return self._replay(batch, contexts=True)[4]

    def legal_bits(self, batch: TokenBatch) -> np.ndarray:
        """The grammar's legal set before every token of every stream, as a uint8 bit set per
        token (bit ``t`` set: token ``t`` was legal there), aligned with ``batch.tokens``.

        What :meth:`GrammarState.legal_mask` would say at each step, in one pass. Raises
        ``ValueError`` naming the first illegal token.
        """
        return self._replay(batch)[1]

    def with_slots(self, batch: TokenBatch) -> TokenBatch:
        """The batch with its (compact) slots, recomputed by replaying the streams; for streams
        that come without them (sampled, or saved without slots)."""
        batch, _, ents, pks, _ = self._replay(batch)
        return TokenBatch(batch.tokens, batch.offsets, batch.exponents, ents, pks, batch.meta)

    def _check_exponents(self, exps):
        if exps.size and (exps.min() < -1000 or exps.max() > 1000):
            raise ValueError(f"exponents out of range: {exps.min()} .. {exps.max()}")

    def start(self, batch_size: int, exponents) -> "GrammarState":
        """A batch grammar state at the start of ``batch_size`` streams (see :class:`GrammarState`)."""
        from .grammar import GrammarState
        return GrammarState(self, batch_size, exponents)

    def expand_slots(self, entries, plane_kinds) -> np.ndarray:
        """Compact slots -> (N, 7) int16 slot features (columns :data:`SLOT_FIELDS`)."""
        ent = np.ascontiguousarray(entries, np.int32)
        pk = np.ascontiguousarray(plane_kinds, np.uint8)
        if ent.shape != pk.shape or ent.ndim != 1:
            raise ValueError("entries and plane_kinds must be 1-D arrays of one length")
        if ent.size and (ent.min() < 0 or ent.max() >= self.layout.size):
            raise ValueError(f"slot entries out of range 0..{self.layout.size - 1}")
        out = np.empty((len(ent), 7), np.int16)
        lay = self.layout
        _scan._expand_slots(ent, pk, out, lay.row, lay.col, lay.ch, lay.sb, lay.sb_level,
                            lay.sb_orient)
        return out
