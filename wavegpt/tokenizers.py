"""Fixed-length tokenizations the same GPT can learn beside the wavelet language.

- :class:`BandVQTokenizer` -- Wavelet-AR's band codes: a one-level DWT, one VQ-VAE per band
  (:mod:`wavegpt.modeling_bandvq`); tokens LL -> LH -> HL -> HH, each band in raster order.
- :class:`PixelTokenizer` -- iGPT's pixels: one token per pixel in raster order, its nearest
  colour in a palette (k-means on the training pixels; 256 grey levels = the raw 8-bit values).

Every token has a *slot* in the same 7-field layout as the wavelet language's, so the GPT's
slot embeddings become band / row / column embeddings: ``(0, row, col, 0, band, 0, 0)``.
A tokenizer saves to a folder (``tokenizer_config.json``, plus ``save_pretrained`` weights for
band codes) and :func:`load_tokenizer` reads either kind back.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from ._io import atomic_dir_write, read_json

__all__ = ["PixelTokenizer", "BandVQTokenizer", "load_tokenizer", "tokenizer_from_meta",
           "KINDS"]

KINDS = ("wavelet", "bandvq", "pixel")
CONFIG_NAME = "tokenizer_config.json"


def _grid_slots(bands: int, rows: int, cols: int) -> np.ndarray:
    """(bands*rows*cols, 7) slots of band-major raster order."""
    b, r, c = np.meshgrid(np.arange(bands), np.arange(rows), np.arange(cols), indexing="ij")
    slots = np.zeros((bands * rows * cols, 7), np.int64)
    slots[:, 1], slots[:, 2], slots[:, 4] = r.ravel(), c.ravel(), b.ravel()
    return slots


class _Grid:
    """What the GPT needs of a fixed-length tokenization."""

    kind: str
    n_tokens: int
    image_shape: tuple

    @property
    def tokens_per_image(self) -> int:
        return len(self.slots)

    def check_codes(self, codes) -> np.ndarray:
        codes = np.asarray(codes)
        if codes.ndim != 2 or codes.shape[1] != self.tokens_per_image:
            raise ValueError(f"{self.kind} tokens must have shape (N, {self.tokens_per_image}), "
                             f"not {codes.shape}")
        if codes.size and (codes.min() < 0 or codes.max() >= self.n_tokens):
            raise ValueError(f"{self.kind} tokens must be in 0..{self.n_tokens - 1}")
        return codes.astype(np.int64)


class PixelTokenizer(_Grid):
    """One token per pixel: the index of its nearest palette colour.

    Parameters
    ----------
    palette : array (K, C)
        Colours in 0..255.
    image_shape : (H, W, C)
    """

    kind = "pixel"

    def __init__(self, palette, image_shape):
        self.palette = np.asarray(palette, np.float64).reshape(len(palette), -1)
        shape = tuple(int(x) for x in image_shape)
        self.image_shape = shape + (1,) if len(shape) == 2 else shape
        if len(self.image_shape) != 3 or self.palette.shape[1] != self.image_shape[2]:
            raise ValueError(f"a palette of {self.palette.shape[1]}-channel colours does not fit "
                             f"images of shape {self.image_shape}")
        if not 2 <= len(self.palette) <= 65535:
            raise ValueError(f"palette size must be in 2..65535, not {len(self.palette)}")
        self.n_tokens = len(self.palette)
        h, w, _ = self.image_shape
        self.slots = _grid_slots(1, h, w)

    @classmethod
    def fit(cls, images, n_colors: int = 16, seed: int = 0, iters: int = 25,
            sample: int = 400_000) -> "PixelTokenizer":
        """k-means palette of ``n_colors`` on (a sample of) the pixels of uint8 images
        (N, H, W[, C]); 256 colours of grey images is the identity (raw 8-bit values)."""
        images = np.asarray(images)
        if images.ndim not in (3, 4) or images.dtype != np.uint8 or not len(images):
            raise ValueError(f"need uint8 images (N, H, W[, C]), not {images.dtype} "
                             f"{images.shape}")
        c = 1 if images.ndim == 3 else images.shape[3]
        if n_colors < 2:
            raise ValueError(f"need at least 2 colours, not {n_colors}")
        if c == 1 and n_colors >= 256:
            return cls(np.arange(256)[:, None], images.shape[1:3] + (1,))
        rng = np.random.default_rng(seed)
        px = images.reshape(-1, c).astype(np.float64)
        px = px[rng.choice(len(px), min(sample, len(px)), replace=False)]
        if c == 1:          # spread over the range: the two extremes of MNIST stay palette colours
            centers = np.linspace(px.min(), px.max(), n_colors)[:, None]
        else:
            centers = px[rng.choice(len(px), n_colors, replace=False)]
        for _ in range(iters):
            assign = ((px[:, None, :] - centers[None]) ** 2).sum(-1).argmin(1)
            for k in range(n_colors):
                sel = px[assign == k]
                centers[k] = sel.mean(0) if len(sel) else px[rng.integers(len(px))]
        centers = centers[np.lexsort(centers.T[::-1])]
        return cls(np.round(centers), images.shape[1:3] + (c,))

    def encode(self, images, batch_size: int = 4096) -> np.ndarray:
        """Tokens (N, H*W) of uint8 images (N, H, W[, C])."""
        a = np.asarray(images)
        h, w, c = self.image_shape
        if a.ndim == 3 and c == 1:
            a = a[..., None]
        if a.ndim != 4 or a.shape[1:] != (h, w, c):
            raise ValueError(f"pixel tokenizer takes images (N, {h}, {w}"
                             + (f", {c})" if c > 1 else ")") + f", not {np.shape(images)}")
        out = np.empty((len(a), h * w), np.int64)
        if c == 1:       # sorted 1-D palette: nearest by midpoints
            mids = (self.palette[1:, 0] + self.palette[:-1, 0]) / 2
            return np.searchsorted(mids, a.reshape(len(a), -1), side="right").astype(np.int64)
        for s in range(0, len(a), batch_size):
            px = a[s:s + batch_size].reshape(-1, c).astype(np.float64)
            d = ((px[:, None, :] - self.palette[None]) ** 2).sum(-1)
            out[s:s + batch_size] = d.argmin(1).reshape(-1, h * w)
        return out

    def decode(self, codes) -> np.ndarray:
        """uint8 images (N, H, W[, C]) of tokens (N, H*W)."""
        codes = self.check_codes(codes)
        h, w, c = self.image_shape
        x = self.palette[codes].reshape(len(codes), h, w, c)
        x = np.clip(np.round(x), 0, 255).astype(np.uint8)
        return x[..., 0] if c == 1 else x

    @property
    def meta(self) -> dict:
        return {"kind": "pixel", "image_shape": list(self.image_shape),
                "palette": self.palette.astype(int).tolist()}

    def fingerprint(self) -> str:
        return hashlib.sha1(json.dumps(self.meta, sort_keys=True).encode()).hexdigest()[:16]

    def save(self, path) -> None:
        atomic_dir_write(Path(path), lambda d: (d / CONFIG_NAME).write_text(
            json.dumps(self.meta, indent=1)))


class BandVQTokenizer(_Grid):
    """Band codes of a :class:`~wavegpt.modeling_bandvq.BandVQModel`, flattened band-major."""

    kind = "bandvq"

    def __init__(self, model):
        self.model = model.eval()
        cfg = model.config
        self.image_shape = tuple(cfg.image_shape)
        self.n_tokens = cfg.codebook_size
        self.code_shape = cfg.code_shape
        self.slots = _grid_slots(*self.code_shape)
        self._fingerprint = None

    def encode(self, images) -> np.ndarray:
        """Tokens (N, 4*h*w) of uint8 images."""
        return self.model.encode(images).reshape(len(images), -1)

    def decode(self, codes) -> np.ndarray:
        """uint8 images of tokens (N, 4*h*w)."""
        codes = self.check_codes(codes)
        return self.model.decode(codes.reshape((len(codes),) + self.code_shape))

    @property
    def meta(self) -> dict:
        cfg = self.model.config
        return {"kind": "bandvq", "image_shape": list(self.image_shape),
                "wavelet": cfg.wavelet, "code_shape": list(self.code_shape),
                "codebook_size": cfg.codebook_size, "fingerprint": self.fingerprint()}

    def fingerprint(self) -> str:
        if self._fingerprint is None:
            h = hashlib.sha1()
            for k, v in sorted(self.model.state_dict().items()):
                h.update(k.encode())
                h.update(v.detach().cpu().numpy().tobytes())
            self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint

    def save(self, path) -> None:
        def write(d):
            self.model.save_pretrained(d)
            (d / CONFIG_NAME).write_text(json.dumps({"kind": "bandvq"}, indent=1))
        atomic_dir_write(Path(path), write)


def load_tokenizer(path):
    """The pixel or band-code tokenizer saved in folder ``path``."""
    path = Path(path)
    if not (path / CONFIG_NAME).is_file():
        raise ValueError(f"{path}: not a tokenizer folder (no {CONFIG_NAME}); train one with "
                         "'wavegpt train-tokenizer'")
    meta = read_json(path / CONFIG_NAME)
    kind = meta.get("kind") if isinstance(meta, dict) else None
    if kind == "pixel":
        return tokenizer_from_meta(meta)
    if kind == "bandvq":
        from transformers.utils import logging as hf_logging

        from .modeling_bandvq import BandVQModel
        hf_logging.disable_progress_bar()
        try:
            return BandVQTokenizer(BandVQModel.from_pretrained(path))
        except ValueError:
            raise
        except Exception as exc:    # corrupt weights raise safetensors' own error type
            raise ValueError(f"{path}: cannot load the band-code VQ-VAE "
                             f"({type(exc).__name__}: {exc})") from None
    raise ValueError(f"{path / CONFIG_NAME}: unknown tokenizer kind {kind!r}")


def tokenizer_from_meta(meta: dict, run_dir=None):
    """The tokenizer a GPT config's ``tokenizer`` entry names: the wavelet language, a pixel
    palette (stored in the entry), or band codes (the VQ-VAE in ``run_dir/tokenizer``)."""
    kind = meta.get("kind", "wavelet")
    if kind == "wavelet":
        from wavecode import WaveletTokenizer
        return WaveletTokenizer.from_meta(meta)
    if kind == "pixel":
        try:
            return PixelTokenizer(meta["palette"], meta["image_shape"])
        except KeyError as exc:
            raise ValueError(f"pixel tokenizer settings lack {exc}") from None
    if kind == "bandvq":
        if run_dir is None:
            raise ValueError("band-code models need their run folder (the VQ-VAE in "
                             "<run>/tokenizer)")
        tok = load_tokenizer(Path(run_dir) / "tokenizer")
        if meta.get("fingerprint") not in (None, tok.fingerprint()):
            raise ValueError(f"{run_dir}/tokenizer is not the VQ-VAE this model was trained on")
        return tok
    raise ValueError(f"unknown tokenizer kind {kind!r}; choose from {KINDS}")
