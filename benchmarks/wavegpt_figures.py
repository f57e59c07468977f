"""The README's sampling picture: samples as their tokens arrive, then rewound to their first
bit-planes and regenerated (the coarse image stays, the details are redrawn).

    python benchmarks/wavegpt_figures.py --checkpoint checkpoints/mnist-tiny
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from wavecode import WaveletTokenizer  # noqa: E402
from wavecode.imageio import write_image  # noqa: E402
from wavecode.viz import grid  # noqa: E402
from wavegpt import WaveGPTForCausalLM, cut_prefix, sample  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=str(ROOT / "checkpoints" / "mnist-tiny"))
    ap.add_argument("--classes", type=int, nargs="+", default=[2, 5, 8])
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--keep-planes", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "wavegpt_progressive.png"))
    args = ap.parse_args(argv)
    run = Path(args.checkpoint)
    model = WaveGPTForCausalLM.from_pretrained(run / "model")
    tok = WaveletTokenizer.from_meta(model.config.tokenizer)
    kw = dict(temperature=0.7, cfg=2.0)
    batch, _, frames = sample(model, args.classes, run_dir=run, frames=args.frames, seed=0, **kw)
    rows = list(np.swapaxes(frames, 0, 1))                   # one row per sample: its frames
    pre = cut_prefix(tok, batch, keep_planes=args.keep_planes)
    for c, cls in enumerate(args.classes):                   # each sample rewound, redrawn
        again = [sample(model, [cls], prefix=pre.subset([c]), seed=s, **kw)[1][0]
                 for s in range(1, args.frames + 1)]
        again[0] = tok.decode(pre.subset([c]))[0]            # first: the kept coarse image
        rows.append(np.stack(again))
    write_image(args.out, grid(np.concatenate(rows), ncols=args.frames, scale=2))
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
