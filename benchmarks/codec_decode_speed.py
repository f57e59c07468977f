"""Where the ``.wvc`` decoder's time goes: the entropy-coded scan (``_codec._codec_decode``) and
the pixel stage (``_codec._pixels``: scatter, inverse transform, inverse colour) apart, the whole
``decompress``, and OpenJPEG's decode of its own file at the same rate (codec_rd's settings), on
Kodak and Waterloo at 0.125 / 0.25 / 0.5 / 1 bpp, one process. Medians over the images of the
best of ``--repeats``; the scan also per token (tokens of the language decoded); JIT compile
time reported separately.

    python benchmarks/codec_decode_speed.py --data-dir ../shared/data

Writes ``benchmarks/results/codec_decode_speed.{json,png}``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numba
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from wavecode import _codec, codec, compress, decompress  # noqa: E402
from wavecode.imageio import read_image  # noqa: E402

from _common import best_of, save_plot, write_json  # noqa: E402
from codec_rd import j2k_enc, pil_dec  # noqa: E402

RATES = (0.125, 0.25, 0.5, 1.0)
PARTS = ("scan", "pixels", "decompress", "OpenJPEG decode")


def decode_parts(data: bytes, repeats: int):
    """(scan seconds, pixel seconds, tokens) of one file, as ``decompress`` runs them."""
    hdr = codec.info(data)
    h, w, c, levels = hdr["height"], hdr["width"], hdr["channels"], hdr["levels"]
    lay, k, cx, norms = codec._plan(c, h, w, levels)
    payload = np.frombuffer(data, np.uint8, offset=codec.HEADER_SIZE)
    approx = np.empty(lay.size, np.float64)
    (tokens, complete), scan = best_of(lambda: _codec._codec_decode(
        payload, hdr["exponent"], hdr["final_exponent"], k, cx, w, c * h * w, approx,
        codec.PRIOR), repeats)
    out = np.empty((h, w, c), np.uint8)
    _, pixels = best_of(lambda: _codec._pixels(approx, lay.flat, norms, False, complete, c, h, w,
                                               levels, numba.get_num_threads(), out), repeats)
    assert np.array_equal(out[..., 0] if c == 1 else out, decompress(data))
    return scan, pixels, int(tokens)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--sets", default="kodak,waterloo")
    ap.add_argument("--limit", type=int, default=0, help="images per set (0: all)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args(argv)
    sets = {}
    for name in args.sets.split(","):
        files = sorted((Path(args.data_dir) / name).glob("*.png"))
        if args.limit:
            files = files[:args.limit]
        if not files:
            print(f"codec_decode_speed: error: no PNGs under {args.data_dir}/{name}",
                  file=sys.stderr)
            return 2
        sets[name] = [read_image(f) for f in files]
    t0 = time.perf_counter()
    probe = np.zeros((64, 64, 3), np.uint8)
    decode_parts(compress(probe, bpp=1.0), 1)
    decode_parts(compress(probe[..., 0], bpp=1.0), 1)
    jit_s = time.perf_counter() - t0
    results = {}
    for name, images in sets.items():
        res = {p: [] for p in PARTS}
        res["tokens"], res["scan ns per token"] = [], []
        for rate in RATES:
            got = {p: [] for p in PARTS}
            toks, per_tok = [], []
            for a in images:
                data = compress(a, bpp=rate)
                scan, pixels, n = decode_parts(data, args.repeats)
                got["scan"].append(scan)
                got["pixels"].append(pixels)
                got["decompress"].append(best_of(lambda: decompress(data), args.repeats)[1])
                j2k = j2k_enc(a, rate)
                got["OpenJPEG decode"].append(best_of(lambda: pil_dec(j2k, a), args.repeats)[1])
                toks.append(n)
                per_tok.append(1e9 * scan / max(n, 1))
            for p in PARTS:
                res[p].append(float(np.median(got[p])))
            res["tokens"].append(float(np.median(toks)))
            res["scan ns per token"].append(float(np.median(per_tok)))
            print(f"{name} {rate} bpp, median ms per image: " + ", ".join(
                f"{p} {1e3 * res[p][-1]:.2f}" for p in PARTS)
                + f"; speed ratio (OpenJPEG / decompress) "
                  f"{res['OpenJPEG decode'][-1] / res['decompress'][-1]:.2f}x; "
                  f"{res['tokens'][-1]:.0f} tokens, scan {res['scan ns per token'][-1]:.1f} ns "
                  f"per token", flush=True)
        results[name] = res
    print(f"JIT compile (first calls): {jit_s:.1f} s")
    doc = {"name": "codec_decode_speed",
           "description": "wavecode decoder, its scan and pixel stage apart, against OpenJPEG's "
                          f"decode, per set; median over images of the best of {args.repeats}, "
                          f"seconds; JIT compile {jit_s:.1f} s (not included)",
           "jit_compile_s": jit_s,
           "results": {"bpp": list(RATES),
                       **{f"decoding_time, {s}, {p}": v for s, r in results.items()
                          for p, v in r.items() if p not in ("tokens", "scan ns per token")},
                       **{f"tokens, {s}": r["tokens"] for s, r in results.items()},
                       **{f"scan ns per token, {s}": r["scan ns per token"]
                          for s, r in results.items()}}}
    out = Path(args.out)
    write_json(out / "codec_decode_speed.json", doc)

    def draw(fig):
        for j, (s, r) in enumerate(results.items()):
            ax = fig.add_subplot(1, len(results), j + 1)
            for p in PARTS:
                ax.plot(RATES, 1e3 * np.array(r[p]), marker="o", label=p,
                        linestyle="--" if p.startswith("OpenJPEG") else "-")
            ax.set_xscale("log", base=2)
            ax.set_xlabel("bpp")
            ax.set_ylabel("ms per image (median)")
            ax.set_title(s)
            ax.legend(fontsize=7)
    save_plot(out / "codec_decode_speed.png", draw, figsize=(9, 3.8))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
