"""Rate-distortion and speed of the .wvc codec against JPEG 2000 (OpenJPEG), JPEG, WebP and SPERR.

One run, same machine, same images: Kodak (24 RGB) and the Waterloo grayscale set, at
0.125 / 0.25 / 0.5 / 1.0 bpp, plus lossless. OpenJPEG runs through Pillow with settings that do it
justice (9/7, mct, rate-controlled layers, 6 resolutions, raw codestream). Timings are medians of
``--repeats`` runs per image, single process, JIT compile excluded (reported separately).
Writes CompressAI-style JSON per codec and data set, an RD plot, BD-rates against OpenJPEG.

    python benchmarks/codec_rd.py --data-dir ../shared/data
"""
from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from wavecode.codec import compress, decompress  # noqa: E402
from wavecode.imageio import read_image  # noqa: E402

from _common import save_plot, timed, write_json  # noqa: E402

RATES = [0.125, 0.25, 0.5, 1.0]


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def ms_ssim(a, b):
    """MS-SSIM (Wang et al. 2003) on the luma / gray channel, 5 scales, Gaussian window."""
    from scipy.ndimage import gaussian_filter

    def gray(x):
        x = x.astype(np.float64)
        return x if x.ndim == 2 else x @ np.array([0.299, 0.587, 0.114])

    def half(z):  # 2x2 average
        h2, w2 = z.shape[0] // 2, z.shape[1] // 2
        return (z[0:2 * h2:2, 0:2 * w2:2] + z[1:2 * h2:2, 0:2 * w2:2]
                + z[0:2 * h2:2, 1:2 * w2:2] + z[1:2 * h2:2, 1:2 * w2:2]) / 4

    x, y = gray(a), gray(b)
    weights = [0.0448, 0.2856, 0.3001, 0.2363, 0.1333]
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    vals = []
    for s in range(5):
        mx, my = gaussian_filter(x, 1.5), gaussian_filter(y, 1.5)
        sxx = gaussian_filter(x * x, 1.5) - mx * mx
        syy = gaussian_filter(y * y, 1.5) - my * my
        sxy = gaussian_filter(x * y, 1.5) - mx * my
        cs = np.mean((2 * sxy + c2) / (sxx + syy + c2))
        if s == 4:
            lum = np.mean((2 * mx * my + c1) / (mx * mx + my * my + c1))
            vals.append(lum * cs)
        else:
            vals.append(cs)
            x, y = half(x), half(y)
    vals = np.maximum(np.array(vals), 1e-6)
    return float(np.prod(vals ** np.array(weights)))


# --- codecs: encode(img, bpp or None for lossless) -> bytes ; decode(bytes, shape) -> img -----

def wvc_enc(img, bpp):
    return compress(img, lossless=True) if bpp is None else compress(img, bpp=bpp)


def wvc_enc_one_pass(img, bpp):
    return compress(img, bpp=bpp, rdo=False)


def wvc_dec(data, img):
    return decompress(data)


def j2k_enc(img, bpp):
    from PIL import Image
    c = 1 if img.ndim == 2 else 3
    buf = io.BytesIO()
    if bpp is None:
        Image.fromarray(img).save(buf, "JPEG2000", irreversible=False, mct=1 if c == 3 else 0,
                                  no_jp2=True, num_resolutions=6)
    else:
        Image.fromarray(img).save(buf, "JPEG2000", irreversible=True, mct=1 if c == 3 else 0,
                                  quality_mode="rates", quality_layers=[8 * c / bpp],
                                  no_jp2=True, num_resolutions=6)
    return buf.getvalue()


def pil_dec(data, img):
    from PIL import Image
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("L" if img.ndim == 2 else "RGB"))


def _largest_under(img, bpp, fmt, lo, hi, **opts):
    """Bisect the quality setting for the largest file not above the target size (the
    smallest setting if none fits)."""
    from PIL import Image
    target = bpp * img.shape[0] * img.shape[1] / 8

    def save(q):
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, fmt, quality=q, **opts)
        return buf.getvalue()

    best, first = None, lo
    while lo <= hi:
        q = (lo + hi) // 2
        data = save(q)
        if len(data) <= target:
            best, lo = data, q + 1
        else:
            hi = q - 1
    return best if best is not None else save(first)


def jpeg_enc(img, bpp):
    return _largest_under(img, bpp, "JPEG", 1, 100, optimize=True)


def webp_enc(img, bpp):
    return _largest_under(img, bpp, "WEBP", 0, 100, method=4)


def png_enc(img, bpp):
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "PNG", optimize=True)
    return buf.getvalue()


def sperr_codecs():
    try:
        import imagecodecs
        if not imagecodecs.SPERR.available:
            return None
    except (ImportError, AttributeError):
        return None

    def enc(img, bpp):
        # SPERR codes one channel: colour images as three channels at bpp / 3 each
        x = img.astype(np.float64)
        chans = [x] if x.ndim == 2 else [np.ascontiguousarray(x[..., k]) for k in range(3)]
        return [imagecodecs.sperr_encode(ch, mode="bpp", level=bpp / len(chans)) for ch in chans]

    def dec(parts, img):
        import imagecodecs
        chans = [imagecodecs.sperr_decode(p) for p in parts]
        y = chans[0] if len(chans) == 1 else np.stack(chans, -1)
        return np.clip(np.rint(y), 0, 255).astype(np.uint8)

    return enc, dec


def size_of(data):
    return sum(len(p) for p in data) if isinstance(data, list) else len(data)


def bd_rate(r1, p1, r2, p2):
    """Bjontegaard delta rate (%) of curve 2 against curve 1 (cubic fit of log-rate on PSNR)."""
    lr1, lr2 = np.log(r1), np.log(r2)
    f1, f2 = np.polyfit(p1, lr1, 3), np.polyfit(p2, lr2, 3)
    lo, hi = max(min(p1), min(p2)), min(max(p1), max(p2))
    i1 = np.polyval(np.polyint(f1), hi) - np.polyval(np.polyint(f1), lo)
    i2 = np.polyval(np.polyint(f2), hi) - np.polyval(np.polyint(f2), lo)
    return float((np.exp((i2 - i1) / (hi - lo)) - 1) * 100)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--sets", default="kodak,waterloo")
    ap.add_argument("--limit", type=int, default=0, help="images per set (0: all)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "codec_rd"))
    args = ap.parse_args(argv)

    # wavecode-1pass: the same files without the encoder's second, RD-thinned pass
    codecs = {"wavecode": (wvc_enc, wvc_dec), "wavecode-1pass": (wvc_enc_one_pass, wvc_dec),
              "OpenJPEG": (j2k_enc, pil_dec),
              "JPEG": (jpeg_enc, pil_dec), "WebP": (webp_enc, pil_dec)}
    sp = sperr_codecs()
    if sp:
        codecs["SPERR"] = sp
    t = time.perf_counter()
    probe = np.zeros((64, 64, 3), np.uint8)
    decompress(compress(probe, bpp=1.0))
    decompress(compress(probe, lossless=True))
    jit = time.perf_counter() - t

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {"jit_compile_s": jit, "sets": {}}
    for set_name in args.sets.split(","):
        folder = Path(args.data_dir) / set_name
        paths = sorted(folder.glob("*.png"))[: args.limit or None]
        if not paths:
            print(f"skipping {set_name}: no images in {folder}")
            continue
        images = [read_image(p) for p in paths]
        res = {name: {"bpp": [], "psnr": [], "ms-ssim": [], "encoding_time": [],
                      "decoding_time": []} for name in codecs}
        lossless = {}
        for bpp in RATES:
            acc = {name: [] for name in codecs}
            for img in tqdm(images, desc=f"{set_name} {bpp} bpp", file=sys.stderr):
                for name, (enc, dec) in codecs.items():
                    data, te = timed(lambda: enc(img, bpp), args.repeats if name in
                                     ("wavecode", "wavecode-1pass", "OpenJPEG") else 1)
                    rec, td = timed(lambda: dec(data, img), args.repeats)
                    acc[name].append((8 * size_of(data) / (img.shape[0] * img.shape[1]),
                                      psnr(rec, img), ms_ssim(rec, img), te, td))
            for name in codecs:
                a = np.array(acc[name])
                for j, key in enumerate(["bpp", "psnr", "ms-ssim"]):
                    res[name][key].append(float(a[:, j].mean()))
                res[name]["encoding_time"].append(float(np.median(a[:, 3])))
                res[name]["decoding_time"].append(float(np.median(a[:, 4])))
        for name, enc in (("wavecode", wvc_enc), ("OpenJPEG", j2k_enc), ("PNG", png_enc)):
            bits, exact = [], True
            for img in images:
                data = enc(img, None)
                rec = wvc_dec(data, img) if name == "wavecode" else pil_dec(data, img)
                exact &= bool(np.array_equal(rec, img))
                bits.append(8 * len(data) / (img.shape[0] * img.shape[1]))
            lossless[name] = {"bpp": float(np.mean(bits)), "exact": exact}
        bd = {name: bd_rate(res["OpenJPEG"]["bpp"], res["OpenJPEG"]["psnr"], r["bpp"], r["psnr"])
              for name, r in res.items() if name != "OpenJPEG"}
        report["sets"][set_name] = {"lossy": res, "lossless": lossless, "bd_rate_vs_openjpeg": bd,
                                    "images": len(images)}
        for name, r in res.items():
            doc = {"name": name, "description": f"{set_name}, {len(images)} images, mean over "
                   f"images; times: median seconds per image", "results": r}
            write_json(out.parent / f"codec_rd_{set_name}_{name}", doc)

        print(f"\n{set_name}: {len(images)} images, mean PSNR (dB) [MS-SSIM] at the target rates")
        print(f"{'codec':<10}" + "".join(f"{r:>16}" for r in RATES) + f"{'BD-rate vs J2K':>16}")
        for name, r in res.items():
            row = "".join(f"{p:>9.2f} [{m:.3f}]" for p, m in zip(r["psnr"], r["ms-ssim"]))
            print(f"{name:<10}{row}{bd.get(name, 0.0):>15.1f}%")
        print("actual bpp: " + "; ".join(f"{n} " + "/".join(f"{b:.3f}" for b in r["bpp"])
                                         for n, r in res.items()))
        i05 = RATES.index(0.5)
        w, j = res["wavecode"], res["OpenJPEG"]
        print(f"time per image at 0.5 bpp (median): wavecode encode {w['encoding_time'][i05]*1e3:.1f} ms"
              f", decode {w['decoding_time'][i05]*1e3:.1f} ms | OpenJPEG encode "
              f"{j['encoding_time'][i05]*1e3:.1f} ms, decode {j['decoding_time'][i05]*1e3:.1f} ms"
              f" | speed ratio (J2K time / ours): encode "
              f"{j['encoding_time'][i05] / w['encoding_time'][i05]:.2f}x, decode "
              f"{j['decoding_time'][i05] / w['decoding_time'][i05]:.2f}x; one-pass encode "
              f"{res['wavecode-1pass']['encoding_time'][i05]*1e3:.1f} ms ("
              f"{j['encoding_time'][i05] / res['wavecode-1pass']['encoding_time'][i05]:.2f}x)")
        print("lossless bpp: " + ", ".join(f"{n} {v['bpp']:.3f}{'' if v['exact'] else ' (NOT exact)'}"
                                           for n, v in lossless.items()))
    print(f"\nJIT compile (first calls): {jit:.1f} s")
    write_json(out, report)
    sets = list(report["sets"])

    def draw(fig):
        for j, s in enumerate(sets):
            ax = fig.add_subplot(1, len(sets), j + 1)
            for name, r in report["sets"][s]["lossy"].items():
                ax.plot(r["bpp"], r["psnr"], marker="o", label=name)
            ax.set_title(s)
            ax.set_xlabel("bits per pixel")
            ax.set_ylabel("PSNR (dB)")
            ax.grid(alpha=0.3)
            ax.legend()

    save_plot(out, draw, figsize=(6 * max(len(sets), 1), 4))
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
