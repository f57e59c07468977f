"""Quick RD check of a codec change: wavecode's mean PSNR on Kodak and Waterloo at the four rates.

No anchors and no timing (``codec_rd.py`` is the benchmark); this is how the README's "tried,
not taken" context changes were judged: change the contexts, retrain the initial table, run
this, compare with the run before the change::

    python benchmarks/codec_trial.py --out /tmp/before          # on the committed format
    # ... change wavecode/_codec.py, then
    python benchmarks/train_codec_prior.py
    python benchmarks/codec_trial.py --out /tmp/after --baseline /tmp/before.json

PSNR is deterministic, so differences of 0.001 dB between two runs are real (whether they
generalise is another matter). Writes CompressAI-style JSON (per set: ``bpp``, ``psnr``) and,
with ``--baseline``, a plot of the differences.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from wavecode.codec import compress, decompress  # noqa: E402
from wavecode.imageio import read_image  # noqa: E402

from _common import save_plot, write_json  # noqa: E402
from codec_rd import RATES, psnr  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--sets", default="kodak,waterloo")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "codec_trial"))
    ap.add_argument("--baseline", help="a JSON written by an earlier run: print the differences")
    args = ap.parse_args(argv)
    base = None
    if args.baseline:
        try:
            base = json.loads(Path(args.baseline).read_text())["results"]
        except (OSError, ValueError, KeyError) as e:
            print(f"codec_trial: cannot read the baseline {args.baseline}: {e}", file=sys.stderr)
            return 2
    results = {}
    for set_name in args.sets.split(","):
        folder = Path(args.data_dir) / set_name
        paths = sorted(folder.glob("*.png"))
        if not paths:
            print(f"skipping {set_name}: no images in {folder}")
            continue
        images = [read_image(p) for p in paths]
        means, rates = [], []
        for bpp in RATES:
            vals, sizes = [], []
            for img in tqdm(images, desc=f"{set_name} {bpp} bpp", file=sys.stderr):
                data = compress(img, bpp=bpp)
                vals.append(psnr(decompress(data), img))
                sizes.append(8 * len(data) / (img.shape[0] * img.shape[1]))
            means.append(float(np.mean(vals)))
            rates.append(float(np.mean(sizes)))
        results[set_name] = {"bpp": rates, "psnr": means}
        line = f"{set_name:<9}" + " ".join(f"{p:.3f}" for p in means)
        if base and set_name in base:
            line += "   vs baseline: " + " ".join(
                f"{p - q:+.3f}" for p, q in zip(means, base[set_name]["psnr"]))
        print(line, flush=True)
    out = Path(args.out)
    write_json(out, {"name": "codec_trial", "description": "wavecode mean PSNR (dB) at "
                     f"{RATES} bpp, no anchors", "results": results})
    if base:
        def draw(fig):
            ax = fig.add_subplot(111)
            for name, r in results.items():
                if name in base:
                    ax.plot(RATES, np.subtract(r["psnr"], base[name]["psnr"]), "o-", label=name)
            ax.axhline(0, color="grey", lw=0.8)
            ax.set_xscale("log", base=2)
            ax.set_xlabel("bpp")
            ax.set_ylabel("PSNR - baseline (dB)")
            ax.legend()
        save_plot(out, draw)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
