"""The baseline tokenizations: one-level DWT in torch, the band-code VQ-VAE, the pixel palette."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pywt = pytest.importorskip("pywt")

from wavegpt.band_dwt import OneLevelDWT  # noqa: E402
from wavegpt.batching import batch_codes  # noqa: E402
from wavegpt.configuration_bandvq import BandVQConfig  # noqa: E402
from wavegpt.configuration_wavegpt import WaveGPTConfig  # noqa: E402
from wavegpt.modeling_bandvq import BandVQModel, VectorQuantizer  # noqa: E402
from wavegpt.tokenizers import (BandVQTokenizer, PixelTokenizer, load_tokenizer,  # noqa: E402
                                tokenizer_from_meta)

SMALL = dict(codebook_size=16, code_dim=4, hidden=8)


@pytest.mark.parametrize("wavelet", ["haar", "db8", "bior4.4"])
@pytest.mark.parametrize("shape", [(28, 28), (16, 24)])
def test_dwt_matches_pywavelets_and_inverts(wavelet, shape):
    rng = np.random.default_rng(0)
    x = rng.random((2, 3) + shape)
    dwt = OneLevelDWT(wavelet, *shape)
    bands = dwt(torch.tensor(x, dtype=torch.float32))                  # (2, 4, 3, h, w)
    ca, (ch, cv, cd) = pywt.dwt2(x, wavelet, mode="periodization")
    for k, ref in enumerate((ca, ch, cv, cd)):                         # LL, LH, HL, HH
        np.testing.assert_allclose(bands[:, k].numpy(), ref, atol=1e-5)
    np.testing.assert_allclose(dwt.inverse(bands).numpy(), x, atol=1e-5)


def test_dwt_rejects_odd_sides_and_unknown_wavelets():
    with pytest.raises(ValueError, match="even side"):
        OneLevelDWT("haar", 27, 28)
    with pytest.raises(ValueError, match="unknown wavelet"):
        OneLevelDWT("nope", 28, 28)


def test_quantizer_nearest_codes_match_brute_force():
    torch.manual_seed(0)
    vq = VectorQuantizer(3, 10, 5)
    flat = torch.randn(3, 50, 5)
    idx = vq.nearest(flat)
    e = vq.codebook.detach().numpy()
    ref = np.stack([((flat[g].numpy()[:, None] - e[g][None]) ** 2).sum(-1).argmin(1)
                    for g in range(3)])
    np.testing.assert_array_equal(idx.numpy(), ref)
    np.testing.assert_array_equal(vq.lookup(idx).detach().numpy(),
                                  np.stack([e[g][ref[g]] for g in range(3)]))


def test_ema_codebook_moves_to_the_mean_of_its_vectors_and_dead_codes_restart():
    torch.manual_seed(0)
    vq = VectorQuantizer(1, 4, 2, ema=True, decay=0.0, dead_threshold=0.5)
    vq.codebook.data[:] = torch.tensor([[[0.0, 0.0], [10.0, 10.0], [50.0, 50.0], [99.0, 99.0]]])
    vq.initialized.fill_(1.0)
    flat = torch.tensor([[[0.5, 0.0], [-0.5, 1.0], [9.0, 10.0], [11.0, 11.0]]])
    idx = vq.nearest(flat)
    np.testing.assert_array_equal(idx.numpy(), [[0, 0, 1, 1]])
    restarted = vq._update(flat, idx)
    # decay 0: the statistics are this batch's; used codes become the means of their vectors
    np.testing.assert_allclose(vq.codebook.data[0, 0].numpy(), [0.0, 0.5], atol=1e-4)
    np.testing.assert_allclose(vq.codebook.data[0, 1].numpy(), [10.0, 10.5], atol=1e-4)
    # codes 2 and 3 got no vector: restarted at vectors of the batch
    assert restarted == 2
    batch = {tuple(v) for v in flat[0].numpy().round(4)}
    for k in (2, 3):
        assert tuple(vq.codebook.data[0, k].numpy().round(4)) in batch


def test_straight_through_quantizer_trains_its_codebook_by_gradient():
    torch.manual_seed(0)
    vq = VectorQuantizer(1, 4, 2, ema=False)
    assert vq.codebook.requires_grad
    vq.train()
    q, idx, loss, _ = vq(torch.randn(2, 1, 2, 3, 3, requires_grad=True))
    loss.backward()
    assert vq.codebook.grad is not None and vq.codebook.grad.abs().sum() > 0
    assert q.shape == (2, 1, 2, 3, 3) and idx.shape == (2, 1, 3, 3)


def test_bandvq_forward_backward_and_every_band_learns():
    torch.manual_seed(0)
    model = BandVQModel(BandVQConfig(image_shape=(16, 16, 1), **SMALL))
    model.train()
    out = model(torch.rand(4, 1, 16, 16))
    assert torch.isfinite(out["loss"]) and out["band_l1"].shape == (4,)
    assert out["codes"].shape == (4, 4, 4, 4)
    out["loss"].backward()
    for nets in (model.encoders, model.decoders):
        assert len(nets) == 4
        for net in nets:                      # one VQ-VAE per band, each gets gradient
            assert net[0].weight.grad.abs().sum() > 0


def test_bandvq_save_pretrained_round_trip(tmp_path):
    from transformers import AutoModel
    torch.manual_seed(0)
    model = BandVQModel(BandVQConfig(image_shape=(16, 16, 3), wavelet="db8", **SMALL))
    model.train()
    model(torch.rand(8, 3, 16, 16))           # initialises the codebooks from data
    model.eval()
    images = (np.random.default_rng(1).random((5, 16, 16, 3)) * 255).astype(np.uint8)
    codes = model.encode(images)
    assert codes.shape == (5, 4, 4, 4) and codes.max() < 16
    model.save_pretrained(tmp_path)
    again = AutoModel.from_pretrained(tmp_path)
    assert isinstance(again, BandVQModel) and again.config.wavelet == "db8"
    np.testing.assert_array_equal(again.encode(images), codes)
    np.testing.assert_array_equal(again.decode(codes), model.decode(codes))
    assert again.decode(codes).shape == (5, 16, 16, 3)


def test_bandvq_rejects_bad_settings_shapes_and_codes():
    with pytest.raises(ValueError, match="divisible"):
        BandVQModel(BandVQConfig(image_shape=(14, 14, 1), **SMALL))
    with pytest.raises(ValueError, match="quantizer"):
        BandVQModel(BandVQConfig(image_shape=(16, 16, 1), quantizer="kmeans", **SMALL))
    model = BandVQModel(BandVQConfig(image_shape=(16, 16, 1), **SMALL)).eval()
    with pytest.raises(ValueError, match=r"\(N, 16, 16\)"):
        model.encode(np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(ValueError, match="codes must be in"):
        model.decode(np.full((1, 4, 4, 4), 16))
    with pytest.raises(ValueError, match="shape"):
        model.decode(np.zeros((1, 4, 4), np.int64))


def test_pixel_palette_256_grey_is_lossless_and_kmeans_finds_the_levels(tmp_path):
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (6, 8, 8), dtype=np.uint8)
    tok = PixelTokenizer.fit(grey, 256)
    assert tok.n_tokens == 256 and tok.tokens_per_image == 64
    np.testing.assert_array_equal(tok.decode(tok.encode(grey)), grey)
    four = rng.choice(np.array([0, 60, 180, 255], np.uint8), (10, 8, 8))
    tok4 = PixelTokenizer.fit(four, 4)
    np.testing.assert_array_equal(tok4.palette[:, 0], [0, 60, 180, 255])
    np.testing.assert_array_equal(tok4.decode(tok4.encode(four)), four)
    tok4.save(tmp_path / "pix")
    again = load_tokenizer(tmp_path / "pix")
    np.testing.assert_array_equal(again.encode(four), tok4.encode(four))
    assert tokenizer_from_meta(tok4.meta).fingerprint() == tok4.fingerprint()


def test_pixel_encoding_is_the_nearest_palette_colour():
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 256, (4, 6, 6, 3), dtype=np.uint8)
    tok = PixelTokenizer.fit(rgb, 8, seed=1)
    codes = tok.encode(rgb)
    d = ((rgb.reshape(-1, 1, 3).astype(float) - tok.palette[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(codes.ravel(), d.argmin(1))
    grey = rng.integers(0, 256, (3, 5, 5), dtype=np.uint8)
    tg = PixelTokenizer.fit(grey, 5)
    d = (grey.reshape(-1, 1).astype(float) - tg.palette[None, :, 0]) ** 2
    np.testing.assert_array_equal(tg.encode(grey).ravel(), d.argmin(1))
    with pytest.raises(ValueError, match="tokens must be in"):
        tg.decode(np.full((1, 25), 5))
    with pytest.raises(ValueError, match="shape"):
        tg.decode(np.zeros((1, 24), np.int64))
    with pytest.raises(ValueError, match="takes images"):
        tg.encode(rgb)


def test_grid_slots_are_band_row_column_in_band_major_raster_order():
    model = BandVQModel(BandVQConfig(image_shape=(16, 16, 1), **SMALL)).eval()
    tok = BandVQTokenizer(model)
    s = tok.slots
    assert s.shape == (64, 7)
    np.testing.assert_array_equal(s[:, 4], np.repeat(np.arange(4), 16))      # band
    np.testing.assert_array_equal(s[:16, 1], np.repeat(np.arange(4), 4))     # row
    np.testing.assert_array_equal(s[:16, 2], np.tile(np.arange(4), 4))       # column
    assert (s[:, [0, 3, 5, 6]] == 0).all()


def test_batch_codes_shifts_tokens_behind_the_class_token():
    cfg = WaveGPTConfig(tokenizer={"kind": "pixel"}, n_tokens=16, num_classes=10)
    slots = PixelTokenizer(np.arange(16)[:, None] * 16, (2, 3)).slots
    codes = np.array([[1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12]])
    inp = batch_codes(codes, [3, 10], cfg, slots)
    np.testing.assert_array_equal(inp["input_ids"][:, 0], [cfg.class_token(3),
                                                           cfg.class_token(10)])
    assert cfg.class_token(0) == 17 and cfg.pad_id == 16 and cfg.vocab_size == 16 + 1 + 11
    np.testing.assert_array_equal(inp["input_ids"][:, 1:], codes[:, :-1])
    np.testing.assert_array_equal(inp["labels"], codes)
    assert (inp["slots"][:, 0] == -1).all()
    np.testing.assert_array_equal(inp["slots"][0, 1:], slots[:-1])
    np.testing.assert_array_equal(inp["next_slots"][1], slots)
