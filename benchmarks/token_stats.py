"""Tokens per image and PSNR of the wavelet language on the MNIST / Fashion-MNIST test sets.

For each preset: tokens per image (mean, max), the PSNR of the full stream on the 28x28 crop, and
the PSNR after every token budget (prefix) -- the quality/length trade-off the GPT works with.
Writes CompressAI-style JSON, a PSNR-vs-tokens plot and a progressive strip next to it.

    python benchmarks/token_stats.py --data-dir ../shared/data
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from wavecode import TokenizerConfig, WaveletTokenizer  # noqa: E402
from wavecode.datasets import load_idx_split  # noqa: E402
from wavecode.imageio import write_image  # noqa: E402
from wavecode.viz import progressive_strip  # noqa: E402

from _common import save_plot, write_json  # noqa: E402

SETTINGS = [("mnist", "mnist", "haar", -3), ("mnist", "mnist (2^-2)", "haar", -2),
            ("fashion-mnist", "fashion-mnist", "bior4.4", -4)]
BUDGETS = [25, 50, 100, 200, 300, 400, 600, 800, 1000, 1500, 2000, 3000]
# Issue 2 quotes (mean tokens, max tokens or None, PSNR) from an earlier slow reference "on the
# 10k test sets"; they are the figures of the first 300 test images (see the README).
QUOTED = {"mnist": (1307, 1905, 34.3), "mnist (2^-2)": (858, None, 26.6),
          "fashion-mnist": (1971, 3009, 35.6)}
QUOTED_SUBSET = 300


def psnr(rec, x):
    mse = np.mean((rec - x / 255.0) ** 2, axis=(1, 2))
    return 10 * np.log10(1.0 / np.maximum(mse, 1e-20))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "token_stats"))
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    results = {}
    print(f"{'setting':<16} {'wavelet':<8} {'final T':>8} {'tokens mean':>12} {'max':>6} "
          f"{'PSNR (dB)':>10}")
    for data, label, wavelet, fe in SETTINGS:
        x, _ = load_idx_split(Path(args.data_dir) / data, "test")
        tok = WaveletTokenizer(TokenizerConfig(wavelet=wavelet, final_exponent=fe), (28, 28))
        batch = tok.encode(x)
        full = psnr(tok.decode(batch), x)
        curve = [float(psnr(tok.decode(batch, prefix=k), x).mean()) for k in BUDGETS]
        head = batch.lengths[:QUOTED_SUBSET]
        results[label] = {"tokens_mean": float(batch.lengths.mean()),
                          "tokens_max": int(batch.lengths.max()),
                          "psnr": float(full.mean()), "budgets": BUDGETS, "psnr_at_budget": curve,
                          f"first_{QUOTED_SUBSET}": {"tokens_mean": float(head.mean()),
                                                     "tokens_max": int(head.max()),
                                                     "psnr": float(full[:QUOTED_SUBSET].mean())}}
        print(f"{label:<16} {wavelet:<8} {'2^' + str(fe):>8} {batch.lengths.mean():>12.1f} "
              f"{batch.lengths.max():>6} {full.mean():>10.2f}")
        if label == data:
            pick = batch.subset(range(6))
            write_image(out.parent / f"progressive_{data}.png",
                        progressive_strip(tok, pick, steps=8, scale=3, original=x[:6]))
    print(f"\nthe first {QUOTED_SUBSET} test images against issue 2's quoted figures:")
    print(f"{'setting':<16} {'tokens mean':>12} {'quoted':>7} {'max':>6} {'quoted':>7} "
          f"{'PSNR (dB)':>10} {'quoted':>7}")
    for label, (q_mean, q_max, q_psnr) in QUOTED.items():
        r = results[label][f"first_{QUOTED_SUBSET}"]
        print(f"{label:<16} {r['tokens_mean']:>12.1f} {q_mean:>7} {r['tokens_max']:>6} "
              f"{q_max or '-':>7} {r['psnr']:>10.2f} {q_psnr:>7}")
    print("\nmean PSNR (dB) after the first N tokens:")
    print(f"{'N':>6} " + " ".join(f"{k:>16}" for k in results))
    for j, n in enumerate(BUDGETS):
        print(f"{n:>6} " + " ".join(f"{results[k]['psnr_at_budget'][j]:>16.2f}" for k in results))

    write_json(out, {"name": "wavecode-language", "description": "10k test sets; PSNR on the "
                "28x28 crop, mean over images; psnr_at_budget after the first N tokens; "
                f"first_{QUOTED_SUBSET}: the same figures over the first {QUOTED_SUBSET} test "
                "images (issue 2's quoted figures)",
                "results": results})

    def draw(fig):
        ax = fig.add_subplot()
        for k, r in results.items():
            ax.plot(r["budgets"], r["psnr_at_budget"], marker="o", label=k)
        ax.set_xscale("log")
        ax.set_xlabel("tokens kept (prefix length)")
        ax.set_ylabel("mean PSNR (dB)")
        ax.grid(alpha=0.3)
        ax.legend()

    save_plot(out, draw)
    print(f"wrote {out.with_suffix('.json')}, {out.with_suffix('.png')} and progressive strips")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
