"""Speed of the wavelet-language tokenizer on the 10k MNIST / Fashion-MNIST test digits.

Measures, in one process, after a warm-up (JIT compile time reported separately):
* the DWT alone, PyWavelets (batched ``wavedec2``) and wavecode's numba DWT;
* ``encode``: uint8 images in, tokens + slots out; ``encode`` without slots;
* ``decode``: tokens in, images out (the full stream);
* both again with numpy's huge-page advice off everywhere (``madvise(MADV_HUGEPAGE)`` on large
  arrays, which numpy does by default on Linux; the tokenizer's own outputs are allocated
  without it since session 15 -- ``wavecode.tokenizer._small_pages`` -- so this row differs
  from the first only in the smaller arrays around them);
* the slow pure-Python reference of ``tests/reference.py`` on a few images (the baseline).
Reports medians of ``--repeats`` runs, images/s, and ratios. Writes CompressAI-style JSON and a
bar plot next to it.

    python benchmarks/tokenizer_speed.py --data-dir ../shared/data
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from wavecode import WaveletTokenizer  # noqa: E402
from wavecode.datasets import load_idx_split  # noqa: E402
from wavecode.transform import analyze  # noqa: E402

from _common import save_plot, timed, write_json  # noqa: E402


def timeit(fn, repeats):
    out, t = timed(fn, repeats)
    return t, out


def huge_pages(on: bool) -> bool:
    """Switch numpy's huge-page advice for large arrays; returns the previous setting."""
    core = getattr(np, "_core", None) or np.core
    return bool(core.multiarray._set_madvise_hugepage(on))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--datasets", default="mnist,fashion-mnist")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--reference-images", type=int, default=20)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "tokenizer_speed"))
    args = ap.parse_args(argv)

    import pywt
    import reference as ref

    results = {}
    lines = []
    for name in args.datasets.split(","):
        x, _ = load_idx_split(Path(args.data_dir) / name, "test")
        n = len(x)
        tok = WaveletTokenizer(name, (28, 28))
        t0 = time.perf_counter()
        tok.encode(x[:8])
        tok.decode(tok.encode(x[:8]))
        analyze(tok, x[:8])
        jit = time.perf_counter() - t0

        xp = np.zeros((n, 32, 32))
        xp[:, 2:30, 2:30] = x / 255.0
        t_pywt, _ = timeit(lambda: pywt.wavedec2(xp, tok.config.wavelet, mode="periodization",
                                                 level=4, axes=(-2, -1)), args.repeats)
        t_dwt, _ = timeit(lambda: analyze(tok, x), args.repeats)
        t_enc, batch = timeit(lambda: tok.encode(x), args.repeats)
        t_enc_ns, _ = timeit(lambda: tok.encode(x, slots=False), args.repeats)
        t_slots, _ = timeit(lambda: batch.slots, args.repeats)
        t_dec, _ = timeit(lambda: tok.decode(batch), args.repeats)
        was = huge_pages(False)
        try:
            t_enc4k, _ = timeit(lambda: tok.encode(x), args.repeats)
            t_dec4k, _ = timeit(lambda: tok.decode(batch), args.repeats)
        finally:
            huge_pages(was)
        k = args.reference_images
        t_ref, _ = timeit(lambda: [ref.encode_image(im, tok.config.wavelet,
                                                    tok.config.final_exponent) for im in x[:k]], 1)
        t_refd, _ = timeit(lambda: [ref.decode_tokens(batch.stream(i), int(batch.exponents[i]),
                                                      tok.config.final_exponent, (1, 32, 32), 4)
                                    for i in range(k)], 1)
        r = {
            "images": n, "tokens_mean": float(batch.lengths.mean()),
            "jit_compile_s": jit,
            "dwt_pywt_img_s": n / t_pywt, "dwt_numba_img_s": n / t_dwt,
            "encode_img_s": n / t_enc, "encode_noslots_img_s": n / t_enc_ns,
            "expand_slots_img_s": n / t_slots,
            "decode_img_s": n / t_dec,
            "encode_4k_pages_img_s": n / t_enc4k, "decode_4k_pages_img_s": n / t_dec4k,
            "reference_encode_img_s": k / t_ref, "reference_decode_img_s": k / t_refd,
            "encode_tokens_s": batch.lengths.sum() / t_enc,
        }
        results[name] = r
        lines.append(
            f"{name}: {n} images, {r['tokens_mean']:.0f} tokens/image, JIT compile {jit:.1f} s\n"
            f"  DWT alone     : PyWavelets {r['dwt_pywt_img_s']:>10,.0f} img/s | numba "
            f"{r['dwt_numba_img_s']:>10,.0f} img/s ({r['dwt_numba_img_s'] / r['dwt_pywt_img_s']:.1f}x)\n"
            f"  encode + slots: {r['encode_img_s']:>10,.0f} img/s ({r['encode_tokens_s'] / 1e6:.0f} M tokens/s)"
            f"   without slots {r['encode_noslots_img_s']:>10,.0f} img/s"
            f"   expand slots to (N, 7) {r['expand_slots_img_s']:>10,.0f} img/s\n"
            f"  decode        : {r['decode_img_s']:>10,.0f} img/s\n"
            f"  4 KiB pages   : encode + slots {r['encode_4k_pages_img_s']:>10,.0f} img/s, decode "
            f"{r['decode_4k_pages_img_s']:>10,.0f} img/s (numpy's huge-page advice off)\n"
            f"  reference     : encode {r['reference_encode_img_s']:,.0f} img/s, decode "
            f"{r['reference_decode_img_s']:,.0f} img/s -> numba is "
            f"{r['encode_img_s'] / r['reference_encode_img_s']:,.0f}x / "
            f"{r['decode_img_s'] / r['reference_decode_img_s']:,.0f}x faster")
    print(f"threads: {os.cpu_count()}, repeats: {args.repeats} (medians)")
    print("\n".join(lines))

    out = Path(args.out)
    write_json(out, {"name": "wavecode-tokenizer",
                     "description": "images/s on the 10k test split, median of repeats, after "
                     "JIT warm-up",
                     "results": {m: [results[d][m] for d in results]
                                 for m in next(iter(results.values()))},
                     "datasets": list(results)})
    keys = ["dwt_pywt_img_s", "dwt_numba_img_s", "encode_img_s", "decode_img_s",
            "reference_encode_img_s"]

    def draw(fig):
        ax = fig.add_subplot()
        w = 0.8 / len(results)
        for j, d in enumerate(results):
            ax.bar(np.arange(len(keys)) + j * w, [results[d][k] for k in keys], w, label=d)
        ax.set_xticks(np.arange(len(keys)) + w / 2, [k.replace("_img_s", "") for k in keys],
                      rotation=15)
        ax.set_yscale("log")
        ax.set_ylabel("images / s")
        ax.legend()

    save_plot(out, draw, figsize=(7, 3.5))
    print(f"wrote {out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
