"""What the rates look like: a crop of one Kodak image decoded at each rate, wavecode against
JPEG 2000 (OpenJPEG, the RD benchmark's settings) and JPEG.

wavecode's row is ONE file, encoded at the highest rate and cut at each smaller size (the
embedded stream: a prefix is the coarser image); the anchors get a file per rate. PSNRs are
over the whole image. Writes a PNG grid and a JSON of the numbers (with, for reference,
wavecode encoded separately at each rate).

    python benchmarks/codec_visual.py --data-dir ../shared/data
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from wavecode.codec import compress, decompress  # noqa: E402
from wavecode.imageio import read_image  # noqa: E402

from _common import save_plot, write_json  # noqa: E402
from codec_rd import j2k_enc, jpeg_enc, pil_dec, psnr  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--image", default="kodak/kodim23.png", help="under --data-dir")
    ap.add_argument("--crop", type=int, nargs=3, default=[70, 400, 192],
                    metavar=("TOP", "LEFT", "SIZE"), help="the square shown (pixels)")
    ap.add_argument("--rates", type=float, nargs="+", default=[0.125, 0.25, 0.5, 1.0])
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "codec_visual"))
    args = ap.parse_args(argv)
    path = Path(args.data_dir) / args.image
    if not path.exists():
        print(f"codec_visual: {path}: no such image", file=sys.stderr)
        return 2
    img = read_image(path)
    h, w = img.shape[:2]
    top, left, size = args.crop
    if not (0 <= top and 0 <= left and size > 0 and top + size <= h and left + size <= w):
        print(f"codec_visual: crop {args.crop} does not fit the {h}x{w} image", file=sys.stderr)
        return 2
    rates = sorted(args.rates)
    one_file = compress(img, bpp=rates[-1])

    def cut(bpp):
        return decompress(one_file[:int(bpp * h * w / 8)])

    rows = {"wavecode (one file, cut)": cut,
            "JPEG 2000 (OpenJPEG)": lambda r: pil_dec(j2k_enc(img, r), img),
            "JPEG": lambda r: pil_dec(jpeg_enc(img, r), img)}
    sizes = {"wavecode (one file, cut)": lambda r: min(int(r * h * w / 8), len(one_file)),
             "JPEG 2000 (OpenJPEG)": lambda r: len(j2k_enc(img, r)),
             "JPEG": lambda r: len(jpeg_enc(img, r))}
    results, crops = {}, {}
    for name, decode in rows.items():
        bpp, db = [], []
        for r in rates:
            out = decode(r)
            bpp.append(8 * sizes[name](r) / (h * w))
            db.append(psnr(out, img))
            crops[name, r] = out[top:top + size, left:left + size]
        results[name] = {"bpp": bpp, "psnr": db}
        print(f"{name:<26} " + "  ".join(f"{b:.3f} bpp {p:.2f} dB" for b, p in zip(bpp, db)))
    alone = [psnr(decompress(compress(img, bpp=r)), img) for r in rates]
    results["wavecode (a file per rate)"] = {"bpp": rates, "psnr": alone}
    print(f"{'wavecode (a file per rate)':<26} " + "  ".join(f"{p:.2f} dB" for p in alone))

    out = Path(args.out)
    write_json(out, {"name": "codec_visual",
                     "description": f"{args.image}, crop {args.crop} (top, left, size); PSNR "
                                    f"(RGB) over the whole image; wavecode: one "
                                    f"{rates[-1]} bpp file cut at each size",
                     "results": results})

    def draw(fig):
        axes = fig.subplots(len(rows), len(rates) + 1, squeeze=False)
        for i, name in enumerate(rows):
            for j, r in enumerate(rates):
                ax = axes[i, j]
                ax.imshow(crops[name, r], cmap="gray" if img.ndim == 2 else None,
                          vmin=0, vmax=255, interpolation="nearest")
                ax.set_title(f"{results[name]['bpp'][j]:.3f} bpp, "
                             f"{results[name]['psnr'][j]:.2f} dB", fontsize=7)
                ax.set_xticks([])
                ax.set_yticks([])
                if j == 0:
                    ax.set_ylabel(name, fontsize=7)
            ax = axes[i, -1]
            ax.imshow(img[top:top + size, left:left + size],
                      cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=255,
                      interpolation="nearest")
            ax.set_title("original", fontsize=7)
            ax.set_xticks([])
            ax.set_yticks([])
    save_plot(out, draw, figsize=(1.9 * (len(rates) + 1), 2.0 * len(rows)))
    print(f"-> {out.with_suffix('.json')}, {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
