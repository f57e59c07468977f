"""Readers for the standard IDX files of MNIST and Fashion-MNIST (plain or ``.gz``)."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

__all__ = ["read_idx", "load_idx_split"]

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
           0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def read_idx(path) -> np.ndarray:
    """Read one IDX file (optionally gzipped) into a numpy array.

    Raises
    ------
    ValueError
        If the file is missing, truncated or not IDX.
    """
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except (OSError, EOFError) as exc:
        raise ValueError(f"{path}: cannot read ({exc})") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _DTYPES:
        raise ValueError(f"{path}: not an IDX file")
    ndim = data[3]
    if len(data) < 4 + 4 * ndim:
        raise ValueError(f"{path}: truncated IDX header")
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    dt = np.dtype(_DTYPES[data[2]])
    need = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
    body = data[4 + 4 * ndim:]
    if len(body) != need:
        raise ValueError(f"{path}: IDX body has {len(body)} bytes, header says {need}")
    return np.frombuffer(body, dt).reshape(shape).astype(dt.newbyteorder("="), copy=False)


def load_idx_split(folder, split: str = "train"):
    """Images (uint8 (N, 28, 28)) and labels (uint8 (N,)) of ``split`` ("train" or "test") from a
    folder holding the four standard files ``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    folder = Path(folder)
    stem = "train" if split == "train" else "t10k"

    def find(kind):
        for name in (f"{stem}-{kind}-ubyte.gz", f"{stem}-{kind}-ubyte", f"{stem}-{kind}.ubyte"):
            if (folder / name).exists():
                return folder / name
        raise ValueError(f"{folder}: no {stem}-{kind}-ubyte[.gz] file")

    images = read_idx(find("images-idx3"))
    labels = read_idx(find("labels-idx1"))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(f"{folder}: images {images.shape} and labels {labels.shape} do not match")
    return images, labels
