"""How coarse a language can the GPT learn on a CPU? For each candidate language: tokens per
image on the 10k test set and the evaluation CNN's accuracy on the tokenizer's own
reconstructions (the ceiling of a perfect model's class accuracy), beside its accuracy on the
originals. Also the padding fraction of random vs. length-bucketed MNIST training batches.

    python benchmarks/language_ceiling.py --data-dir ../shared/data
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from wavecode import WaveletTokenizer  # noqa: E402
from wavegpt.data import load_images  # noqa: E402
from wavegpt.evaluate import class_accuracy, load_or_train_classifier  # noqa: E402
from wavegpt.train import _bucketed  # noqa: E402

from _common import write_json  # noqa: E402

LANGUAGES = [("mnist", "mnist", -2, None), ("mnist", "mnist", -1, None),
             ("mnist", "mnist", 0, None), ("fashion-mnist", "fashion-mnist", -2, None),
             ("fashion-mnist", "fashion-mnist", -2, 512),
             ("fashion-mnist", "fashion-mnist", -1, None)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--cache-dir", default=str(ROOT / ".cache" / "wavegpt"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "language_ceiling"))
    args = ap.parse_args(argv)
    rows = {"dataset": [], "final_exponent": [], "max_tokens": [], "tokens_mean": [],
            "cnn_accuracy_reconstructions": [], "cnn_accuracy_originals": []}
    for dataset, preset, fe, budget in LANGUAGES:
        clf, acc_orig = load_or_train_classifier(dataset, args.cache_dir, args.data_dir)
        x, y = load_images(dataset, "test", args.data_dir)
        tok = WaveletTokenizer.from_preset(preset, (28, 28), final_exponent=fe,
                                           max_tokens=budget)
        batch = tok.encode(x)
        acc = class_accuracy(clf, tok.decode(batch), y)[0]
        for k, v in zip(rows, (dataset, fe, budget, float(batch.lengths.mean()), acc, acc_orig)):
            rows[k].append(v)
        print(f"{dataset:14s} 2^{fe:<3d} budget {str(budget):5s} {batch.lengths.mean():7.1f} "
              f"tokens  CNN {100 * acc:5.1f} % (originals {100 * acc_orig:5.1f} %)")
    # padding of MNIST 2^-1 training batches of 16: random order vs. length buckets of 8 batches
    x, _ = load_images("mnist", "train", args.data_dir)
    lengths = WaveletTokenizer.from_preset("mnist", (28, 28), final_exponent=-1).encode(
        x, slots=False).lengths
    padding = {}
    for bucket in (1, 8):
        order = _bucketed(np.random.default_rng(0).permutation(len(lengths)), lengths, 16, bucket)
        b = lengths[order[:len(order) // 16 * 16].reshape(-1, 16)]
        padding[bucket] = float(1 - b.sum() / (b.max(1) * 16).sum())
    print(f"MNIST 2^-1 batches of 16: padding {100 * padding[1]:.1f} % random, "
          f"{100 * padding[8]:.1f} % bucketed")
    write_json(Path(args.out), {
        "name": "language-ceiling",
        "description": "tokens/image and CNN accuracy on the tokenizer's reconstructions, 10k "
                       "test images; padding of MNIST 2^-1 batches of 16",
        "results": rows, "padding_random": padding[1], "padding_bucketed": padding[8]})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
