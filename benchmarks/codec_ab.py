"""Same-process A/B of two versions of the ``.wvc`` decoder's scan (``_codec._codec_decode``).

On this shared 2-core machine the time of one decode moves by 30-50 % between processes, so
alternating runs of ``codec_decode_speed.py`` cannot see a change of 5 %. This script loads both
versions into one process, under names of their own, and times them in turn on the same files:

    python benchmarks/codec_ab.py --a HEAD~1 --b . --data-dir ../shared/data

``--a`` / ``--b``: a git revision of this repository, or a folder that holds a ``wavecode``
package (``.``: the working tree). Each is copied as ``wavecode_a`` / ``wavecode_b`` (the
package imports itself relatively) into a folder keyed by a hash of its sources, so numba's
cache of each version is kept between runs. Per image: both encoders must write the same bytes
and both decoders must give the same coefficients (of the whole file and of its first third);
if the encoders differ (a format change), each decoder is timed on its own file and the check
is skipped. Then the scans run alternately, the order swapped every round (an even number of
rounds, so each goes first as often), best of ``--repeats`` each; the median over the images of
B's time over A's is the result. Which of the two is loaded second can still be worth a few
percent (0.92x one way against 1/1.02 the other in one measurement): run it both ways and take
the geometric mean of B/A and 1 / (A/B).

Writes ``benchmarks/results/codec_ab.{json,png}`` (CompressAI-style JSON; the plot: the ratio
per image).
"""
from __future__ import annotations

import argparse
import hashlib
import importlib
import io
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import save_plot, write_json  # noqa: E402


def _package_files(src) -> dict[str, bytes]:
    """``{relative path: bytes}`` of a version's ``wavecode`` package (its ``.py`` files)."""
    folder = Path(src) / "wavecode"
    if folder.is_dir():
        return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.py"))}
    try:
        tar = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", src, "wavecode"],
                             check=True, capture_output=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        err = getattr(e, "stderr", b"") or b""
        raise ValueError(f"{src!r} is neither a folder holding wavecode/ nor a git revision "
                         f"of {ROOT} ({err.decode(errors='replace').strip() or e})") from None
    files = {}
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        for m in t.getmembers():
            if m.isfile() and m.name.endswith(".py"):
                files[str(Path(m.name).relative_to("wavecode"))] = t.extractfile(m).read()
    return files


def label(src: str) -> str:
    """What ``src`` names, for the record: a folder, or the commit a revision resolves to."""
    if (Path(src) / "wavecode").is_dir():
        return f"folder {Path(src).resolve()}"
    try:
        sha = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", src], check=True,
                             capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return src
    return f"{src} ({sha})" if sha != src else src


def load_version(src: str, name: str, cache: Path):
    """Import version ``src`` as package ``name`` (copied into ``cache``, keyed by its sources);
    returns the package."""
    files = _package_files(src)
    if "__init__.py" not in files:
        raise ValueError(f"{src!r}: no wavecode package there")
    key = hashlib.sha1(b"".join(k.encode() + v for k, v in sorted(files.items()))).hexdigest()
    home = cache / key[:16]
    if not (home / name / "__init__.py").exists():
        tmp = Path(tempfile.mkdtemp(dir=cache))
        for rel, data in files.items():
            (tmp / name / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name / rel).write_bytes(data)
        shutil.rmtree(home / name, ignore_errors=True)
        home.mkdir(parents=True, exist_ok=True)
        (tmp / name).rename(home / name)
        shutil.rmtree(tmp, ignore_errors=True)
    sys.path.insert(0, str(home))
    pkg = importlib.import_module(name)
    for sub in ("codec", "_codec", "imageio"):
        importlib.import_module(f"{name}.{sub}")
    return pkg


def scan_call(pkg, data: bytes):
    """A function that runs ``pkg``'s scan on ``data`` once and returns the coefficients."""
    codec, _codec = pkg.codec, pkg._codec
    hdr = codec.info(data)
    h, w, c, levels = hdr["height"], hdr["width"], hdr["channels"], hdr["levels"]
    lay, k, cx, _ = codec._plan(c, h, w, levels)
    payload = np.frombuffer(data, np.uint8, offset=codec.HEADER_SIZE)
    approx = np.empty(lay.size, np.float64)

    def run():
        _codec._codec_decode(payload, hdr["exponent"], hdr["final_exponent"], k, cx, w,
                             c * h * w, approx, codec.PRIOR)
        return approx
    return run


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--a", default="HEAD", help="git revision or folder (default: HEAD)")
    ap.add_argument("--b", default=".", help="git revision or folder (default: the working tree)")
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--set", default="kodak")
    ap.add_argument("--limit", type=int, default=12, help="images (0: all)")
    ap.add_argument("--bpp", type=float, default=0.5)
    ap.add_argument("--repeats", type=int, default=8, help="rounds (made even)")
    ap.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "wavecode-ab"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args(argv)
    files = sorted((Path(args.data_dir) / args.set).glob("*.png"))
    if args.limit:
        files = files[:args.limit]
    if not files:
        print(f"codec_ab: error: no PNGs under {args.data_dir}/{args.set}", file=sys.stderr)
        return 2
    args.repeats += args.repeats % 2
    if args.repeats < 1 or args.bpp <= 0:
        print("codec_ab: error: --repeats must be >= 1 and --bpp > 0", file=sys.stderr)
        return 2
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    names = {"a": label(args.a), "b": label(args.b)}
    try:
        pkgs = {"a": load_version(args.a, "wavecode_a", cache),
                "b": load_version(args.b, "wavecode_b", cache)}
    except ValueError as e:
        print(f"codec_ab: error: {e}", file=sys.stderr)
        return 2
    from tqdm import tqdm
    read_image = pkgs["a"].imageio.read_image
    t0 = time.perf_counter()
    probe = np.zeros((64, 64, 3), np.uint8)
    for pkg in pkgs.values():
        scan_call(pkg, pkg.compress(probe, bpp=1.0))()
    jit_s = time.perf_counter() - t0
    res = {"image": [], "a scan ms": [], "b scan ms": [], "ratio b/a": []}
    same_format = True
    for f in tqdm(files, desc="codec_ab", unit="img"):
        img = read_image(f)
        data = {s: pkg.compress(img, bpp=args.bpp) for s, pkg in pkgs.items()}
        if data["a"] == data["b"]:
            for cut in (len(data["a"]) // 3, len(data["a"])):
                xa = scan_call(pkgs["a"], data["a"][:cut])()
                xb = scan_call(pkgs["b"], data["b"][:cut])()
                if not np.array_equal(xa, xb):
                    print(f"codec_ab: error: {f.name}: the decoders' coefficients differ "
                          f"(cut at {cut} bytes) although the files are the same",
                          file=sys.stderr)
                    return 1
        else:
            same_format = False
        runs = {s: scan_call(pkgs[s], data[s]) for s in "ab"}
        best = {"a": float("inf"), "b": float("inf")}
        for r in range(args.repeats):
            for s in ("ab" if r % 2 == 0 else "ba"):
                t = time.perf_counter()
                runs[s]()
                best[s] = min(best[s], time.perf_counter() - t)
        res["image"].append(f.name)
        res["a scan ms"].append(best["a"] * 1e3)
        res["b scan ms"].append(best["b"] * 1e3)
        res["ratio b/a"].append(best["b"] / best["a"])
    ratio = res["ratio b/a"]
    med = float(np.median(ratio))
    print(f"A = {names['a']}, B = {names['b']}")
    print(f"{args.set} at {args.bpp} bpp, {len(files)} images, best of {args.repeats}: scan "
          f"A {np.median(res['a scan ms']):.2f} ms, B {np.median(res['b scan ms']):.2f} ms "
          f"(medians); B/A median {med:.3f} (per image {min(ratio):.3f}-{max(ratio):.3f})")
    print("the same files from both encoders, the same coefficients from both decoders"
          if same_format else "the encoders wrote different files: each decoder timed on its own")
    print(f"JIT compile (first calls): {jit_s:.1f} s")
    out = Path(args.out) / "codec_ab"
    write_json(out, {
        "name": "codec_ab",
        "description": f"same-process A/B of the .wvc scan: A = {names['a']}, B = {names['b']}; "
                       f"{args.set} at {args.bpp} bpp, best of {args.repeats} per image",
        "a": names["a"], "b": names["b"], "same_files": same_format, "median_ratio": med,
        "jit_compile_s": jit_s, "results": res})

    def draw(fig):
        ax = fig.add_subplot(111)
        ax.bar(range(len(ratio)), ratio, color="tab:blue")
        ax.axhline(1.0, color="k", lw=0.8)
        ax.axhline(med, color="tab:red", ls="--", label=f"median {med:.3f}")
        ax.set_xticks(range(len(ratio)), [n.split(".")[0] for n in res["image"]],
                      rotation=60, fontsize=7)
        ax.set_ylabel("scan time B / A")
        ax.set_ylim(min(0.8, min(ratio) - 0.02), max(1.2, max(ratio) + 0.02))
        ax.set_title(f"B: {names['b']}\nagainst A: {names['a']}", fontsize=8)
        ax.legend()
    save_plot(out, draw)
    print(f"wrote {out}.json and .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
