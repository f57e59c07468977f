"""Sampling speed: wavegpt's loop (static KV cache, numba grammar state) against HF ``generate()``
with a LogitsProcessor doing the same grammar masking (DynamicCache), same model, same run.

With the float32 cache both draw the same streams for the same seed (tested in
tests/test_wavegpt_sampling.py), so the comparison is work for work. Ours is also timed with its
keys and values stored as int16 or int8 with a scale per vector (``kv_cache``), with the
fraction of its streams that equal the float32 cache's (same seeds). Reports tokens/s and
images/s at batch 1 and 64 (medians of ``--repeats``), writes CompressAI-style JSON and a bar
plot.

Also measured, same run: the *attention floor* -- the time of the attention reads alone (one
query per row over the filled float32 key/value cache, every layer, every step of the same
streams) with the static cache's fused kernel, and with torch's
``scaled_dot_product_attention`` for comparison. Any exact decoder with a float32 cache pays
about the floor; it also pays the matrix products of the blocks and the head (measured alone
too, the model's weights, one position per row), so HF's time divided by the two together
bounds the speed-up of an exact decoder.

    python benchmarks/sampling_speed.py --checkpoint runs/mnist-tiny
    python benchmarks/sampling_speed.py              # an untrained tiny model, 480-token streams
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from wavecode import WaveletTokenizer  # noqa: E402
from wavegpt import WaveGPTConfig, WaveGPTForCausalLM  # noqa: E402
from wavegpt.hf_generate import generate_hf  # noqa: E402
from wavegpt.sample import sample  # noqa: E402
from wavegpt.train import MODEL_PRESETS  # noqa: E402

from _common import save_plot, write_json  # noqa: E402


def attention_floor(model, batch_size: int, steps: int, repeats: int, fused: bool) -> float:
    """Seconds for the attention reads alone of ``steps`` decoding steps (median of repeats):
    one query per row over the filled float32 cache, every layer, with the static cache's fused
    kernel (``fused``) or with torch's ``scaled_dot_product_attention``."""
    from torch.nn import functional as F

    from wavegpt._attention import _attend_last

    cfg = model.config
    hd = cfg.n_embd // cfg.n_head
    k = torch.randn(cfg.n_layer, batch_size, cfg.n_head, steps + 1, hd)
    v = torch.randn_like(k)
    q = torch.randn(batch_size, cfg.n_head, 1, hd)
    kt, vt = k.transpose(3, 4).contiguous().numpy(), v.transpose(3, 4).contiguous().numpy()
    qkv = torch.randn(batch_size, 3 * cfg.n_embd).numpy()      # the new position's q, k, v
    out = np.empty((batch_size, cfg.n_head, hd), np.float32)
    valid = np.ones((batch_size, steps + 1), np.bool_)
    rows = np.arange(batch_size)
    scale = np.float32(hd ** -0.5)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        for s in range(1, steps + 1):
            for layer in range(cfg.n_layer):
                if fused:
                    _attend_last(qkv, kt[layer], vt[layer], valid, s + 1, scale, out, rows)
                else:
                    F.scaled_dot_product_attention(q, k[layer, :, :, :s + 1],
                                                   v[layer, :, :, :s + 1])
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def dense_floor(model, batch_size: int, steps: int, repeats: int) -> float:
    """Seconds for the matrix products alone of ``steps`` decoding steps (median of repeats):
    every block's four (query/key/value, projection, MLP in and out) and the output head, one
    new position per row, the model's own weights."""
    c = model.config.n_embd
    x = torch.randn(batch_size, c)
    hid = torch.randn(batch_size, model.transformer.h[0].mlp.c_fc.weight.shape[1])
    head = model.lm_head.weight
    # (bias, weight, input) of every product, looked up once: only the arithmetic is timed
    products = [(m.bias, m.weight, inp) for blk in model.transformer.h
                for m, inp in ((blk.attn.c_attn, x), (blk.attn.c_proj, x), (blk.mlp.c_fc, x),
                               (blk.mlp.c_proj, hid))]
    times = []
    with torch.no_grad():
        for _ in range(repeats):
            t = time.perf_counter()
            for _ in range(steps):
                for bias, weight, inp in products:
                    torch.addmm(bias, inp, weight)
                torch.nn.functional.linear(x, head)
            times.append(time.perf_counter() - t)
    return float(np.median(times))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", help="run folder (default: an untrained tiny model)")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 64])
    ap.add_argument("--max-tokens", type=int, default=480,
                    help="tokens per stream (about the mean MNIST stream at 2^-1); 0: no cap, "
                         "streams end where the grammar or the longest training stream does")
    ap.add_argument("--top-k", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--kv-caches", nargs="+", default=["float32", "int16", "int8"],
                    choices=["float32", "int16", "int8"],
                    help="the sampler's key/value storage to measure (float32 is exact)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "sampling_speed"))
    args = ap.parse_args(argv)

    if args.checkpoint:
        model = WaveGPTForCausalLM.from_pretrained(Path(args.checkpoint) / "model")
        name = Path(args.checkpoint).name
    else:
        tok = WaveletTokenizer.from_preset("mnist", (28, 28), final_exponent=-1)
        torch.manual_seed(0)
        model = WaveGPTForCausalLM(WaveGPTConfig(tokenizer=tok.meta, max_side=32,
                                                 max_levels=tok.levels, max_planes=32,
                                                 **MODEL_PRESETS["tiny"]))
        name = "untrained tiny"
    model.eval()
    print(f"model: {name}, {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters, "
          f"torch threads {torch.get_num_threads()}")
    caches = args.kv_caches
    rows = {"batch_size": [], "hf_tokens_per_s": [], "hf_images_per_s": [], "tokens": [],
            "hf_ms_per_step": [], "attention_floor_ms_per_step": [],
            "sdpa_attention_ms_per_step": [], "dense_ms_per_step": [], "speedup_bound": []}
    for kv in caches:       # float32 keeps the old names: ours_*, speedup
        tag = "" if kv == "float32" else f"_{kv}"
        for key in (f"ours{tag}_tokens_per_s", f"ours{tag}_images_per_s",
                    f"ours{tag}_ms_per_step", f"speedup{tag}"):
            rows[key] = []
        if kv != "float32":
            rows[f"identical_streams{tag}"] = []
    for bs in args.batch_sizes:
        classes = np.arange(bs) % 10
        exps = np.full(bs, 1)
        fns = {kv: (lambda s, kv=kv: sample(model, classes, exponents=exps, top_k=args.top_k,
                                            seed=s, max_tokens=args.max_tokens, kv_cache=kv))
               for kv in caches}
        fns["hf"] = lambda s: generate_hf(model, classes, exps, top_k=args.top_k, seed=s,
                                          max_tokens=args.max_tokens)
        for fn in fns.values():
            fn(0)                                           # warm-up (JIT, allocator)
        # all alternate, repeat by repeat: this machine's speed drifts by tens of per cent over
        # a minute, and a drift then hits each alike
        times, ntok, streams = {label: [] for label in fns}, {}, {label: [] for label in fns}
        for r in range(args.repeats):
            for label, fn in fns.items():
                t = time.perf_counter()
                batch, _ = fn(r + 1)
                times[label].append(time.perf_counter() - t)
                ntok[label] = int(batch.lengths.sum())
                streams[label] += [batch.stream(i).tobytes() for i in range(bs)]
                steps = int(batch.lengths.max())          # decoding steps of the batch
        t_h, n_h = float(np.median(times["hf"])), ntok["hf"]
        t_att = attention_floor(model, bs, steps, args.repeats, fused=True)
        t_sdpa = attention_floor(model, bs, steps, args.repeats, fused=False)
        t_dense = dense_floor(model, bs, steps, args.repeats)
        rows["batch_size"].append(bs)
        rows["tokens"].append(ntok[caches[0]])
        rows["hf_tokens_per_s"].append(n_h / t_h)
        rows["hf_images_per_s"].append(bs / t_h)
        rows["hf_ms_per_step"].append(1e3 * t_h / steps)
        rows["attention_floor_ms_per_step"].append(1e3 * t_att / steps)
        rows["sdpa_attention_ms_per_step"].append(1e3 * t_sdpa / steps)
        rows["dense_ms_per_step"].append(1e3 * t_dense / steps)
        rows["speedup_bound"].append(t_h / (t_att + t_dense))
        print(f"batch {bs:3d}: HF generate {n_h / t_h:8.0f} tok/s {bs / t_h:7.2f} img/s, "
              f"{1e3 * t_h / steps:.2f} ms per step")
        for kv in caches:
            tag = "" if kv == "float32" else f"_{kv}"
            t_o, n_o = float(np.median(times[kv])), ntok[kv]
            rows[f"ours{tag}_tokens_per_s"].append(n_o / t_o)
            rows[f"ours{tag}_images_per_s"].append(bs / t_o)
            rows[f"ours{tag}_ms_per_step"].append(1e3 * t_o / steps)
            rows[f"speedup{tag}"].append((n_o / t_o) / (n_h / t_h))
            same = ""
            if kv != "float32" and "float32" in caches:
                frac = float(np.mean([a == b for a, b in zip(streams[kv], streams["float32"])]))
                rows[f"identical_streams{tag}"].append(frac)
                same = f", {100 * frac:.0f} % of streams identical to the float32 cache's"
            print(f"           ours, {kv:7s} cache: {n_o / t_o:8.0f} tok/s {bs / t_o:7.2f} img/s, "
                  f"{1e3 * t_o / steps:.2f} ms per step, {(n_o / t_o) / (n_h / t_h):.2f}x{same}")
        print(f"           attention reads alone {1e3 * t_att / steps:.2f} ms (with SDPA "
              f"{1e3 * t_sdpa / steps:.2f} ms), matrix products alone "
              f"{1e3 * t_dense / steps:.2f} ms -> at most {t_h / (t_att + t_dense):.2f}x over "
              f"HF with a float32 model and cache")
    doc = {"name": "wavegpt-sampling",
           "description": f"sampling speed, {name}, top-k {args.top_k}, streams "
                          + (f"capped at {args.max_tokens} tokens" if args.max_tokens else
                             "not capped") + "; ours: static KV cache + numba grammar, "
                          f"keys and values stored as {', '.join(caches)} (ours_* / "
                          "speedup: float32; identical_streams_*: the fraction of streams "
                          "equal to the float32 cache's, same seeds); "
                          "hf: generate() + grammar LogitsProcessor (DynamicCache); attention "
                          "floor: the fused kernel over the float32 cache alone (and SDPA's time for "
                          "the same reads); dense: the matrix products alone; bound: hf / "
                          "(attention floor + dense); all samplers alternate; medians of "
                          f"{args.repeats}", "results": rows}
    write_json(Path(args.out), doc)

    def draw(fig):
        ax = fig.add_subplot(111)
        x = np.arange(len(rows["batch_size"]))
        w = 0.8 / (len(caches) + 1)
        for n, kv in enumerate(caches):
            tag = "" if kv == "float32" else f"_{kv}"
            ax.bar(x - 0.4 + w * (n + 0.5), rows[f"ours{tag}_tokens_per_s"], w,
                   label=f"wavegpt, {kv} cache")
        ax.bar(x + 0.4 - w / 2, rows["hf_tokens_per_s"], w, label="HF generate()")
        ax.set_xticks(x, [f"batch {b}" for b in rows["batch_size"]])
        ax.set_ylabel("tokens / s")
        ax.legend()
    save_plot(Path(args.out), draw)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
