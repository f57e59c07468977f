"""``wavegpt`` command line: train-tokenizer, train, sample, evaluate. Errors are one line and
exit status 2."""
from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path

__all__ = ["main"]


DATA_DIR_HELP = ("folder with the IDX files, a local copy of the hub data set (its parquet "
                 "files) or, for ffhq, images (else the HuggingFace hub)")


def _cmd_train(args) -> int:
    from .train import TrainConfig, train

    cfg = TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig)
                         if getattr(args, f.name, None) is not None})
    last = train(cfg, resume=args.resume, progress=not args.quiet)
    test = last.get("test_bits_per_image")
    print(f"step {last.get('step')}: loss {last.get('loss', float('nan')):.4f} "
          f"({last.get('bits_per_image', float('nan')):.0f} bits/image on the batch"
          + (f", {test:.0f} on the test split" if test is not None else "") + f") -> {cfg.out}")
    return 0


def _cmd_train_tokenizer(args) -> int:
    from .train_tokenizer import TokenizerTrainConfig, train_tokenizer

    cfg = TokenizerTrainConfig(**{f.name: getattr(args, f.name) for f in
                                  fields(TokenizerTrainConfig)
                                  if getattr(args, f.name, None) is not None})
    m = train_tokenizer(cfg, progress=not args.quiet)
    print(f"{m['kind']} tokenizer: {m['tokens_per_image']} tokens/image over {m['n_tokens']} "
          f"codes, test PSNR {m['test_psnr_db']:.2f} dB ({m['train_s']:.0f} s) -> {cfg.out}")
    return 0


def _load_codes(path):
    """Band-code / pixel token arrays (N, L) saved by ``sample --tokens``."""
    import numpy as np
    try:
        with np.load(path) as f:
            return np.asarray(f["codes"])
    except (OSError, KeyError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read token codes ({exc})") from None


def _write_gif(path, frames, duration_ms: int = 120) -> None:
    """Animated GIF of uint8 frames, written atomically."""
    from PIL import Image

    from wavecode._files import write_atomic

    ims = [Image.fromarray(f) for f in frames]
    write_atomic(path, lambda tmp: ims[0].save(tmp, format="GIF", save_all=True,
                                               append_images=ims[1:], duration=duration_ms,
                                               loop=0))


def _save_codes(path, codes) -> None:
    import numpy as np

    from wavecode._files import write_atomic

    def write(tmp):
        with open(tmp, "wb") as f:      # a file object: numpy appends no ".npz"
            np.savez(f, codes=codes)

    write_atomic(path, write)


def _cmd_sample(args) -> int:
    import numpy as np

    from wavecode import TokenBatch, WaveletTokenizer
    from wavecode.imageio import write_image
    from wavecode.viz import grid

    from ._io import load_wavegpt
    from .device import resolve_device
    from .sample import cut_prefix, sample

    run = Path(args.checkpoint)
    model = load_wavegpt(run).to(resolve_device(args.device))
    streams = model.config.token_kind == "wavelet"
    tok = WaveletTokenizer.from_meta(model.config.tokenizer) if streams else None
    prefix = None
    if args.prefix and not streams:
        if args.rewind is None or args.keep_planes is not None:
            raise ValueError(f"{model.config.token_kind} prefixes take --rewind N (bit-planes "
                             "are a wavelet-language notion)")
        saved = _load_codes(args.prefix)
        if not 0 <= args.rewind <= saved.shape[-1]:
            raise ValueError(f"--rewind must be in 0..{saved.shape[-1]}")
        prefix = saved[:, :saved.shape[-1] - args.rewind]
    elif args.prefix:
        if args.rewind is None and args.keep_planes is None:
            raise ValueError("--prefix needs --rewind N or --keep-planes K")
        try:
            saved = TokenBatch.load(args.prefix)
        except (OSError, KeyError) as exc:
            raise ValueError(f"{args.prefix}: cannot read streams ({exc})") from None
        prefix = cut_prefix(tok, saved, rewind=args.rewind, keep_planes=args.keep_planes)
    elif args.rewind is not None or args.keep_planes is not None:
        raise ValueError("--rewind / --keep-planes need --prefix")
    if args.class_grid:
        classes = np.repeat(np.arange(model.config.num_classes), args.n)
        ncols = args.n
    elif args.cls is not None:
        classes = np.full(args.n, args.cls)
        ncols = None
    elif prefix is not None and args.labels is not None:
        classes = np.asarray(args.labels)
        ncols = None
    else:
        raise ValueError("give --class or --class-grid")
    if prefix is not None:
        if len(prefix) != len(classes):
            if len(prefix) == 1:
                prefix = (prefix.subset(np.zeros(len(classes), np.int64)) if streams else
                          np.repeat(prefix, len(classes), 0))
            else:
                raise ValueError(f"{len(prefix)} prefix streams for {len(classes)} samples")
    want_frames = args.strip or args.gif
    out = sample(model, classes, run_dir=run, top_k=args.top_k, top_p=args.top_p,
                 temperature=args.temperature, cfg=args.cfg, max_tokens=args.max_tokens,
                 seed=args.seed, prefix=prefix, frames=args.frames if want_frames else 0,
                 progress=not args.quiet, kv_cache=args.kv_cache)
    batch, images = out[0], out[1]
    write_image(args.output, grid(images, ncols=ncols, scale=2))
    if args.tokens:
        if streams:
            batch.save(args.tokens)
        else:
            _save_codes(args.tokens, batch)
    if want_frames:
        frames = out[2]                                   # (F, B, H, W)
        if args.strip:
            # one row per sample: its image as the tokens arrive, left to right
            rows = np.swapaxes(frames, 0, 1).reshape((-1,) + frames.shape[2:])
            write_image(args.strip, grid(rows, ncols=len(frames), scale=2))
        if args.gif:
            _write_gif(args.gif, [grid(f, ncols=ncols, scale=2) for f in frames])
    n_tok = batch.lengths.mean() if streams else batch.shape[1]
    print(f"{len(classes)} samples ({int(n_tok)} tokens each on average) -> {args.output}")
    return 0


def _cmd_evaluate(args) -> int:
    import json

    from .evaluate import evaluate_run

    res = evaluate_run(args.checkpoint, dataset=args.dataset, data_dir=args.data_dir,
                       cache_dir=args.cache_dir, n_per_class=args.n, test_images=args.test_images,
                       top_k=args.top_k, top_p=args.top_p, temperature=args.temperature,
                       cfg=args.cfg, seed=args.seed, progress=not args.quiet,
                       batch_size=args.batch_size, device=args.device,
                       kv_cache=args.kv_cache)
    print(json.dumps(res, indent=1))
    return 0


def _add_device(p) -> None:
    p.add_argument("--device", default="auto",
                   help="auto (CUDA when there is one), cpu, cuda or cuda:N")


def _add_kv_cache(p) -> None:
    p.add_argument("--kv-cache", choices=("float32", "int16", "int8"), default="float32",
                   help="how the CPU sampler stores keys and values: float32 (exact), int16 "
                        "(faster; the same draws in practice) or int8 (fastest; perturbs the "
                        "model slightly)")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="wavegpt", description="A GPT over the wavelet language.")
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train-tokenizer",
                       help="train a band-code VQ-VAE or fit a pixel palette (the baselines)")
    p.add_argument("--kind", choices=("bandvq", "pixel"), default="bandvq")
    p.add_argument("--dataset", choices=("mnist", "fashion-mnist", "ffhq"), default="mnist")
    p.add_argument("--out", required=True, help="tokenizer folder to write")
    p.add_argument("--data-dir", help=DATA_DIR_HELP)
    p.add_argument("--image-size", type=int, help="ffhq: side in pixels (default 32)")
    p.add_argument("--limit", type=int, help="use only the first N training images")
    p.add_argument("--palette", type=int, help="pixel: colours (256 on grey = raw 8-bit)")
    p.add_argument("--wavelet", help="bandvq: one-level DWT wavelet (haar, db8, ...)")
    p.add_argument("--codebook-size", type=int, help="bandvq: codes per band (256)")
    p.add_argument("--code-dim", type=int)
    p.add_argument("--hidden", type=int)
    p.add_argument("--downsample", type=int, help="bandvq: stride-2 stages per band encoder")
    p.add_argument("--quantizer", choices=("ema", "st"),
                   help="bandvq: EMA codebook or straight-through with a codebook loss")
    p.add_argument("--commitment", type=float)
    p.add_argument("--steps", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--time-budget", type=float, help="stop after this many training seconds")
    p.add_argument("--eval-images", type=int, help="test images for the reconstruction PSNR")
    _add_device(p)
    p.add_argument("--seed", type=int)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_train_tokenizer)

    p = sub.add_parser("train", help="train or resume a run")
    p.add_argument("--dataset", choices=("mnist", "fashion-mnist", "ffhq"), default="mnist")
    p.add_argument("--image-size", type=int, help="ffhq: side in pixels (default 32)")
    p.add_argument("--preset", default="tiny", help="model size: tiny, small, base")
    p.add_argument("--tokens", choices=("wavelet", "bandvq", "pixel"),
                   help="what the GPT learns: the wavelet language (default), band codes, pixels")
    p.add_argument("--tokenizer", help="bandvq / pixel: a folder from train-tokenizer")
    p.add_argument("--palette", type=int,
                   help="pixel without --tokenizer: k-means palette size (default 16)")
    p.add_argument("--out", default="runs/mnist-tiny")
    p.add_argument("--data-dir", help=DATA_DIR_HELP)
    p.add_argument("--cache-dir")
    p.add_argument("--steps", type=int,
                   help="optimizer steps (0: until --time-budget, the schedule following time)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float, help="peak learning rate (default 3e-3)")
    p.add_argument("--warmup", type=int, help="linear warm-up steps (default 50)")
    p.add_argument("--weight-decay", type=float, help="AdamW weight decay (default 0.05)")
    p.add_argument("--grad-clip", type=float, help="gradient norm clip (default 1.0)")
    p.add_argument("--null-class-prob", type=float,
                   help="share of the null class in training, for guidance (default 0.1)")
    p.add_argument("--final-exponent", type=int, help="language: last bit-plane 2**E")
    p.add_argument("--max-tokens", type=int,
                   help="language: token budget per image (0: none, the full streams)")
    p.add_argument("--limit", type=int, help="use only the first N training images")
    p.add_argument("--ckpt-every", type=int)
    p.add_argument("--eval-images", type=int, help="test images for bits/image at the end")
    p.add_argument("--seed", type=int)
    p.add_argument("--time-budget", type=float,
                   help="stop after this many seconds of training (the schedule follows --steps)")
    p.add_argument("--sample-every", type=int, help="write a class grid every N steps")
    p.add_argument("--no-next-slot", dest="use_next_slot", action="store_false", default=None,
                   help="embed only each token's own slot (as the paper does)")
    p.add_argument("--context", dest="use_context", action="store_true", default=None,
                   help="also embed the coding context of the next decision")
    p.add_argument("--abs-pos", dest="use_abs_pos", action="store_true", default=None,
                   help="keep GPT-2's absolute position table")
    p.add_argument("--tensorboard", action="store_true", default=None,
                   help="log scalars and sample grids to <out>/tb")
    p.add_argument("--resume", action="store_true", help="continue the run in --out exactly")
    _add_device(p)
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                   help="auto: bf16 autocast on CUDA, fp32 on the CPU")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("sample", help="sample images from a run")
    p.add_argument("--checkpoint", required=True, help="run folder")
    p.add_argument("--class", dest="cls", type=int)
    p.add_argument("--class-grid", action="store_true", help="one row per class")
    p.add_argument("--n", type=int, default=8)
    p.add_argument("--top-k", type=int)
    p.add_argument("--top-p", type=float)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--cfg", type=float, default=1.0, help="classifier-free guidance scale")
    p.add_argument("--max-tokens", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tokens", help="also save the sampled streams (.npz)")
    p.add_argument("--prefix", help="streams (.npz from --tokens) to continue: rewind")
    p.add_argument("--rewind", type=int, help="regenerate the last N tokens of each prefix")
    p.add_argument("--keep-planes", type=int, help="keep the first K bit-planes of each prefix")
    p.add_argument("--labels", type=int, nargs="+", help="classes of the prefix streams")
    p.add_argument("--strip", help="also write a progressive strip (PNG, a row per sample)")
    p.add_argument("--gif", help="also write the grid as tokens arrive (animated GIF)")
    p.add_argument("--frames", type=int, default=10, help="frames of the strip / GIF")
    _add_device(p)
    _add_kv_cache(p)
    p.add_argument("--quiet", action="store_true")
    p.add_argument("-o", "--output", required=True)
    p.set_defaults(func=_cmd_sample)

    p = sub.add_parser("evaluate", help="bits/image, class accuracy and Fréchet distance")
    p.add_argument("--checkpoint", required=True, help="run folder")
    p.add_argument("--dataset", choices=("mnist", "fashion-mnist", "ffhq"),
                   help="default: the run's training set")
    p.add_argument("--data-dir", help=DATA_DIR_HELP)
    p.add_argument("--cache-dir", default=".cache/wavegpt")
    p.add_argument("--n", type=int, default=100, help="samples per class")
    p.add_argument("--test-images", type=int, default=1000)
    p.add_argument("--top-k", type=int)
    p.add_argument("--top-p", type=float)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--cfg", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=100, help="samples drawn at a time")
    _add_device(p)
    _add_kv_cache(p)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_evaluate)
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "quiet", False):
        from transformers.utils import logging as hf_logging
        hf_logging.disable_progress_bar()
    try:
        return args.func(args)
    except ValueError as exc:
        print(f"wavegpt: error: {exc}", file=sys.stderr)
        return 2
    except MemoryError:         # torch's CPU out-of-memory is a RuntimeError: left as it is
        print("wavegpt: error: not enough memory for this run", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("wavegpt: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
