"""Helpers shared by the benchmark scripts: atomic JSON, medians of repeats, plots."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np


def write_json(path: Path, doc: dict) -> None:
    """Write ``doc`` to ``path`` (.json) atomically."""
    path = Path(path).with_suffix(".json")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2))
    os.replace(tmp, path)


def timed(fn, repeats: int):
    """``(last result, median seconds)`` of ``repeats`` calls."""
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return out, float(np.median(times))


def best_of(fn, repeats: int):
    """``(last result, fastest seconds)`` of ``repeats`` calls."""
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return out, best


def save_plot(path: Path, draw, figsize=(6, 3.8)) -> None:
    """Draw with ``draw(fig)`` and save a PNG next to the numbers (skipped without
    matplotlib)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig = plt.figure(figsize=figsize)
    draw(fig)
    fig.tight_layout()
    fig.savefig(Path(path).with_suffix(".png"), dpi=120)
    plt.close(fig)
