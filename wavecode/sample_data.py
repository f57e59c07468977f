"""The small sample bundled with the package (see ``wavecode/data/README.md`` for its licence)."""
from __future__ import annotations

from importlib import resources

import numpy as np

__all__ = ["load_sample_digits"]


def load_sample_digits():
    """20 MNIST test digits (two per class): uint8 images (20, 28, 28) and labels (20,)."""
    with resources.files("wavecode").joinpath("data/mnist_sample.npz").open("rb") as f:
        with np.load(f) as z:
            return z["images"].copy(), z["labels"].copy()
