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

__all__ = ["HUB_NAMES", "load_images", "StreamDataset", "tokenize_cached"]

HUB_NAMES = {"mnist": "ylecun/mnist", "fashion-mnist": "zalando-datasets/fashion_mnist"}
_ARRAYS = ("tokens", "offsets", "exponents", "entries", "plane_kinds", "labels")


def load_images(dataset: str, split: str, data_dir=None):
    """uint8 images (N, H, W) and int64 labels of a split, from IDX files or the hub."""
    if dataset not in HUB_NAMES:
        raise ValueError(f"unknown dataset {dataset!r}; choose from {sorted(HUB_NAMES)}")
    if data_dir is not None:
        folder = Path(data_dir)
        if (folder / dataset).is_dir():
            folder = folder / dataset
        images, labels = load_idx_split(folder, split)
        return images, labels.astype(np.int64)
    try:
        from datasets import load_dataset
    except ImportError:
        raise ValueError("no --data-dir given and the 'datasets' package is not installed") from None
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
    blob = json.dumps({"tok": tokenizer.meta, "data": dataset, "split": split, "n": n,
                       "version": 1}, sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def tokenize_cached(tokenizer: WaveletTokenizer, dataset: str, split: str, cache_dir,
                    data_dir=None, limit: int | None = None) -> StreamDataset:
    """Tokenize a split (or its first ``limit`` images) once; later calls memory-map the cache."""
    images, labels = load_images(dataset, split, data_dir)
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
