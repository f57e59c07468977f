"""The sampler's fused attention kernels alone: one decoding step of a batch over caches that live
in memory, not in the CPU caches, for the float32, int16 and int8 key/value caches.

Shapes of the ``tiny`` MNIST model at batch 64 (4 layers, 4 heads of 32, caches of 480
positions); each step runs every layer's kernel once over its own cache (so the 4 layers'
caches, 31-126 MB, stream from memory as in sampling). Medians of ``--steps`` steps per filled
length; also the bytes of the cache read per step over the time (effective bandwidth).

    python benchmarks/attention_kernel.py
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from wavegpt._attention import _attend_last, _attend_last_q  # noqa: E402

from _common import save_plot, write_json  # noqa: E402

CACHES = {"float32": (np.float32, None), "int16": (np.int16, 32767), "int8": (np.int8, 127)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--head-dim", type=int, default=32)
    ap.add_argument("--max-len", type=int, default=480)
    ap.add_argument("--lengths", type=int, nargs="+", default=[60, 120, 240, 360, 470])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "attention_kernel"))
    args = ap.parse_args(argv)
    b, h, d, tm, n_layers = args.batch, args.heads, args.head_dim, args.max_len, args.layers
    if max(args.lengths) > tm or min(args.lengths) < 1:
        print("attention_kernel: lengths must be in 1..max-len", file=sys.stderr)
        return 2
    rng = np.random.default_rng(0)
    qkv = rng.standard_normal((b, 3 * h * d)).astype(np.float32)
    valid = np.ones((b, tm), np.bool_)
    out = np.empty((b, h, d), np.float32)
    scale = np.float32(d ** -0.5)
    rows = np.arange(b)
    results = {"positions": list(args.lengths)}
    for name, (dtype, qmax) in CACHES.items():
        if qmax is None:
            kv = [rng.standard_normal((2, b, h, d, tm)).astype(np.float32)
                  for _ in range(n_layers)]
        else:
            kv = [rng.integers(-qmax, qmax + 1, (2, b, h, d, tm)).astype(dtype)
                  for _ in range(n_layers)]
        ks = np.full((b, h, tm), 1.0 / (qmax or 1), np.float32)

        def step(t):
            for k, v in kv:
                if qmax is None:
                    _attend_last(qkv, k, v, valid, t, scale, out, rows)
                else:
                    _attend_last_q(qkv, k, v, ks, ks, valid, t, scale, out, np.float32(qmax),
                                   rows)
        step(2)                 # compile (or load from the cache)
        ms, gbs = [], []
        for t in args.lengths:
            times = []
            for _ in range(args.steps):
                t0 = time.perf_counter()
                step(t)
                times.append(time.perf_counter() - t0)
            med = float(np.median(times))
            ms.append(med * 1e3)
            gbs.append(n_layers * 2 * b * h * d * t * np.dtype(dtype).itemsize / med / 1e9)
        results[f"{name}_ms_per_step"] = ms
        results[f"{name}_gb_per_s"] = gbs
        print(f"{name:>8}: " + "  ".join(f"{t} pos {m:.3f} ms ({g:.0f} GB/s)"
                                        for t, m, g in zip(args.lengths, ms, gbs)))
    write_json(Path(args.out), {"name": "attention_kernel",
                                "description": f"fused attention, one step: batch {b}, "
                                               f"{n_layers} layers x {h} heads x {d}, caches of "
                                               f"{tm}; medians of {args.steps} steps",
                                "results": results})

    def draw(fig):
        ax = fig.add_subplot(111)
        for name in CACHES:
            ax.plot(args.lengths, results[f"{name}_ms_per_step"], "o-", label=f"{name} cache")
        ax.set_xlabel("filled positions")
        ax.set_ylabel("ms per step (all layers)")
        ax.legend()
        ax.grid(alpha=0.3)
    save_plot(Path(args.out), draw, figsize=(5, 3.4))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
