"""Which tokenization serves an autoregressive model better? The same GPT (wavegpt's ``tiny``
preset, the same optimizer, the same budget of training seconds) on three tokenizations, one
after another in one run:

* ``wavelet``: the wavelet language (this project; the data set's CPU language, see README);
* ``bandvq``: Wavelet-AR's band codes -- one-level haar DWT, one VQ-VAE per band, 256 codes per
  band, 7×7 codes per band (``wavegpt train-tokenizer --kind bandvq``; its training time is
  reported separately, not charged to the GPT's budget);
* ``pixel``: iGPT-style pixels, a 16-colour k-means palette, raster order.

The GPT's schedule follows the training clock (``--steps 0 --time-budget``), so each method's
cosine ends with its budget. Reported per method: tokens per image, the tokenizer's
reconstruction PSNR on the test split (the ceiling of what the GPT can draw), GPT training steps
and tokens/s, test bits/image (of the method's own tokens: a likelihood of different objects, so
compare it with the PSNR beside it), class-conditional accuracy and Fréchet distance of samples
(the CNN of ``wavegpt evaluate``), and sampling images/s.

    python benchmarks/compare_tokenizers.py --data-dir ../shared/data --budget 360

Writes ``benchmarks/results/compare_tokenizers.{json,md,png}`` and a sample grid per data set and
method (``compare_<dataset>_<method>.png``).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from wavegpt.evaluate import evaluate_run  # noqa: E402
from wavegpt.train import MODEL_PRESETS, TrainConfig, train  # noqa: E402
from wavegpt.train_tokenizer import TokenizerTrainConfig, train_tokenizer  # noqa: E402

from _common import save_plot, write_json  # noqa: E402

METHODS = ("wavelet", "bandvq", "pixel")
#: ``--full-language``: the issue's tokenizer presets (final threshold exponent), no token budget
FULL_LANGUAGE = {"mnist": -3, "fashion-mnist": -4}
METRICS = ("tokens_per_image", "tokenizer_psnr_db", "tokenizer_train_s", "gpt_steps",
           "gpt_train_s", "gpt_tokens_per_s", "test_bits_per_image", "class_accuracy",
           "frechet_distance", "sampling_images_per_s")


def run_method(args, dataset: str, method: str, work: Path) -> dict:
    tok_dir, tok_s = None, 0.0
    if method != "wavelet":
        tok_dir = work / f"{method}-tokenizer"
        m = train_tokenizer(TokenizerTrainConfig(
            kind=method, dataset=dataset, out=str(tok_dir), data_dir=args.data_dir,
            steps=args.tokenizer_steps, palette=args.palette, seed=args.seed,
            eval_images=args.test_images, device=args.device), progress=not args.quiet)
        tok_s = m["train_s"]
    run = work / method
    if run.exists():
        shutil.rmtree(run)
    language = {}
    if method == "wavelet" and args.full_language:
        # the presets, whole streams: what a GPU can afford
        language = dict(final_exponent=FULL_LANGUAGE[dataset], max_tokens=0)
    cfg = TrainConfig(dataset=dataset, preset=args.preset, out=str(run), data_dir=args.data_dir,
                      cache_dir=args.cache_dir, steps=0, time_budget=args.budget,
                      batch_size=args.batch_size, lr=args.lr, device=args.device,
                      eval_images=0, seed=args.seed, tokens=method,
                      tokenizer=str(tok_dir) if tok_dir else None, **language)
    train(cfg, progress=not args.quiet)
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    t_eval = time.perf_counter()
    ev = evaluate_run(run, dataset=dataset, data_dir=args.data_dir, cache_dir=args.cache_dir,
                      n_per_class=args.n_per_class, test_images=args.test_images,
                      temperature=args.temperature, cfg=args.cfg, seed=args.seed,
                      batch_size=args.eval_batch_size, progress=not args.quiet,
                      device=args.device)
    shutil.copy(run / "eval_samples.png", args.out / f"compare{args.tag}_{dataset}_{method}.png")
    return {"dataset": dataset, "method": method,
            "tokens_per_image": ev["tokens_per_sample"],
            "tokenizer_psnr_db": ev["tokenizer_psnr_db"], "tokenizer_train_s": tok_s,
            "gpt_steps": log[-1]["step"], "gpt_train_s": log[-1]["elapsed_s"],
            "gpt_tokens_per_s": float(np.median([r["tokens_per_s"] for r in log])),
            "test_bits_per_image": ev["test_bits_per_image"],
            "class_accuracy": ev["class_accuracy"], "frechet_distance": ev["frechet_distance"],
            "frechet_distance_tokenizer": ev["frechet_distance_tokenizer_reconstructions"],
            "classifier_test_accuracy": ev["classifier_test_accuracy"],
            "sampling_images_per_s": ev["sampling_images_per_s"],
            "eval_s": time.perf_counter() - t_eval}


def markdown(rows) -> str:
    head = ("| data set | tokens | tokens/image | tokenizer PSNR (dB) | GPT steps | GPT tokens/s "
            "| test bits/image | class accuracy | Fréchet distance (recon.) | sampling images/s |")
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        lines.append(
            f"| {r['dataset']} | {r['method']} | {r['tokens_per_image']:.0f} | "
            f"{r['tokenizer_psnr_db']:.1f} | {r['gpt_steps']} | {r['gpt_tokens_per_s']:.0f} | "
            f"{r['test_bits_per_image']:.0f} | {100 * r['class_accuracy']:.1f} % | "
            f"{r['frechet_distance']:.0f} ({r['frechet_distance_tokenizer']:.0f}) | "
            f"{r['sampling_images_per_s']:.1f} |")
    return "\n".join(lines) + "\n"


def plot(path, rows) -> None:
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))

    def draw(fig):
        panels = (("class_accuracy", "class accuracy"), ("frechet_distance", "Fréchet distance"),
                  ("sampling_images_per_s", "sampling images/s"))
        for k, (key, title) in enumerate(panels):
            ax = fig.add_subplot(1, 3, k + 1)
            for j, ds in enumerate(datasets):
                sel = [r for r in rows if r["dataset"] == ds]
                x = np.arange(len(sel)) + 0.4 * j
                ax.bar(x, [r[key] for r in sel], width=0.4, label=ds)
                ax.set_xticks(np.arange(len(sel)) + 0.2, [r["method"] for r in sel])
            ax.set_title(title)
            if k == 0:
                ax.legend(fontsize=7)
    save_plot(path, draw, figsize=(11, 3.6))


def write_doc(args, rows, wall_s: float) -> None:
    doc = {"name": "compare_tokenizers",
           "description": f"the same {args.preset} GPT, {args.budget:.0f} training seconds per "
                          f"method, on the wavelet language"
                          f"{' (full presets)' if args.full_language else ''}, band codes "
                          f"(VQ-VAE per band) and pixels; samples at temperature "
                          f"{args.temperature}, CFG {args.cfg}, {args.n_per_class} per class",
           "settings": {k: (str(v) if k == "out" else v) for k, v in vars(args).items()},
           "wall_s": wall_s,
           "results": {k: [r[k] for r in rows] for k in rows[0]}}
    write_json(args.out / f"compare_tokenizers{args.tag}.json", doc)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--datasets", nargs="+", default=["mnist", "fashion-mnist"])
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--budget", type=float, default=360.0, help="GPT training seconds per method")
    ap.add_argument("--tokenizer-steps", type=int, default=2000, help="band-code VQ-VAE steps")
    ap.add_argument("--palette", type=int, default=16)
    ap.add_argument("--n-per-class", type=int, default=50)
    ap.add_argument("--test-images", type=int, default=1000)
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--cfg", type=float, default=2.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache-dir", default=str(ROOT / ".cache" / "wavegpt"))
    ap.add_argument("--work", default=str(ROOT / "runs" / "compare"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--preset", default="tiny", choices=sorted(MODEL_PRESETS), help="GPT size")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    ap.add_argument("--full-language", action="store_true",
                    help="wavelet streams in the issue's presets (MNIST 2^-3, Fashion 2^-4, no "
                         "budget) instead of the data set's CPU language")
    ap.add_argument("--eval-batch-size", type=int, default=100,
                    help="images per sampling batch in the evaluation")
    ap.add_argument("--tag", default="", help="suffix of the output names (e.g. _gpu)")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    args.out = Path(args.out)
    args.out.mkdir(parents=True, exist_ok=True)
    if not Path(args.data_dir).is_dir():
        print(f"compare_tokenizers: error: {args.data_dir}: no such data folder", file=sys.stderr)
        return 2
    rows = []
    t0 = time.perf_counter()
    for ds in args.datasets:
        for method in args.methods:
            try:
                rows.append(run_method(args, ds, method, Path(args.work) / ds))
            except ValueError as e:     # bad settings or data: one line, what finished is kept
                print(f"compare_tokenizers: error: {ds} / {method}: {e}", file=sys.stderr)
                return 2
            print(json.dumps(rows[-1]), flush=True)
            write_doc(args, rows, time.perf_counter() - t0)   # after each method: a cut run keeps it
    table = markdown(rows)
    (args.out / f"compare_tokenizers{args.tag}.md").write_text(table)
    print(table)

    plot(args.out / f"compare_tokenizers{args.tag}.png", rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
