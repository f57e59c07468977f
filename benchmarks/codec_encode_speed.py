"""Where the ``.wvc`` encoder's time goes, and what the RD thinning costs: the range coder alone
(``_codec._codec_encode``) on Kodak at 0.125 / 0.25 / 0.5 / 1 bpp, four ways in one process:

* ``one pass``: no thinning (``compress(rdo=False)``);
* ``thinning, guess + snapshot``: the default -- the plane the cut likely falls in is coded
  thinned at once (``guess``), else (or if the guess was wrong) coded again from a snapshot of
  the coder state at its start (``lookahead`` 8);
* ``thinning, snapshot``: no guessing, the cut plane always coded twice;
* ``thinning, from scratch``: no snapshot, the whole image coded a second time (``lookahead``
  0: the previous encoder's work).

All thinning variants must write the same bytes (checked).

Also the whole ``compress`` (transform and colour included) with and without thinning. Medians
over the images of the best of ``--repeats``; JIT compile time reported separately.

    python benchmarks/codec_encode_speed.py --data-dir ../shared/data

Writes ``benchmarks/results/codec_encode_speed.{json,png}``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from wavecode import _codec, codec, compress  # noqa: E402
from wavecode.imageio import read_image  # noqa: E402

from _common import best_of, save_plot, write_json  # noqa: E402

RATES = (0.125, 0.25, 0.5, 1.0)
#: variant -> (thin, lookahead, guess) of ``_codec._codec_encode``
VARIANTS = {"one pass": (0.0, 8, 0.0),
            "thinning, guess + snapshot": (codec.RDO_THIN, 8, codec.RDO_GUESS),
            "thinning, snapshot": (codec.RDO_THIN, 8, 0.0),
            "thinning, from scratch": (codec.RDO_THIN, 0, 0.0)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args(argv)
    files = sorted((Path(args.data_dir) / "kodak").glob("*.png"))
    if not files:
        print(f"codec_encode_speed: error: no Kodak PNGs under {args.data_dir}/kodak",
              file=sys.stderr)
        return 2
    images = [read_image(f) for f in files]
    t0 = time.perf_counter()
    compress(images[0], bpp=0.5)
    jit_s = time.perf_counter() - t0
    coder = {name: [] for name in VARIANTS}
    whole = {"compress": [], "compress(rdo=False)": []}
    for rate in RATES:
        times = {name: [] for name in VARIANTS}
        wt = {name: [] for name in whole}
        for a in images:
            h, w = a.shape[:2]
            planes, levels = codec._coefficients(a, False)
            c = planes.shape[0]
            lay, k, cx, norms = codec._plan(c, h, w, levels)
            vals = planes.ravel()[lay.flat] * norms
            e = int(np.frexp(np.abs(vals).max())[1]) - 1
            budget = int(rate * h * w / 8) - codec.HEADER_SIZE
            ref = None
            for name, (thin, lookahead, guess) in VARIANTS.items():
                out, s = best_of(lambda: _codec._codec_encode(
                    vals, e, codec.LOSSY_FINAL_EXPONENT, budget, k, cx, w, c * h * w,
                    codec.PRIOR, thin, c, lookahead, guess)[0], args.repeats)
                times[name].append(s)
                if thin:        # every thinning variant writes the same bytes
                    assert ref is None or bytes(out) == ref, (name, rate)
                    ref = bytes(out)
            wt["compress"].append(best_of(lambda: compress(a, bpp=rate), args.repeats)[1])
            wt["compress(rdo=False)"].append(
                best_of(lambda: compress(a, bpp=rate, rdo=False), args.repeats)[1])
        for name in VARIANTS:
            coder[name].append(float(np.median(times[name])))
        for name in whole:
            whole[name].append(float(np.median(wt[name])))
        print(f"{rate} bpp, median ms per image: " + ", ".join(
            f"{n} {1e3 * v[-1]:.1f}" for n, v in {**coder, **whole}.items()), flush=True)
    doc = {"name": "codec_encode_speed",
           "description": f"wavecode encoder on {len(images)} Kodak images: range coder alone "
                          f"per variant, and the whole compress; median over images of the best "
                          f"of {args.repeats}, seconds; JIT compile {jit_s:.1f} s (not included)",
           "jit_compile_s": jit_s,
           "results": {"bpp": list(RATES),
                       **{f"encoding_time, coder, {n}": v for n, v in coder.items()},
                       **{f"encoding_time, {n}": v for n, v in whole.items()}}}
    out = Path(args.out)
    write_json(out / "codec_encode_speed.json", doc)

    def draw(fig):
        ax = fig.add_subplot(1, 1, 1)
        for n, v in {**coder, **whole}.items():
            ax.plot(RATES, 1e3 * np.array(v), marker="o", label=n,
                    linestyle="-" if n in coder else "--")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("bpp")
        ax.set_ylabel("ms per Kodak image (median)")
        ax.legend(fontsize=7)
    save_plot(out / "codec_encode_speed.png", draw)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
