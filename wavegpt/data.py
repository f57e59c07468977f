"""Datasets as wavelet-language streams, tokenized once into an on-disk cache.

MNIST and Fashion-MNIST come from a folder of the standard IDX files or of a local copy of the hub
data set's parquet files (``--data-dir``) or, online, from the HuggingFace hub (``ylecun/mnist``,
``zalando-datasets/fashion_mnist``); FFHQ from an image folder, such a copy or the hub
(``merkol/ffhq-256``). The cache is a
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

from ._io import read_json

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
        except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
            raise ValueError(f"{f}: cannot read the image ({exc})") from None
    shapes = {a.shape for a in out}
    if len(shapes) > 1:
        raise ValueError(f"{folder}: images of different sizes {sorted(shapes)}; give a size")
    return np.stack(out), np.zeros(len(out), np.int64)


def _pixel_batch(batch, size, rgb):
    # datasets.map worker: decoded images as raw bytes plus shapes (arrow stores bytes compactly)
    ims = [_resized(im, size) if rgb else np.asarray(im.convert("L"), np.uint8)
           for im in batch["image"]]
    return {"pixels": [a.tobytes() for a in ims], "shape": [list(a.shape) for a in ims]}


def _hf_arrays(ds, rgb: bool, size: int | None, where: str):
    """uint8 images and int64 labels (zeros without a label column) of a HuggingFace image
    data set, decoded (and resized) in batches by ``datasets.map`` over the CPU cores."""
    if "image" not in ds.column_names:
        raise ValueError(f"{where}: no 'image' column (columns: {ds.column_names})")
    labels = (np.asarray(ds["label"], np.int64) if "label" in ds.column_names
              else np.zeros(len(ds), np.int64))
    if len(ds) == 0:
        raise ValueError(f"{where}: no images")
    procs = min(os.cpu_count() or 1, len(ds) // 5000) or None   # worker start-up costs ~1 s
    out = ds.map(_pixel_batch, batched=True, batch_size=1000, num_proc=procs,
                 fn_kwargs={"size": size, "rgb": rgb}, remove_columns=ds.column_names,
                 desc="decoding images")
    shapes = {tuple(x) for x in out["shape"]}
    if len(shapes) > 1:
        raise ValueError(f"{where}: images of different sizes {sorted(shapes)}; give a size")
    images = np.frombuffer(b"".join(out["pixels"]), np.uint8).reshape(len(out), *shapes.pop())
    return images, labels


def _local_hub_copy(folder: Path, dataset: str, split: str, size: int | None):
    """A local copy of the hub data set (its ``{split}-*.parquet`` files, e.g. a ``git clone``
    of the dataset repo), loaded offline; None when the folder holds no parquet files."""
    files = sorted(folder.rglob("*.parquet"))
    if not files:
        return None
    want = "train" if dataset == "ffhq" else split     # FFHQ: one split, cut as the hub's
    files = [f for f in files if f.name.startswith(f"{want}-") or f.parent.name == want]
    if not files:
        raise ValueError(f"{folder}: no {want}-*.parquet file")
    datasets = _datasets()
    import pyarrow as pa
    import pyarrow.parquet as pq
    try:
        # read into memory: a local copy needs no second copy in HuggingFace's cache
        ds = datasets.Dataset(pa.concat_tables([pq.read_table(f) for f in files]))
    except Exception as exc:        # arrow raises many kinds on a bad file
        raise ValueError(f"{folder}: cannot read the parquet files ({exc})") from None
    if dataset == "ffhq":
        ds = ds.select(range(len(ds))[_split_of(len(ds), split)])
    return _hf_arrays(ds, dataset == "ffhq", size, str(folder))


def _datasets():
    """The ``datasets`` package (HuggingFace), or one clear error without it."""
    try:
        import datasets
    except ImportError:
        raise ValueError("parquet files and the hub need the 'datasets' package "
                         "(pip install datasets)") from None
    return datasets


def _from_hub(name: str, split: str):
    datasets = _datasets()
    try:
        return datasets.load_dataset(name, split=split)
    except Exception as exc:        # no network, no such repo, ...: one line, not a traceback
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"cannot load {name} from the HuggingFace hub ({msg}); give --data-dir "
                         f"with the IDX files or a copy of the data set") from None


def load_images(dataset: str, split: str, data_dir=None, image_size: int | None = None):
    """uint8 images and int64 labels of a split: MNIST / Fashion-MNIST (N, 28, 28), FFHQ
    (N, S, S, 3) resized to ``image_size``.

    ``data_dir`` (or its ``dataset`` subfolder) holds the IDX files, a local copy of the hub
    data set (its parquet files) or, for FFHQ, a folder of images; without it the data come
    from the HuggingFace hub (``HUB_NAMES``)."""
    if dataset not in HUB_NAMES:
        raise ValueError(f"unknown dataset {dataset!r}; choose from {sorted(HUB_NAMES)}")
    if split not in ("train", "test"):
        raise ValueError(f"split must be train or test, not {split!r}")
    if data_dir is not None:
        folder = Path(data_dir)
        if (folder / dataset).is_dir():
            folder = folder / dataset
        if not folder.is_dir():
            raise ValueError(f"{folder}: no such data folder")
        stem = "train" if split == "train" else "t10k"
        if dataset != "ffhq" and not any(folder.glob(f"{stem}-images-idx3*")):
            hub = _local_hub_copy(folder, dataset, split, None)
            if hub is not None:
                return hub
        if dataset == "ffhq":
            hub = _local_hub_copy(folder, dataset, split, image_size)
            return hub if hub is not None else load_image_folder(folder, split, image_size)
        images, labels = load_idx_split(folder, split)
        return images, labels.astype(np.int64)
    name = HUB_NAMES[dataset]
    if dataset == "ffhq":
        ds = _from_hub(name, "train")
        ds = ds.select(range(len(ds))[_split_of(len(ds), split)])
        return _hf_arrays(ds, True, image_size, name)
    return _hf_arrays(_from_hub(name, split), False, None, name)


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
    arrays = {name: _cached_array(folder, name) for name in _ARRAYS}
    meta = read_json(folder / "meta.json")
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
    return CodeDataset(_cached_array(folder, "codes"), np.asarray(_cached_array(folder, "labels")))


def _cached_array(folder: Path, name: str) -> np.ndarray:
    """``folder/name.npy`` memory-mapped; a damaged cache gets one line that says what to do."""
    try:
        return np.load(folder / f"{name}.npy", mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{folder / name}.npy: damaged cache file ({exc}); delete {folder} "
                         "to rebuild it") from None
