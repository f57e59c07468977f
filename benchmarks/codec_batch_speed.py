"""Folders through the codec CLI: ``wavecode encode DIR OUT`` and ``wavecode decode DIR OUT``
on the Kodak images, one thread against ``--jobs`` threads, same process, alternating.

Times the whole command as a user runs it (reading and writing the files included; PNG
writing is part of decoding), medians of ``--repeats``; JIT compilation is done before timing.

    python benchmarks/codec_batch_speed.py --data-dir ../shared/data
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from wavecode.cli import main as wavecode  # noqa: E402

from _common import save_plot, write_json  # noqa: E402


def run(argv) -> float:
    """Seconds of one CLI call (its output swallowed); raises if it fails."""
    t = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        rc = wavecode(argv)
    if rc != 0:
        raise SystemExit(f"codec_batch_speed: wavecode {' '.join(argv)} failed")
    return time.perf_counter() - t


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--bpp", type=float, default=0.5)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "codec_batch_speed"))
    args = ap.parse_args(argv)
    src = Path(args.data_dir) / "kodak"
    if not src.is_dir():
        print(f"codec_batch_speed: {src}: no such folder", file=sys.stderr)
        return 2
    n = len([p for p in src.iterdir() if p.suffix.lower() == ".png"])
    work = Path(tempfile.mkdtemp(prefix="wvc-batch-"))
    try:
        wvc, png = work / "wvc", work / "png"
        enc = ["encode", str(src), str(wvc), "--bpp", str(args.bpp)]
        dec = ["decode", str(wvc), str(png)]
        run(enc + ["--jobs", "1"])          # JIT compile (cached) and the files to decode
        run(dec + ["--jobs", "1"])
        times = {(k, j): [] for k in ("encode", "decode") for j in (1, args.jobs)}
        for _ in range(args.repeats):
            for jobs in (1, args.jobs):
                times["encode", jobs].append(run(enc + ["--jobs", str(jobs)]))
                times["decode", jobs].append(run(dec + ["--jobs", str(jobs)]))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    med = {k: float(np.median(v)) for k, v in times.items()}
    results = {"jobs": [1, args.jobs]}
    for kind in ("encode", "decode"):
        one, many = med[kind, 1], med[kind, args.jobs]
        results[f"{kind}_s"] = [one, many]
        results[f"{kind}_images_per_s"] = [n / one, n / many]
        print(f"{kind} {n} Kodak images at {args.bpp} bpp: {one:.2f} s with 1 job, "
              f"{many:.2f} s with {args.jobs} ({one / many:.2f}x)")
    write_json(Path(args.out), {"name": "codec_batch_speed",
                                "description": f"wavecode encode / decode of the {n} Kodak "
                                               f"images as a folder, {args.bpp} bpp, medians of "
                                               f"{args.repeats}, CLI wall time",
                                "results": results})

    def draw(fig):
        ax = fig.add_subplot(111)
        x = np.arange(2)
        for i, kind in enumerate(("encode", "decode")):
            ax.bar(x + 0.35 * i, results[f"{kind}_images_per_s"], 0.35, label=kind)
        ax.set_xticks(x + 0.175, [f"{j} job{'s' if j > 1 else ''}" for j in results["jobs"]])
        ax.set_ylabel("Kodak images / s")
        ax.legend()
    save_plot(Path(args.out), draw, figsize=(4.5, 3.2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
