"""Sampling: the static KV cache, rewind, HF generate() with the grammar, evaluation metrics."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from wavecode import WaveletTokenizer  # noqa: E402
from wavecode.sample_data import load_sample_digits  # noqa: E402
from wavegpt import WaveGPTConfig, WaveGPTForCausalLM, batch_streams  # noqa: E402
from wavegpt.evaluate import (class_accuracy, frechet_distance,  # noqa: E402
                              train_classifier)
from wavegpt._embedding import StepEmbedding  # noqa: E402
from wavegpt.hf_generate import generate_hf  # noqa: E402
from wavegpt.kv_cache import StaticKVDecoder  # noqa: E402
from wavegpt.sample import cut_prefix, sample, stream_limit  # noqa: E402


@pytest.fixture(scope="module")
def data():
    images, labels = load_sample_digits()
    tok = WaveletTokenizer.from_preset("mnist", (28, 28), final_exponent=0)
    return tok, tok.encode(images[:4]), labels[:4]


def tiny(tok, **kw):
    torch.manual_seed(0)
    return WaveGPTForCausalLM(WaveGPTConfig(tokenizer=tok.meta, n_embd=32, n_layer=2, n_head=2,
                                            n_positions=600, max_side=32, max_planes=16,
                                            max_levels=tok.levels, **kw)).eval()


@pytest.mark.parametrize("abs_pos,context", [(False, False), (True, False), (False, True)])
def test_static_cache_prefill_and_steps_equal_the_full_forward(data, abs_pos, context):
    tok, batch, labels = data
    model = tiny(tok, use_abs_pos=abs_pos, use_context=context)
    inp = batch_streams(batch, labels, model.config)
    assert ("next_contexts" in inp) == context
    ctx = inp.get("next_contexts")
    with torch.no_grad():
        full = model(input_ids=inp["input_ids"], slots=inp["slots"],
                     next_slots=inp["next_slots"], exponents=inp["exponents"],
                     next_contexts=ctx).logits
        emb = model.embed(inp["input_ids"], inp["slots"], inp["next_slots"], inp["exponents"],
                          ctx)
    t = emb.shape[1]
    dec = StaticKVDecoder(model, len(batch), t)
    parts = [dec.forward(emb[:, :17])] + [dec.forward(emb[:, i:i + 1]) for i in range(17, t)]
    assert torch.allclose(torch.cat(parts, 1), full, atol=1e-5)
    with pytest.raises(ValueError, match="cache holds"):
        dec.forward(emb[:, :1])


@pytest.mark.parametrize("cache", ["float32", "int16"])
def test_steps_of_the_running_rows_only(data, cache):
    """``forward(..., rows=)`` continues only the rows given (finished streams are left as
    they are): the same logits as a step of all rows, to the matrix products' rounding."""
    tok, batch, labels = data
    model = tiny(tok, use_abs_pos=True)
    inp = batch_streams(batch, labels, model.config)
    with torch.no_grad():
        emb = model.embed(inp["input_ids"], inp["slots"], inp["next_slots"], inp["exponents"])
    a = StaticKVDecoder(model, len(batch), 30, cache=cache)
    b = StaticKVDecoder(model, len(batch), 30, cache=cache)
    a.forward(emb[:, :10])
    b.forward(emb[:, :10])
    rows = np.array([0, 2, 3])
    for i in range(10, 20):
        full = a.forward(emb[:, i:i + 1])
        part = b.forward(emb[rows, i:i + 1], rows=rows)
        assert part.shape == (3, 1, full.shape[-1])
        assert torch.allclose(part, full[rows], atol=1e-5)
    assert torch.equal(b.pos, torch.tensor([20, 10, 20, 20]))   # row 1 stopped at 10
    for bad, match in [(dict(rows=np.array([0, 9, 1])), "cache rows in"),
                       (dict(rows=np.array([0])), "must be 3 cache rows")]:
        with pytest.raises(ValueError, match=match):
            b.forward(emb[rows, 20:21], **bad)


def test_left_padded_prefill_equals_each_row_alone(data):
    tok, batch, labels = data
    model = tiny(tok)
    inp = batch_streams(batch, labels, model.config)
    emb = model.embed(inp["input_ids"], inp["slots"], inp["next_slots"], inp["exponents"])
    n = [5, 9, 2, 9]
    width = max(n)
    x = torch.zeros(4, width, emb.shape[2])
    valid = torch.zeros(4, width, dtype=torch.bool)
    for i, k in enumerate(n):                         # row i: its first k positions, left-padded
        x[i, width - k:] = emb[i, :k]
        valid[i, width - k:] = True
    dec = StaticKVDecoder(model, 4, width + 1)
    got = dec.forward(x, valid)[:, -1]
    # one more step after the padded prefill (the fused kernel, padding masked)
    nxt = dec.forward(emb[:, 9:10])[:, 0]
    for i, k in enumerate(n):
        alone = StaticKVDecoder(model, 1, k + 1)
        assert torch.allclose(got[i], alone.forward(emb[i:i + 1, :k])[0, -1], atol=1e-5)
        assert torch.allclose(nxt[i], alone.forward(emb[i:i + 1, 9:10])[0, 0], atol=1e-5)


@pytest.mark.parametrize("kw", [{}, {"use_next_slot": False}, {"use_context": True}])
def test_step_embedding_equals_the_model_embedding(data, kw):
    tok, _, _ = data
    model = tiny(tok, **kw)
    rng = np.random.default_rng(0)
    b = 9
    ids = rng.integers(0, model.config.vocab_size, b)
    own = rng.integers(-1, 40, (b, 7))          # past every table's end: clamped, as embed does
    own[:3] = -1                                # no slot (the class position): the start row
    nxt = rng.integers(0, 5, (b, 7))
    ctx = rng.integers(-3, 10**6, b)
    exps = rng.integers(-20, 20, b)
    want = model.embed(torch.from_numpy(ids)[:, None], torch.from_numpy(own)[:, None],
                       torch.from_numpy(nxt)[:, None], torch.from_numpy(exps),
                       torch.from_numpy(ctx)[:, None] if model.ctx_emb is not None else None)
    got = StepEmbedding(model)(ids, own, nxt, exps, ctx)
    assert got.shape == want.shape and torch.equal(got, want)


def test_fused_and_sdpa_steps_agree(data):
    tok, batch, labels = data
    model = tiny(tok)
    inp = batch_streams(batch, labels, model.config)
    emb = model.embed(inp["input_ids"], inp["slots"], inp["next_slots"], inp["exponents"])
    out = []
    for fused in (True, False):
        dec = StaticKVDecoder(model, len(batch), 40, fused=fused)
        assert dec.fused == fused
        out.append(torch.cat([dec.forward(emb[:, :3])] +
                             [dec.forward(emb[:, i:i + 1]) for i in range(3, 40)], 1))
    assert torch.allclose(out[0], out[1], atol=1e-5)
    with pytest.raises(ValueError, match="float32 model on the CPU"):
        StaticKVDecoder(model.to(torch.bfloat16), 1, 4, fused=True)


def test_sampled_streams_are_legal_with_every_option(data):
    tok, _, _ = data
    model = tiny(tok)
    for kw in (dict(top_k=2), dict(top_p=0.5), dict(temperature=0.5, cfg=2.0)):
        # a budget past the grammar's bound: this untrained model rambles, and each stream must
        # still end exactly where the grammar says it is complete
        batch, images = sample(model, [1, 2, 3], exponents=[0, 0, 1], seed=4, max_tokens=10**5,
                               **kw)
        assert np.allclose(tok.decode(batch), images)       # decode re-checks every token
        st = tok.start(3, batch.exponents)
        for t in range(int(batch.lengths.max())):
            st.step(np.array([batch.stream(i)[t] if t < batch.lengths[i] else -1
                              for i in range(3)]))
        assert st.done.all()
    # without a budget, streams stop at the longest training stream at the latest
    batch, _ = sample(model, [1, 2], exponents=[0, 0], seed=4)
    assert batch.lengths.max() <= stream_limit(model.config, tok, [0, 0]) == 599
    with pytest.raises(ValueError, match="classes must be"):
        sample(model, [11], exponents=[0])


def test_temperature_zero_takes_the_most_likely_legal_token(data):
    tok, _, _ = data
    model = tiny(tok)
    a, _ = sample(model, [1, 2], exponents=[0, 0], seed=1, temperature=0.0, max_tokens=40)
    b, _ = sample(model, [1, 2], exponents=[0, 0], seed=2, temperature=0.0, max_tokens=40)
    assert np.array_equal(a.tokens, b.tokens)       # no draw left to the seed
    # each token is the argmax of the legal logits after the stream so far
    one = tok.with_slots(a.subset([0]))
    inputs = batch_streams(one, np.array([1]), model.config)
    inputs.pop("labels")
    logits = model(**inputs).logits[0]             # (T, 7): position t predicts token t
    legal = tok.legal_bits(one)
    mask = torch.tensor([[(int(m) >> v) & 1 for v in range(7)] for m in legal], dtype=torch.bool)
    best = logits.masked_fill(~mask, float("-inf")).argmax(-1)
    assert np.array_equal(best.numpy(), a.stream(0))


@pytest.mark.parametrize("kw,match", [(dict(top_k=-1), "top-k"), (dict(top_p=0.0), "top-p"),
                                      (dict(top_p=1.5), "top-p"),
                                      (dict(temperature=float("nan")), "temperature"),
                                      (dict(temperature=-1.0), "temperature"),
                                      (dict(cfg=-0.5), "cfg"), (dict(max_tokens=-1), "max-tokens"),
                                      (dict(frames=-1), "frames must be in 0..256"),
                                      (dict(frames=10 ** 6), "frames must be in 0..256"),
                                      (dict(seed=2 ** 64), "seed must be in 0..2")])
def test_sampling_settings_out_of_range_are_refused(data, kw, match):
    tok, _, _ = data
    with pytest.raises(ValueError, match=match):
        sample(tiny(tok), [1], exponents=[0], **kw)


@pytest.mark.parametrize("context", [False, True])
def test_hf_generate_with_the_grammar_draws_the_same_streams(data, context):
    tok, _, _ = data
    model = tiny(tok, use_context=context)
    a, ims_a = generate_hf(model, [0, 5], [0, 0], top_k=3, seed=7)
    b, ims_b = sample(model, [0, 5], exponents=[0, 0], top_k=3, seed=7)
    assert np.array_equal(a.lengths, b.lengths) and np.array_equal(a.tokens, b.tokens)


@pytest.mark.parametrize("context", [False, True])
def test_rewind_keeps_the_prefix_and_regenerates_the_tail(data, context):
    tok, _, _ = data
    model = tiny(tok, use_context=context)
    first, _ = sample(model, [2, 2, 8], exponents=[0, 1, 0], seed=1, top_k=3)
    for kw in (dict(rewind=30), dict(keep_planes=1), dict(keep_planes=0)):
        pre = cut_prefix(tok, first, **kw)
        again, images, frames = sample(model, [2, 2, 8], prefix=pre, seed=2, top_k=3,
                                       cfg=1.5, frames=4)
        assert np.array_equal(again.exponents, first.exponents)
        for i in range(3):
            assert np.array_equal(again.stream(i)[:pre.lengths[i]], pre.stream(i))
        assert np.allclose(tok.decode(again), images)
        assert frames.shape == (4, 3, 28, 28) and np.allclose(frames[-1], images)
    full = tok.with_slots(first)
    pre = cut_prefix(tok, first, keep_planes=1)
    for i in range(3):
        planes = full.plane_kinds[full.offsets[i]:full.offsets[i + 1]] >> 2
        assert pre.lengths[i] == (planes == 0).sum()
    assert cut_prefix(tok, first, rewind=10).lengths.tolist() == (first.lengths - 10).tolist()
    with pytest.raises(ValueError, match="exactly one"):
        cut_prefix(tok, first)


def test_prefixes_in_another_language_are_refused_by_name(data):
    """Streams written with other settings would fail at some "illegal token"; they are refused
    up front, naming what differs. A token budget is no difference: it only cuts streams."""
    tok, _, _ = data
    model = tiny(tok)
    images, _ = load_sample_digits()
    other = WaveletTokenizer.from_preset("mnist", (28, 28), final_exponent=-1)
    alien = other.encode(images[:2])
    with pytest.raises(ValueError, match=r"another language .*final_exponent -1 \(the model's"):
        cut_prefix(tok, alien, keep_planes=1)
    with pytest.raises(ValueError, match=r"final_exponent -1 \(the model's: 0\)"):
        sample(model, [1, 1], prefix=alien.select(np.full(2, 5)), seed=0)
    budget = WaveletTokenizer.from_preset("mnist", (28, 28), final_exponent=0, max_tokens=50)
    same = budget.encode(images[:2])
    assert same.meta != tok.meta
    again, _ = sample(model, [1, 1], prefix=cut_prefix(tok, same, rewind=10), seed=0)
    assert np.array_equal(again.stream(0)[:40], same.stream(0)[:40])


def test_frechet_distance_matches_the_closed_form():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(20000, 3))
    b = rng.normal(size=(20000, 3)) * 2.0 + 1.0
    # N(0, I) vs N(1, 4I): |mu|^2 = 3, tr = 3 + 12 - 2 * 3 * 2 = 3
    assert frechet_distance(a, b) == pytest.approx(6.0, rel=0.05)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError):
        frechet_distance(a, b[:, :2])


def test_classifier_learns_the_sample_digits():
    images, labels = load_sample_digits()
    model = train_classifier(np.tile(images, (20, 1, 1)), np.tile(labels, 20), epochs=3,
                             batch_size=32, progress=False)
    acc, per = class_accuracy(model, images, labels)
    assert acc >= 0.9 and per.shape == (10,)


def test_rewind_prefill_gives_the_logits_of_the_uninterrupted_stream(data):
    """Prefilling a prefix (left-padded, with contexts) must predict the next token exactly as
    the model does on the whole stream: compare the tail's log-probabilities."""
    from wavegpt.sample import _prefill_inputs
    tok, batch, labels = data
    model = tiny(tok, use_context=True)
    inp = batch_streams(batch, labels, model.config)
    with torch.no_grad():
        full = model(**{k: v for k, v in inp.items() if k not in ("labels", "attention_mask")})
    keep = np.array([10, 3, 25, 0])
    pre = batch.select(keep)
    st = tok.start(4, pre.exponents)
    for t in range(int(keep.max())):
        st.step(np.array([pre.stream(i)[t] if t < keep[i] else -1 for i in range(4)]))
    ids, own, nxt, ctx, valid = _prefill_inputs(
        model, tok, pre, [model.config.class_token(int(c)) for c in labels],
        st.next_slots().astype(np.int64), st.next_contexts().astype(np.int64))
    emb = model.embed(torch.from_numpy(ids), torch.from_numpy(own), torch.from_numpy(nxt),
                      torch.from_numpy(batch.exponents.astype(np.int64)), torch.from_numpy(ctx))
    got = StaticKVDecoder(model, 4, ids.shape[1]).forward(emb, torch.from_numpy(valid))[:, -1]
    for i in range(4):
        assert torch.allclose(got[i], full.logits[i, keep[i]], atol=1e-5)


def test_the_bundled_mnist_checkpoint_models_digits_and_samples_legally():
    """checkpoints/mnist-tiny (trained ~27 CPU-minutes): far fewer bits on real digits than an
    untrained model, and class-conditional samples that are legal streams."""
    from pathlib import Path

    from wavegpt.train import evaluate_bits
    from wavegpt.data import StreamDataset
    run = Path(__file__).resolve().parents[1] / "checkpoints" / "mnist-tiny"
    model = WaveGPTForCausalLM.from_pretrained(run / "model")
    tok = WaveletTokenizer.from_meta(model.config.tokenizer)
    images, labels = load_sample_digits()
    real = StreamDataset(tok.encode(images), labels)
    trained = evaluate_bits(model, real, tok, len(real))
    untrained = evaluate_bits(tiny(tok), real, tok, len(real))
    assert trained < 0.5 * untrained
    batch, images = sample(model, [3, 8], run_dir=run, temperature=0.7, cfg=2.0, seed=0,
                           max_tokens=120)
    assert batch.lengths.tolist() == [120, 120] and images.shape == (2, 28, 28)


@pytest.mark.parametrize("cache,atol", [("int16", 1e-4), ("int8", 3e-2)])
def test_quantised_cache_stays_near_the_full_forward(data, cache, atol):
    tok, batch, labels = data
    model = tiny(tok)
    inp = batch_streams(batch, labels, model.config)
    with torch.no_grad():
        full = model(input_ids=inp["input_ids"], slots=inp["slots"],
                     next_slots=inp["next_slots"], exponents=inp["exponents"]).logits
        emb = model.embed(inp["input_ids"], inp["slots"], inp["next_slots"], inp["exponents"])
    t = emb.shape[1]
    for first in (17, 1):             # a prefill of 17 positions (torch) or steps from the start
        dec = StaticKVDecoder(model, len(batch), t, cache=cache)
        parts = [dec.forward(emb[:, :first])] + [dec.forward(emb[:, i:i + 1])
                                                for i in range(first, t)]
        assert (torch.cat(parts, 1) - full).abs().max() < atol
    # the prefill's quantiser (torch) rounds as the fused kernel's (numba, tested against the
    # same numpy reference in test_attention.py)
    qmax = {"int16": 32767, "int8": 127}[cache]
    x = torch.randn(len(batch), 2, 5, 16) * torch.rand(len(batch), 2, 5, 1) * 4   # (B, H, S, D)
    x[0, 0, 0] = 0.0
    dec._store_q(dec.k, dec.k_scale, 1, x, 3, 8)
    amax = x.abs().amax(-1).numpy()
    inv = np.where(amax > 0, np.float32(qmax) / np.where(amax > 0, amax, 1), 0).astype(np.float32)
    want = np.rint(x.numpy() * inv[..., None]).transpose(0, 1, 3, 2)
    assert dec.k.dtype == {"int16": torch.int16, "int8": torch.int8}[cache]
    assert np.array_equal(dec.k[1, ..., 3:8].numpy(), want)
    assert np.array_equal(dec.k_scale[1, ..., 3:8].numpy(), amax / np.float32(qmax))
    with pytest.raises(ValueError, match="needs the fused kernel"):
        StaticKVDecoder(model, 1, 4, fused=False, cache=cache)
    with pytest.raises(ValueError, match="cache must be one of"):
        StaticKVDecoder(model, 1, 4, cache="float16")


def test_int16_cache_draws_the_float32_streams(data):
    tok, _, _ = data
    model = tiny(tok)
    kw = dict(exponents=[0, 0, 1, 1], seed=3, top_k=3, max_tokens=300)
    exact, _ = sample(model, [1, 2, 3, 4], **kw)
    near, images = sample(model, [1, 2, 3, 4], kv_cache="int16", **kw)
    assert np.array_equal(near.tokens, exact.tokens) and np.array_equal(near.offsets,
                                                                        exact.offsets)
    # int8 perturbs the model more; its streams are still legal (decode re-checks every token)
    coarse, images = sample(model, [1, 2, 3, 4], kv_cache="int8", **kw)
    assert np.allclose(tok.decode(coarse), images)
    # rewinding: a left-padded prefill into the int16 cache (quantised by torch), then its steps
    pre = cut_prefix(tok, exact, rewind=40)
    kw.update(prefix=pre, cfg=1.5, seed=4)
    again, _ = sample(model, [1, 2, 3, 4], **kw)
    near, _ = sample(model, [1, 2, 3, 4], kv_cache="int16", **kw)
    assert np.array_equal(near.tokens, again.tokens)
