"""Where the .wvc codec loses to JPEG 2000: the PSNR gap to OpenJPEG at the four target rates and
along a dense sweep of cut points (every prefix of one embedded file), on a few images.

The quick harness behind the codec ablations in the README (run it at each change to compare):
one 1.25 bpp file per image is cut at 24 rates from 0.1 to 1.2 bpp; OpenJPEG is encoded at each
rate with the settings of ``codec_rd.py``. Bit-plane ends show as the sweep's best points.

    python benchmarks/codec_gap.py --data-dir ../shared/data --kodak 8 --waterloo 3
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from wavecode.codec import compress, decompress  # noqa: E402
from wavecode.imageio import read_image  # noqa: E402

from _common import save_plot, write_json  # noqa: E402
from codec_rd import RATES, j2k_enc, pil_dec, psnr  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--kodak", type=int, default=8, help="first N Kodak images")
    ap.add_argument("--waterloo", type=int, default=3, help="first N Waterloo images")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "codec_gap"))
    args = ap.parse_args(argv)
    data = Path(args.data_dir)
    sets = {"kodak": sorted((data / "kodak").glob("*.png"))[:args.kodak],
            "waterloo": sorted(p for p in (data / "waterloo").glob("*") if p.is_file())
            [:args.waterloo]}
    if not any(sets.values()):
        print(f"codec_gap: error: no images under {data}/kodak or {data}/waterloo",
              file=sys.stderr)
        return 2
    sweep = np.geomspace(0.1, 1.2, 24)
    doc = {"name": "wavecode-vs-OpenJPEG-gap",
           "description": "mean PSNR(wavecode) - PSNR(OpenJPEG) in dB: at the target rates "
                          "(separate encodes) and along cuts of one 1.25 bpp file",
           "results": {}}
    for name, paths in sets.items():
        if not paths:
            continue
        at_rates, along = [], []
        for p in tqdm(paths, desc=name, file=sys.stderr):
            img = read_image(p)
            px = img.shape[0] * img.shape[1]
            ref = {r: psnr(pil_dec(j2k_enc(img, r), img), img) for r in set(RATES) | set(sweep)}
            at_rates.append([psnr(decompress(compress(img, bpp=r)), img) - ref[r]
                             for r in RATES])
            full = compress(img, bpp=1.25)
            along.append([psnr(decompress(full[:int(r * px / 8)]), img) - ref[r]
                          for r in sweep])
        g, s = np.mean(at_rates, 0), np.mean(along, 0)
        doc["results"][name] = {"bpp": RATES, "psnr_gap": g.tolist(), "mean_gap": float(g.mean()),
                                "sweep_bpp": sweep.tolist(), "sweep_gap": s.tolist(),
                                "sweep_best": float(s.max()), "sweep_worst": float(s.min()),
                                "images": len(paths)}
        print(f"{name} ({len(paths)} images): gap at " +
              " / ".join(f"{r:g}" for r in RATES) + " bpp: " +
              " / ".join(f"{x:+.2f}" for x in g) + f" dB, mean {g.mean():+.3f}; sweep best "
              f"{s.max():+.2f}, worst {s.min():+.2f}, mean {s.mean():+.3f}")
    out = Path(args.out)
    write_json(out, doc)

    def draw(fig):
        ax = fig.add_subplot(111)
        for name, r in doc["results"].items():
            ax.plot(r["sweep_bpp"], r["sweep_gap"], "-", label=f"{name}: cuts of one file")
            ax.plot(r["bpp"], r["psnr_gap"], "o", label=f"{name}: target rates")
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("bits per pixel")
        ax.set_ylabel("PSNR wavecode − OpenJPEG (dB)")
        ax.legend(fontsize=7)
    save_plot(out, draw)
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
