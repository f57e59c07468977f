"""Fuzz the .wvc decoder: corrupted files must decode to some image or raise ValueError, never
crash or hang.

Valid files (lossy and lossless, grayscale and RGB, odd sizes) are mutated three ways: a random
payload behind the valid header, random byte flips in the payload, and a cut followed by
garbage. The test suite runs a small hypothesis version of this on every CI run; this script is
the longer campaign. Prints how many inputs were tried.

    python benchmarks/codec_fuzz.py --per-file 600 --seed 1
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from wavecode import compress, decompress  # noqa: E402
from wavecode.codec import HEADER_SIZE  # noqa: E402

SHAPES = [(16, 16), (9, 13, 3), (64, 48, 3), (33, 17)]


def mutate(data: bytes, kind: int, rng) -> bytes:
    b = bytearray(data)
    if kind == 0:       # random payload behind the valid header
        return bytes(b[:HEADER_SIZE]) + rng.integers(0, 256, rng.integers(0, 3000)).astype(
            np.uint8).tobytes()
    if kind == 1:       # byte flips in the payload
        for _ in range(rng.integers(1, 8)):
            if len(b) > HEADER_SIZE:
                b[rng.integers(HEADER_SIZE, len(b))] ^= int(rng.integers(1, 256))
        return bytes(b)
    cut = int(rng.integers(HEADER_SIZE, len(b) + 1))   # a cut, then garbage
    return bytes(b[:cut]) + rng.integers(0, 256, rng.integers(0, 50)).astype(np.uint8).tobytes()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-file", type=int, default=600, help="mutations of each valid file")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    files = []
    for shape in SHAPES:
        img = rng.integers(0, 256, shape).astype(np.uint8)
        files += [compress(img, bpp=2.0), compress(img, lossless=True)]
    tried = errors = 0
    t0 = time.perf_counter()
    for data in tqdm(files, desc="fuzz", unit="file"):
        for k in range(args.per_file):
            try:
                out = decompress(mutate(data, k % 3, rng))
                assert out.dtype == np.uint8
            except ValueError:
                errors += 1             # a clear error is allowed; anything else propagates
            tried += 1
    print(f"fuzzed {tried} inputs ({len(files)} valid files x {args.per_file} mutations) in "
          f"{time.perf_counter() - t0:.1f} s: {tried - errors} decoded, {errors} rejected with "
          f"ValueError, no crash")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
