"""Learning per CPU-minute: tokens/s and test bits/image after a fixed training-time budget,
wavegpt's ``tiny`` recipe (and its ablations) against a plain HF GPT-2 of the same size on the
same streams, one after another in one run.

Methods (``--methods``):
* ``wavegpt``: the ``tiny`` preset as ``wavegpt train`` runs it: slot + next-slot embeddings, no
  absolute positions, no dropout, length-bucketed batches, grammar-masked loss;
* ``wavegpt-own-slot``: without the next-slot embedding (the paper's input);
* ``wavegpt-context``: plus the coding-context embedding (wavecode.context);
* ``wavegpt-abs-pos``: plus GPT-2's absolute position table;
* ``gpt2``: a stock ``GPT2LMHeadModel`` (same width and depth, tokens + class token only,
  absolute positions, dropout 0.1, padded batches in random order with an attention mask, plain
  cross-entropy).
Each gets the same optimizer (AdamW, warm-up + cosine) and the same budget of training seconds;
its number of steps comes from a short timed calibration so that the schedule ends with the
budget. Test bits/image are measured on the first ``--test-images`` test streams, both plain and
with the grammar mask (the softmax renormalised over the legal tokens).

    python benchmarks/train_speed.py --data-dir ../shared/data --budget 300
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from wavegpt.batching import batch_streams, legal_masks  # noqa: E402
from wavegpt.data import tokenize_cached  # noqa: E402
from wavegpt.modeling_wavegpt import WaveGPTForCausalLM  # noqa: E402
from wavegpt.train import LANGUAGE, MODEL_PRESETS, TrainConfig, _lr_at, evaluate_bits, \
    language_of, train  # noqa: E402

from _common import save_plot, write_json  # noqa: E402

VARIANTS = {"wavegpt": {}, "wavegpt-own-slot": {"use_next_slot": False},
            "wavegpt-context": {"use_context": True}, "wavegpt-abs-pos": {"use_abs_pos": True}}


def run_wavegpt(args, tok, test, overrides, workdir):
    base = dict(dataset=args.dataset, data_dir=args.data_dir, cache_dir=args.cache_dir,
                final_exponent=tok.config.final_exponent,
                max_tokens=tok.config.max_tokens or 0, eval_images=0, ckpt_every=10 ** 9,
                batch_size=args.batch_size, lr=args.lr, warmup=30, **overrides)
    cal = TrainConfig(out=str(workdir / "cal"), steps=args.calibration, **base)
    train(cal, progress=False)
    log = [json.loads(x) for x in open(workdir / "cal" / "log.jsonl")]
    per_step = float(np.median([x["elapsed_s"] - y["elapsed_s"] for x, y in zip(log[1:], log)]))
    steps = max(int(args.budget / per_step), 10)
    cfg = TrainConfig(out=str(workdir / "run"), steps=steps, time_budget=args.budget, **base)
    train(cfg, progress=True)
    log = [json.loads(x) for x in open(workdir / "run" / "log.jsonl")]
    model = WaveGPTForCausalLM.from_pretrained(workdir / "run" / "model")
    return {"steps": log[-1]["step"], "seconds": log[-1]["elapsed_s"],
            "tokens_per_s": float(np.median([x["tokens_per_s"] for x in log])),
            "images_seen": log[-1]["step"] * args.batch_size,
            "bits_per_image_masked": evaluate_bits(model, test, tok, len(test), masked=True),
            "bits_per_image": evaluate_bits(model, test, tok, len(test), masked=False),
            "parameters": sum(p.numel() for p in model.parameters())}


def _gpt2_inputs(sub, labels, config):
    inp = batch_streams(sub, labels, config)
    ids = inp["input_ids"]                                   # [class, x_0 .. x_{n-2}], padded
    tgt = inp["labels"]                                      # [x_0 .. x_{n-1}]
    # HF shifts labels by one: feed [class, x_0 .. x_{n-1}] and label it with itself
    full = torch.cat([ids[:, :1], tgt.clamp(min=0)], 1)      # (B, T + 1)
    mask = torch.cat([torch.ones_like(ids[:, :1]), inp["attention_mask"]], 1)
    lab = torch.cat([torch.full_like(ids[:, :1], -100), tgt], 1)
    return full, mask, lab


def _gpt2_bits(model, test, tok, config, masked):
    model.eval()
    total = 0.0
    with torch.no_grad():
        for s in range(0, len(test), 16):
            idx = np.arange(s, min(s + 16, len(test)))
            sub = test.batch.subset(idx)
            full, mask, lab = _gpt2_inputs(sub, test.labels[idx], config)
            logits = model(input_ids=full, attention_mask=mask).logits[:, :-1, :7].float()
            tgt = lab[:, 1:]
            if masked:
                legal = legal_masks(sub, tok, tgt.shape[1])
                logits = logits.masked_fill(~legal, float("-inf"))
            logp = logits.log_softmax(-1)
            keep = tgt != -100
            nll = -logp.gather(-1, tgt.clamp(min=0)[..., None])[..., 0]
            total += float(nll[keep].sum()) / math.log(2)
    return total / len(test)


def run_gpt2(args, tok, data, test):
    from transformers import GPT2Config, GPT2LMHeadModel

    from wavegpt.configuration_wavegpt import PAD_ID, WaveGPTConfig

    wcfg = WaveGPTConfig(tokenizer=tok.meta)                 # for the class-token ids only
    max_len = int(max(data.batch.lengths.max(), test.batch.lengths.max())) + 2
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=wcfg.vocab_size, n_positions=max_len,
                                       bos_token_id=wcfg.bos_token_id, eos_token_id=PAD_ID,
                                       pad_token_id=PAD_ID, **MODEL_PRESETS["tiny"]))
    decay = [p for p in model.parameters() if p.ndim >= 2]
    rest = [p for p in model.parameters() if p.ndim < 2]
    rng = np.random.default_rng(0)

    def step_fn(opt, sched, idx, timed=True):
        labels = data.labels[idx].copy()
        labels[rng.random(len(idx)) < 0.1] = 10
        t0 = time.perf_counter()
        full, mask, lab = _gpt2_inputs(data.batch.subset(idx), labels, wcfg)
        loss = model(input_ids=full, attention_mask=mask, labels=lab).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        return time.perf_counter() - t0, int((lab != -100).sum())

    def make(steps):
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05},
                                 {"params": rest, "weight_decay": 0.0}], lr=args.lr,
                                betas=(0.9, 0.95))
        cfg = TrainConfig(steps=steps, warmup=30)
        return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_at(s, cfg))

    state = {k: v.clone() for k, v in model.state_dict().items()}
    opt, sched = make(args.calibration)
    times = [step_fn(opt, sched, rng.choice(len(data), args.batch_size, replace=False))[0]
             for _ in range(args.calibration)]
    model.load_state_dict(state)
    steps = max(int(args.budget / float(np.median(times[1:]))), 10)
    opt, sched = make(steps)
    model.train()
    elapsed, rates, step = 0.0, [], 0
    from tqdm import tqdm
    order = rng.permutation(len(data))
    with tqdm(total=steps, desc="gpt2", unit="step") as bar:
        while step < steps and elapsed < args.budget:
            lo = (step * args.batch_size) % (len(order) - args.batch_size)
            dt, n = step_fn(opt, sched, order[lo:lo + args.batch_size])
            elapsed += dt
            rates.append(n / dt)
            step += 1
            bar.update(1)
    return {"steps": step, "seconds": elapsed, "tokens_per_s": float(np.median(rates)),
            "images_seen": step * args.batch_size,
            "bits_per_image_masked": _gpt2_bits(model, test, tok, wcfg, True),
            "bits_per_image": _gpt2_bits(model, test, tok, wcfg, False),
            "parameters": sum(p.numel() for p in model.parameters())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--dataset", default="mnist", choices=sorted(LANGUAGE))
    ap.add_argument("--cache-dir", default=str(ROOT / ".cache" / "wavegpt"))
    ap.add_argument("--final-exponent", type=int, help="default: the data set's CPU language")
    ap.add_argument("--max-tokens", type=int, help="default: the data set's CPU language")
    ap.add_argument("--budget", type=float, default=300.0, help="training seconds per method")
    ap.add_argument("--calibration", type=int, default=12)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--test-images", type=int, default=500)
    ap.add_argument("--methods", nargs="+", default=["wavegpt", "wavegpt-own-slot",
                                                     "wavegpt-context", "gpt2"],
                    choices=sorted(VARIANTS) + ["gpt2"])
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "train_speed"))
    args = ap.parse_args(argv)

    tok = language_of(TrainConfig(dataset=args.dataset, final_exponent=args.final_exponent,
                                  max_tokens=args.max_tokens))
    data = tokenize_cached(tok, args.dataset, "train", args.cache_dir, args.data_dir)
    test = tokenize_cached(tok, args.dataset, "test", args.cache_dir, args.data_dir,
                           args.test_images)
    fe = tok.config.final_exponent
    print(f"{args.dataset}, final threshold 2^{fe}, budget {tok.config.max_tokens}: "
          f"{data.batch.lengths.mean():.0f} tokens per image; {args.budget:.0f} s per method, "
          f"torch threads {torch.get_num_threads()}")
    results = {}
    for m in args.methods:
        with tempfile.TemporaryDirectory() as tmp:
            if m == "gpt2":
                r = run_gpt2(args, tok, data, test)
            else:
                r = run_wavegpt(args, tok, test, VARIANTS[m], Path(tmp))
        results[m] = r
        print(f"{m:18s} {r['steps']:5d} steps {r['tokens_per_s']:8.0f} tok/s "
              f"{r['images_seen']:6d} images  test bits/image {r['bits_per_image']:7.1f} "
              f"(grammar-masked {r['bits_per_image_masked']:7.1f})")
    keys = ["steps", "seconds", "tokens_per_s", "images_seen", "bits_per_image",
            "bits_per_image_masked", "parameters"]
    doc = {"name": "wavegpt-train-speed",
           "description": f"{args.dataset}, final threshold 2^{fe}, token budget "
                          f"{tok.config.max_tokens}, "
                          f"{args.budget:.0f} s of training per method, batch {args.batch_size}, "
                          f"lr {args.lr}, test bits/image on {len(test)} test images",
           "methods": list(results),
           "results": {k: [results[m][k] for m in results] for k in keys}}
    write_json(Path(args.out), doc)

    def draw(fig):
        ax = fig.add_subplot(111)
        x = np.arange(len(results))
        ax.bar(x - 0.2, [results[m]["bits_per_image"] for m in results], 0.4, label="plain")
        ax.bar(x + 0.2, [results[m]["bits_per_image_masked"] for m in results], 0.4,
               label="grammar-masked")
        ax.set_xticks(x, list(results), rotation=15)
        ax.set_ylabel(f"test bits / image after {args.budget:.0f} s")
        ax.legend()
    save_plot(Path(args.out), draw)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
