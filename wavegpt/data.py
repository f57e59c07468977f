"""Datasets as wavelet-language streams, tokenized once into an on-disk cache.

MNIST and Fashion-MNIST come from a folder of the standard IDX files (``--data-dir``) or, online,
from the HuggingFace hub (``ylecun/mnist``, ``zalando-datasets/fashion_mnist``). The cache is a
folder of ``.npy`` arrays (memory-mapped on load) keyed by a hash of the tokenizer settings and
the source, written atomically.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wavecode import TokenBatch, WaveletTokenizer
from wavecode.datasets import load_idx_split

__all__ = ["HUB_NAMES", "load_images", "load_image_folder", "StreamDataset", "tokenize_cached",
           "CodeDataset", "codes_cached"]

HUB_NAMES = {"mnist": "ylecun/mnist", "fashion-mnist": "zalando-datasets/fashion_mnist",
             "ffhq": "merkol/ffhq-256"}
#: image-folder / FFHQ test split: the last 5 % of the sorted files (FFHQ has one split)
TEST_FRACTION = 0.05
_ARRAYS = ("tokens", "offsets", "exponents", "entries", "plane_kinds", "labels")


def _resized(im, size: int | None) -> np.ndarray:
    from PIL import Image
    im = im.convert("RGB")
    if size is not None and im.size != (size, size):
        im = im.resize((size, size), Image.LANCZOS)
    return np.asarray(im, np.uint8)


def _split_of(n: int, split: str) -> slice:
    n_test = max(1, int(round(n * TEST_FRACTION))) if n > 1 else 0
    return slice(n - n_test, n) if split == "test" else slice(0, n - n_test)


def load_image_folder(folder, split: str, size: int | None = None):
    """RGB uint8 images (N, S, S, 3) of a folder (``train/`` and ``test/`` subfolders, or one
    folder whose last 5 % of sorted files are the test split); labels are all 0."""
    from PIL import Image, UnidentifiedImageError

    from wavecode.imageio import IMAGE_SUFFIXES

    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder}: no such image folder")
    if (folder / split).is_dir():
        files = sorted(f for f in (folder / split).iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
    else:
        files = sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        files = files[_split_of(len(files), split)]
    if not files:
        raise ValueError(f"{folder}: no images for the {split} split")
    out = []
    for f in files:
        try:
            with Image.open(f) as im:
                out.append(_resized(im, size))
        except (OSError, UnidentifiedImageError) as exc:
            raise ValueError(f"{f}: cannot read the image ({exc})") from None
    shapes = {a.shape for a in out}
    if len(shapes) > 1:
        raise ValueError(f"{folder}: images of different sizes {sorted(shapes)}; give a size")
    return np.stack(out), np.zeros(len(out), np.int64)


def load_images(dataset: str, split: str, data_dir=None, image_size: int | None = None):
    """uint8 images and int64 labels of a split: MNIST / Fashion-MNIST (N, 28, 28) from IDX files
    or the hub; FFHQ (N, S, S, 3) from an image folder or the hub, resized to ``image_size``."""
    if dataset not in HUB_NAMES:
        raise ValueError(f"unknown dataset {dataset!r}; choose from {sorted(HUB_NAMES)}")
    if split not in ("train", "test"):
        raise ValueError(f"split must be train or test, not {split!r}")
    if data_dir is not None:
        folder = Path(data_dir)
        if (folder / dataset).is_dir():
            folder = folder / dataset
        if dataset == "ffhq":
            return load_image_folder(folder, split, image_size)
        images, labels = load_idx_split(folder, split)
        return images, labels.astype(np.int64)
    try:
        from datasets import load_dataset
    except ImportError:
        raise ValueError("no --data-dir given and the 'datasets' package is not installed") from None
    if dataset == "ffhq":
        ds = load_dataset(HUB_NAMES[dataset], split="train")
        idx = range(len(ds))[_split_of(len(ds), split)]
        ds = ds.select(idx).map(
            lambda b: {"pixels": [_resized(im, image_size) for im in b["image"]]},
            batched=True, num_proc=os.cpu_count(), remove_columns=ds.column_names)
        images = np.asarray(ds.with_format("numpy")["pixels"], np.uint8)
        return images, np.zeros(len(images), np.int64)
    ds = load_dataset(HUB_NAMES[dataset], split=split)
    images = np.stack([np.asarray(im, np.uint8) for im in ds["image"]])
    return images, np.asarray(ds["label"], np.int64)


@dataclass
class StreamDataset:
    """Token streams of a split with their labels (arrays may be memory-mapped)."""

    batch: TokenBatch
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def exponent_table(self, num_classes: int) -> dict:
        """Counts of each exponent per class, for drawing ``e`` at sampling time."""
        out = {}
        for c in range(num_classes):
            e, n = np.unique(self.batch.exponents[self.labels == c], return_counts=True)
            out[str(c)] = {str(int(a)): int(b) for a, b in zip(e, n)}
        return out


def _key(tokenizer: WaveletTokenizer, dataset: str, split: str, n: int) -> str:
    # the tokenizer's image shape also pins the FFHQ resolution
    blob = json.dumps({"tok": tokenizer.meta, "data": dataset, "split": split, "n": n,
                       "version": 1}, sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def tokenize_cached(tokenizer: WaveletTokenizer, dataset: str, split: str, cache_dir,
                    data_dir=None, limit: int | None = None) -> StreamDataset:
    """Tokenize a split (or its first ``limit`` images) once; later calls memory-map the cache."""
    size = tokenizer.image_shape[0] if dataset == "ffhq" else None
    images, labels = load_images(dataset, split, data_dir, size)
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    folder = Path(cache_dir) / f"{dataset}-{split}-{_key(tokenizer, dataset, split, len(images))}"
    if not (folder / "meta.json").exists():
        batch = tokenizer.encode(images)
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".tmp-"))
        try:
            for name, arr in zip(_ARRAYS, (batch.tokens, batch.offsets, batch.exponents,
                                           batch.entries, batch.plane_kinds, labels)):
                np.save(tmp / f"{name}.npy", arr)
            (tmp / "meta.json").write_text(json.dumps(batch.meta))
            os.replace(tmp, folder)
        except OSError:
            if folder.exists():          # another process won the race: use its cache
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                raise
    arrays = {name: np.load(folder / f"{name}.npy", mmap_mode="r") for name in _ARRAYS}
    meta = json.loads((folder / "meta.json").read_text())
    batch = TokenBatch(arrays["tokens"], np.asarray(arrays["offsets"]),
                       np.asarray(arrays["exponents"]), arrays["entries"],
                       arrays["plane_kinds"], meta)
    return StreamDataset(batch, np.asarray(arrays["labels"]))


@dataclass
class CodeDataset:
    """Fixed-length token sequences (band codes or pixels) of a split, (N, L), with labels."""

    codes: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def lengths(self) -> np.ndarray:
        return np.full(len(self.codes), self.codes.shape[1], np.int64)

    def exponent_table(self, num_classes: int) -> dict:
        """The wavelet language's per-image exponent has no counterpart here: always 0."""
        return {str(c): {"0": int((self.labels == c).sum()) or 1} for c in range(num_classes)}


def codes_cached(tokenizer, dataset: str, split: str, cache_dir, data_dir=None,
                 limit: int | None = None) -> CodeDataset:
    """Tokenize a split with a pixel or band-code tokenizer once (cached like the streams)."""
    size = tokenizer.image_shape[0] if dataset == "ffhq" else None
    images, labels = load_images(dataset, split, data_dir, size)
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    if dataset != "ffhq" and tuple(tokenizer.image_shape[:2]) != images.shape[1:3]:
        raise ValueError(f"the tokenizer takes {tokenizer.image_shape[0]}x"
                         f"{tokenizer.image_shape[1]} images; {dataset} has "
                         f"{images.shape[1]}x{images.shape[2]}")
    blob = json.dumps({"tok": tokenizer.fingerprint(), "data": dataset, "split": split,
                       "n": len(images), "version": 1}, sort_keys=True)
    key = hashlib.sha1(blob.encode()).hexdigest()[:16]
    folder = Path(cache_dir) / f"{dataset}-{split}-{tokenizer.kind}-{key}"
    if not (folder / "codes.npy").exists():
        codes = tokenizer.encode(images)
        dtype = np.uint8 if tokenizer.n_tokens <= 256 else np.uint16
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".tmp-"))
        try:
            np.save(tmp / "labels.npy", labels)
            np.save(tmp / "codes.npy", codes.astype(dtype))
            os.replace(tmp, folder)
        except OSError:
            if folder.exists():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                raise
    return CodeDataset(np.load(folder / "codes.npy", mmap_mode="r"),
                       np.asarray(np.load(folder / "labels.npy")))
