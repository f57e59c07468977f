"""``wavecode`` command line: tokenize, detokenize, show (the language); encode, decode, info
(the .wvc codec); demo.

Every error is one line on stderr and exit status 2.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from ._files import write_atomic
from .imageio import IMAGE_SUFFIXES, read_image, write_image
from .tokenizer import PRESETS, TOKEN_NAMES, TokenBatch, TokenizerConfig, WaveletTokenizer

__all__ = ["main"]


def _add_tokenizer_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("language settings")
    g.add_argument("--preset", choices=sorted(PRESETS), help="start from a preset")
    g.add_argument("--wavelet", help="PyWavelets wavelet name (default: haar)")
    g.add_argument("--final-exponent", type=int, help="last bit-plane is 2**E (default: -3)")
    g.add_argument("--levels", type=int, help="DWT levels (default: LL at least 2 on its short side)")
    g.add_argument("--color", choices=("ycbcr", "rgb"), help="colour transform (default: ycbcr)")
    g.add_argument("--max-tokens", type=int, help="token budget per image")
    g.add_argument("--gray", action="store_true", help="convert images to grayscale")


def _config(args) -> TokenizerConfig:
    base = PRESETS[args.preset].to_dict() if args.preset else TokenizerConfig().to_dict()
    for key in ("wavelet", "final_exponent", "levels", "color", "max_tokens"):
        v = getattr(args, key)
        if v is not None:
            base[key] = v
    return TokenizerConfig(**base)


def _image_paths(src: Path) -> list[Path]:
    if src.is_dir():
        paths = sorted(p for p in src.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not paths:
            raise ValueError(f"{src}: no images ({', '.join(IMAGE_SUFFIXES)})")
        return paths
    if not src.exists():
        raise ValueError(f"{src}: no such file or directory")
    return [src]


def _read_all(paths, gray: bool) -> np.ndarray:
    from tqdm import tqdm

    images = []
    for p in tqdm(paths, desc="reading", unit="img", disable=len(paths) < 50, file=sys.stderr):
        im = read_image(p, "L" if gray else None)
        if images and im.shape != images[0].shape:
            raise ValueError(f"{p}: shape {im.shape} differs from {images[0].shape} of "
                             f"{paths[0].name}; tokenize folders of one size")
        images.append(im)
    return np.stack(images)


def _cmd_tokenize(args) -> int:
    paths = _image_paths(Path(args.input))
    images = _read_all(paths, args.gray)
    tok = WaveletTokenizer(_config(args), images.shape[1:])
    batch = tok.encode(images)
    batch.meta["files"] = [p.name for p in paths]
    batch.save(args.output)
    lens = batch.lengths
    hist = np.bincount(batch.tokens, minlength=7) / max(len(batch.tokens), 1)
    print(f"{len(batch)} image(s) {images.shape[1:]} -> {args.output}")
    print(f"  {tok}")
    print(f"  tokens/image: mean {lens.mean():.1f}, min {lens.min()}, max {lens.max()}; "
          f"exponent e: {batch.exponents.min()} .. {batch.exponents.max()}")
    print("  token mix: " + ", ".join(f"{n} {h:.1%}" for n, h in zip(TOKEN_NAMES, hist)))
    return 0


def _load_tokens(path):
    batch = TokenBatch.load(path)
    tok = WaveletTokenizer.from_meta(batch.meta)
    return batch, tok


def _cmd_detokenize(args) -> int:
    from .viz import grid

    batch, tok = _load_tokens(args.tokens)
    if args.index is not None:
        if not -len(batch) <= args.index < len(batch):
            raise ValueError(f"--index {args.index} out of range: the file holds {len(batch)}")
        batch = batch.subset([args.index])
    if args.prefix is not None and args.prefix < 0:
        raise ValueError("--prefix must be >= 0")
    images = tok.decode(batch, prefix=args.prefix)
    picture = images[0] if len(images) == 1 else grid(images, ncols=args.ncols)
    write_image(args.output, picture)
    print(f"wrote {args.output} ({len(images)} image(s)"
          + (f", first {args.prefix} tokens" if args.prefix is not None else "") + ")")
    return 0


def _cmd_show(args) -> int:
    from .viz import progressive_strip

    paths = _image_paths(Path(args.input))[: args.max_images]
    images = _read_all(paths, args.gray)
    tok = WaveletTokenizer(_config(args), images.shape[1:])
    batch = tok.encode(images)
    scale = args.scale or max(1, 128 // max(images.shape[1:3]))
    strip = progressive_strip(tok, batch, steps=args.steps, mode=args.mode, scale=scale,
                              original=images if args.original else None)
    write_image(args.output, strip)
    print(f"wrote {args.output}: {len(images)} image(s), {args.steps} prefixes each "
          f"({args.mode}), {int(batch.lengths.mean())} tokens/image")
    return 0


def _cmd_demo(args) -> int:
    from .sample_data import load_sample_digits
    from .viz import grid, progressive_strip

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    images, labels = load_sample_digits()
    tok = WaveletTokenizer("mnist", images.shape[1:])
    batch = tok.encode(images)
    batch.save(out / "digits_tokens.npz")
    rec = tok.decode(batch)
    psnr = 10 * np.log10(1.0 / np.mean((rec - images / 255.0) ** 2, axis=(1, 2)))
    write_image(out / "digits_reconstructed.png", grid(np.concatenate([images / 255.0, rec]),
                                                        ncols=len(images), scale=3))
    write_image(out / "digits_progressive.png",
                progressive_strip(tok, batch.subset(range(min(6, len(batch)))), steps=8,
                                  scale=3, original=images[:6]))
    print(f"{len(images)} MNIST digits (labels {labels.tolist()}) with {tok}")
    print(f"  tokens/image: mean {batch.lengths.mean():.0f}, min {batch.lengths.min()}, "
          f"max {batch.lengths.max()}; full-stream PSNR mean {psnr.mean():.2f} dB")
    print(f"  wrote {out}/digits_progressive.png (growing prefixes, original at the right), "
          f"digits_reconstructed.png (top: originals, bottom: decoded), digits_tokens.npz")
    return 0


def _cmd_encode(args) -> int:
    from .codec import compress, info

    src = Path(args.input)
    if src.is_dir():
        return _encode_folder(args, src)
    image = read_image(args.input, "L" if args.gray else None)
    data = compress(image, bpp=args.bpp, psnr=args.psnr, lossless=args.lossless,
                    max_bytes=args.max_bytes, rdo=args.rdo)
    _write_atomic(args.output, data)
    hdr = info(data)
    print(f"{args.input} {image.shape} -> {args.output}: {len(data)} bytes, {hdr['bpp']:.4f} bpp, "
          f"{hdr['transform']}{', lossless' if args.lossless else ''}")
    return 0


def _jobs(n) -> int:
    import os
    if n is None:
        return os.cpu_count() or 1
    if n < 1:
        raise ValueError(f"--jobs must be >= 1, not {n}")
    return n


def _over_files(paths, work, jobs: int, desc: str):
    """``work(path)`` for every path, in order, on ``jobs`` threads (the coder's kernels release
    the GIL; each thread's own numba kernels then run on one thread), with a progress bar.
    Yields the results in order; the first error stops the run (files already written stay)."""
    from concurrent.futures import ThreadPoolExecutor

    import numba
    from tqdm import tqdm

    def one(path):
        if jobs > 1:
            numba.set_num_threads(1)        # per calling thread: no oversubscription
        return work(path)

    bar = tqdm(total=len(paths), desc=desc, unit="img", file=sys.stderr,
               disable=len(paths) < 2)
    with ThreadPoolExecutor(jobs) as pool:
        try:
            for result in pool.map(one, paths):
                bar.update(1)
                yield result
        finally:
            bar.close()


def _out_folder(path, what: str) -> Path:
    """The output folder of a folder run, created; not an existing file."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: {what} into a folder, not a file")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _encode_folder(args, src: Path) -> int:
    from .codec import compress

    paths = _image_paths(src)
    stems = [p.stem for p in paths]
    twice = sorted({s for s in stems if stems.count(s) > 1})
    if twice:
        raise ValueError(f"{src}: images {', '.join(twice)} come in several formats: one "
                         f"NAME.wvc each would overwrite the other")
    out = _out_folder(args.output, "a folder of images encodes")

    def work(path):
        image = read_image(path, "L" if args.gray else None)
        data = compress(image, bpp=args.bpp, psnr=args.psnr, lossless=args.lossless,
                        max_bytes=args.max_bytes, rdo=args.rdo)
        _write_atomic(out / (path.stem + ".wvc"), data)
        return len(data), image.shape[0] * image.shape[1]

    sizes = list(_over_files(paths, work, _jobs(args.jobs), "encode"))
    nbytes = sum(b for b, _ in sizes)
    bpp = np.mean([8 * b / px for b, px in sizes])
    print(f"{len(sizes)} image(s) from {src} -> {out}: {nbytes} bytes, mean {bpp:.4f} bpp")
    return 0


def _read_bytes(path) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ValueError(f"{path}: is a directory") from None


def _write_atomic(path, data: bytes) -> None:
    write_atomic(path, lambda tmp: tmp.write_bytes(data))


def _cmd_decode(args) -> int:
    from .codec import decompress

    if Path(args.input).is_dir():
        return _decode_folder(args, Path(args.input))
    data = _read_bytes(args.input)
    image, complete = decompress(data, max_bytes=args.max_bytes, return_complete=True)
    write_image(args.output, image)
    used = len(data) if args.max_bytes is None else min(len(data), args.max_bytes)
    print(f"{args.input} ({used} bytes{'' if complete else ', a prefix of the stream'}) -> "
          f"{args.output} {image.shape}")
    return 0


def _decode_folder(args, src: Path) -> int:
    from .codec import decompress

    paths = sorted(p for p in src.iterdir() if p.suffix.lower() == ".wvc")
    if not paths:
        raise ValueError(f"{src}: no .wvc files")
    out = _out_folder(args.output, "a folder of .wvc files decodes")

    def work(path):
        try:
            image, complete = decompress(_read_bytes(path), max_bytes=args.max_bytes,
                                         return_complete=True)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
        write_image(out / (path.stem + ".png"), image)
        return complete

    complete = list(_over_files(paths, work, _jobs(args.jobs), "decode"))
    cut = len(complete) - sum(complete)
    print(f"{len(complete)} file(s) from {src} -> {out} (PNG)"
          + (f", {cut} of them prefixes of their streams" if cut else ""))
    return 0


def _cmd_info(args) -> int:
    from .codec import info

    for k, v in info(_read_bytes(args.input)).items():
        print(f"{k:>15}: {v:.4f}" if isinstance(v, float) else f"{k:>15}: {v}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="wavecode", description="The 7-token wavelet language.")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("tokenize", help="images -> token file (.npz)")
    p.add_argument("input", help="an image or a folder of images of one size")
    p.add_argument("-o", "--output", required=True, help="token file to write (.npz)")
    _add_tokenizer_args(p)
    p.set_defaults(func=_cmd_tokenize)

    p = sub.add_parser("detokenize", help="token file -> image (a grid for several)")
    p.add_argument("tokens", help="token file written by 'tokenize'")
    p.add_argument("-o", "--output", required=True, help="image to write (.png ...)")
    p.add_argument("--prefix", type=int, help="decode only the first N tokens of each stream")
    p.add_argument("--index", type=int, help="only this stream")
    p.add_argument("--ncols", type=int, help="grid columns")
    p.set_defaults(func=_cmd_detokenize)

    p = sub.add_parser("show", help="progressive strip: the image from growing prefixes")
    p.add_argument("input", help="an image or a folder of images of one size")
    p.add_argument("-o", "--output", required=True, help="picture to write (.png)")
    p.add_argument("--steps", type=int, default=8, help="number of prefixes (default 8)")
    p.add_argument("--mode", choices=("geometric", "linear", "planes"), default="geometric",
                   help="prefix spacing: geometric in length (default), linear, or at the end "
                        "of every bit-plane")
    p.add_argument("--scale", type=int, help="pixel upscaling (default: to ~128 px)")
    p.add_argument("--max-images", type=int, default=8, help="rows at most (folders)")
    p.add_argument("--no-original", dest="original", action="store_false",
                   help="do not append the original")
    _add_tokenizer_args(p)
    p.set_defaults(func=_cmd_show)

    p = sub.add_parser("encode", help="image -> .wvc (the embedded codec)")
    p.add_argument("input", help="8-bit image (PNG, PPM, JPEG, TIFF ...), or a folder of them")
    p.add_argument("output", help=".wvc file to write (a folder for a folder: NAME.wvc each)")
    rate = p.add_mutually_exclusive_group(required=True)
    rate.add_argument("--bpp", type=float, help="target bits per pixel (whole file)")
    rate.add_argument("--psnr", type=float, help="smallest file reaching this PSNR (dB)")
    rate.add_argument("--lossless", action="store_true", help="reversible 5/3, bit-exact")
    p.add_argument("--max-bytes", type=int, help="cap on the file size")
    p.add_argument("--no-rdo", dest="rdo", action="store_false",
                   help="one encoding pass (faster; the plane the cut falls in is not recoded "
                        "RD-thinned)")
    p.add_argument("--gray", action="store_true", help="convert to grayscale first")
    p.add_argument("--jobs", type=int, help="folders: images coded at once (default: cores)")
    p.set_defaults(func=_cmd_encode)

    p = sub.add_parser("decode", help=".wvc -> image (any prefix decodes)")
    p.add_argument("input", help=".wvc file, or a folder of them")
    p.add_argument("output", help="image to write (.png ...; a folder for a folder: NAME.png "
                                  "each)")
    p.add_argument("--max-bytes", type=int, help="decode only the first N bytes (of each)")
    p.add_argument("--jobs", type=int, help="folders: files decoded at once (default: cores)")
    p.set_defaults(func=_cmd_decode)

    p = sub.add_parser("info", help="the header of a .wvc file")
    p.add_argument("input", help=".wvc file")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("demo", help="offline demo on the bundled MNIST digits")
    p.add_argument("-o", "--output", default="demo", help="folder for the pictures")
    p.set_defaults(func=_cmd_demo)
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ValueError as exc:
        print(f"wavecode: error: {exc}", file=sys.stderr)
        return 2
    except MemoryError:
        print("wavecode: error: not enough memory for this input", file=sys.stderr)
        return 2
    except OSError as exc:  # unwritable output folder, full disk ...
        print(f"wavecode: error: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("wavecode: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
