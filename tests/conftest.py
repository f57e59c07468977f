import gzip
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

sys.path.insert(0, str(Path(__file__).parent))

settings.register_profile("default", deadline=None, max_examples=40,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", deadline=None, max_examples=500,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

# HuggingFace datasets' cache in a throw-away folder, not the user's ~/.cache (set before any
# test imports datasets, which reads it once)
_HF_CACHE = tempfile.TemporaryDirectory(prefix="wavegpt-tests-hf-")
os.environ.setdefault("HF_DATASETS_CACHE", _HF_CACHE.name)

#: the project's shared data folder (next to the checkout); absent in a user's clone
SHARED = Path(os.environ.get("WAVECODE_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def shared_dir(name):
    path = SHARED / name
    if not path.is_dir():
        pytest.skip(f"{path} not present (the shared data is only in the project's workspace)")
    return path


@pytest.fixture(scope="session")
def mnist_test():
    from wavecode.datasets import load_idx_split
    return load_idx_split(shared_dir("mnist"), "test")


@pytest.fixture(scope="session")
def fashion_test():
    from wavecode.datasets import load_idx_split
    return load_idx_split(shared_dir("fashion-mnist"), "test")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def write_idx(folder, images, labels):
    folder.mkdir(parents=True, exist_ok=True)
    n = len(images)
    with gzip.open(folder / "train-images-idx3-ubyte.gz", "wb") as f:
        f.write(bytes([0, 0, 8, 3]) + n.to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
                + images.tobytes())
    with gzip.open(folder / "train-labels-idx1-ubyte.gz", "wb") as f:
        f.write(bytes([0, 0, 8, 1]) + n.to_bytes(4, "big") + labels.astype(np.uint8).tobytes())


@pytest.fixture(scope="module")
def idx_dir(tmp_path_factory):
    """A folder holding mnist/ with the 20 vendored digits as an IDX training split."""
    from wavecode.sample_data import load_sample_digits
    images, labels = load_sample_digits()
    d = tmp_path_factory.mktemp("data") / "mnist"
    write_idx(d, images, labels)
    return d.parent
