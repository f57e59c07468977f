"""``wavegpt`` command line: train, sample. Errors are one line and exit status 2."""
from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path

__all__ = ["main"]


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


def _cmd_sample(args) -> int:
    import numpy as np

    from wavecode.imageio import write_image
    from wavecode.viz import grid

    from .modeling_wavegpt import WaveGPTForCausalLM
    from .sample import sample

    run = Path(args.checkpoint)
    if not (run / "model" / "config.json").exists():
        raise ValueError(f"{run}: not a wavegpt run folder (no model/config.json)")
    model = WaveGPTForCausalLM.from_pretrained(run / "model")
    if args.class_grid:
        classes = np.repeat(np.arange(model.config.num_classes), args.n)
        ncols = args.n
    else:
        if args.cls is None:
            raise ValueError("give --class or --class-grid")
        classes = np.full(args.n, args.cls)
        ncols = None
    batch, images = sample(model, classes, run_dir=run, top_k=args.top_k, top_p=args.top_p,
                           temperature=args.temperature, cfg=args.cfg,
                           max_tokens=args.max_tokens, seed=args.seed)
    write_image(args.output, grid(images, ncols=ncols, scale=2))
    if args.tokens:
        batch.save(args.tokens)
    print(f"{len(classes)} samples ({int(batch.lengths.mean())} tokens each on average) -> "
          f"{args.output}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="wavegpt", description="A GPT over the wavelet language.")
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train or resume a run")
    p.add_argument("--dataset", choices=("mnist", "fashion-mnist"), default="mnist")
    p.add_argument("--preset", default="tiny", help="model size: tiny, small, base")
    p.add_argument("--out", default="runs/mnist-tiny")
    p.add_argument("--data-dir", help="folder with the IDX files (else the HuggingFace hub)")
    p.add_argument("--cache-dir")
    p.add_argument("--steps", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--final-exponent", type=int, help="language: last bit-plane 2**E")
    p.add_argument("--max-tokens", type=int, help="language: token budget per image")
    p.add_argument("--limit", type=int, help="use only the first N training images")
    p.add_argument("--ckpt-every", type=int)
    p.add_argument("--eval-images", type=int, help="test images for bits/image at the end")
    p.add_argument("--seed", type=int)
    p.add_argument("--resume", action="store_true", help="continue the run in --out exactly")
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
    p.add_argument("-o", "--output", required=True)
    p.set_defaults(func=_cmd_sample)
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ValueError as exc:
        print(f"wavegpt: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("wavegpt: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
