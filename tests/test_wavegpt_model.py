"""WaveGPT model: forward with and without the next slot, save/load, cached decoding."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from transformers import AutoConfig, AutoModelForCausalLM  # noqa: E402

from wavecode import WaveletTokenizer  # noqa: E402
from wavecode.sample_data import load_sample_digits  # noqa: E402
from wavegpt import WaveGPTConfig, WaveGPTForCausalLM, batch_streams  # noqa: E402


@pytest.fixture(scope="module")
def data():
    images, labels = load_sample_digits()
    tok = WaveletTokenizer.from_preset("mnist", (28, 28), final_exponent=-1)
    return tok, tok.encode(images[:4]), labels[:4]


def tiny(tok, **kw):
    torch.manual_seed(0)
    return WaveGPTForCausalLM(WaveGPTConfig(tokenizer=tok.meta, n_embd=32, n_layer=2, n_head=2,
                                            n_positions=1024, **kw)).eval()


@pytest.mark.parametrize("next_slot", [True, False])
def test_forward_shapes_and_loss(data, next_slot):
    tok, batch, labels = data
    model = tiny(tok, use_next_slot=next_slot)
    inputs = batch_streams(batch, labels, model.config)
    out = model(**inputs)
    b, t = inputs["input_ids"].shape
    assert out.logits.shape == (b, t, 7)
    assert torch.isfinite(out.loss) and 1.0 < out.loss.item() < 3.0   # ~log 7 untrained
    if next_slot:
        with pytest.raises(ValueError, match="next_slots"):
            model(**{k: v for k, v in inputs.items() if k != "next_slots"})


def test_next_slot_changes_the_prediction(data):
    tok, batch, labels = data
    model = tiny(tok, use_next_slot=True)
    inputs = batch_streams(batch, labels, model.config)
    other = dict(inputs, next_slots=inputs["next_slots"].roll(1, dims=1))
    assert not torch.allclose(model(**inputs).logits, model(**other).logits)


def test_legal_mask_renormalises(data):
    tok, batch, labels = data
    model = tiny(tok)
    inputs = batch_streams(batch, labels, model.config)
    mask = torch.zeros(inputs["input_ids"].shape + (7,), dtype=torch.bool)
    mask[..., 2:5] = True
    out = model(**inputs, legal_mask=mask)
    probs = out.logits.softmax(-1)
    assert torch.allclose(probs[..., 2:5].sum(-1), torch.ones(probs.shape[:2]))


def test_save_pretrained_round_trip(tmp_path, data):
    tok, batch, labels = data
    model = tiny(tok)
    model.save_pretrained(tmp_path / "m")
    cfg = AutoConfig.from_pretrained(tmp_path / "m")
    assert isinstance(cfg, WaveGPTConfig) and cfg.tokenizer == tok.meta
    again = AutoModelForCausalLM.from_pretrained(tmp_path / "m").eval()
    assert isinstance(again, WaveGPTForCausalLM)
    inputs = batch_streams(batch, labels, model.config)
    assert torch.allclose(model(**inputs).logits, again(**inputs).logits, atol=1e-6)
    assert WaveletTokenizer.from_meta(cfg.tokenizer).config == tok.config


def test_incremental_decoding_with_cache_equals_full_forward(data):
    tok, batch, labels = data
    model = tiny(tok)
    inputs = batch_streams(batch.subset([0]), labels[:1], model.config)
    n = int(inputs["attention_mask"].sum())
    full = model(**{k: (v[:, :n] if k != "exponents" else v) for k, v in inputs.items()
                    if k != "labels"}).logits
    past = None
    steps = []
    with torch.no_grad():
        for j in range(n):
            out = model(input_ids=inputs["input_ids"][:, j:j + 1],
                        slots=inputs["slots"][:, j:j + 1],
                        next_slots=inputs["next_slots"][:, j:j + 1],
                        exponents=inputs["exponents"], past_key_values=past, use_cache=True)
            past = out.past_key_values
            steps.append(out.logits)
    assert torch.allclose(torch.cat(steps, 1), full, atol=1e-5)


def test_batching_layout(data):
    tok, batch, labels = data
    cfg = WaveGPTConfig(tokenizer=tok.meta)
    inp = batch_streams(batch, labels, cfg)
    s0 = batch.stream(0)
    n = len(s0)
    assert inp["input_ids"][0, 0].item() == cfg.class_token(labels[0])
    assert np.array_equal(inp["input_ids"][0, 1:n].numpy(), s0[:-1])
    assert np.array_equal(inp["labels"][0, :n].numpy(), s0)
    assert np.array_equal(inp["next_slots"][0, :n].numpy(), batch.stream_slots(0))
    assert (inp["slots"][0, 0] == -1).all()
    assert (inp["labels"][0, n:] == -100).all()


def test_a_few_steps_lower_the_loss(data):
    tok, batch, labels = data
    model = tiny(tok).train()
    inputs = batch_streams(batch, labels, model.config)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for _ in range(15):
        loss = model(**inputs).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]
    assert not any("wpe" in n for n, _ in model.named_parameters())  # no absolute positions


def test_grammar_masked_loss_is_lower_and_masks_are_exact(data):
    from wavegpt.batching import legal_masks
    tok, batch, labels = data
    model = tiny(tok)
    inputs = batch_streams(batch, labels, model.config)
    masks = legal_masks(batch, tok, inputs["input_ids"].shape[1])
    for i in range(len(batch)):
        s = torch.from_numpy(batch.stream(i).astype(np.int64))
        assert masks[i, torch.arange(len(s)), s].all()          # every real token is legal
        assert masks[i, len(s):].all()                       # padding rows stay open
    assert (~masks).any()                                    # and the grammar removes options
    plain = model(**inputs).loss
    masked = model(**inputs, legal_mask=masks).loss
    assert masked < plain
