"""The numba kernels equal the slow pure-numpy reference of tests/reference.py."""
import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import reference as ref
from wavecode import TokenizerConfig, WaveletTokenizer


@st.composite
def image_cases(draw):
    h = draw(st.integers(1, 20))
    w = draw(st.integers(1, 20))
    color = draw(st.booleans())
    shape = (h, w, 3) if color else (h, w)
    wavelet = draw(st.sampled_from(["haar", "bior4.4", "db2"]))
    fe = draw(st.integers(-5, 0))
    n = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2 ** 31))
    style = draw(st.sampled_from(["noise", "sparse", "flat"]))
    r = np.random.default_rng(seed)
    if style == "noise":
        imgs = r.integers(0, 256, (n,) + shape)
    elif style == "sparse":
        imgs = np.where(r.random((n,) + shape) < 0.1, 255, 0)
    else:
        imgs = np.full((n,) + shape, r.integers(0, 256))
    return imgs.astype(np.uint8), TokenizerConfig(wavelet=wavelet, final_exponent=fe)


@given(image_cases())
def test_encode_and_decode_equal_reference(case):
    imgs, cfg = case
    tok = WaveletTokenizer(cfg, imgs.shape[1:])
    b = tok.encode(imgs)
    pyrs = tok.decode_pyramids(b)
    for i, img in enumerate(imgs):
        t, s, e = ref.encode_image(img, cfg.wavelet, cfg.final_exponent)
        assert b.exponents[i] == e
        assert np.array_equal(b.stream(i), t)
        assert np.array_equal(b.stream_slots(i), s)
        want = ref.decode_tokens(t, e, cfg.final_exponent, pyrs.shape[1:], tok.levels)
        assert np.array_equal(pyrs[i], want)
    rec = tok.decode(b)
    for i in range(len(imgs)):
        want = ref.from_pyramid(pyrs[i], cfg.wavelet, tok.levels, imgs.shape[1:3])
        assert np.allclose(rec[i], want, atol=1e-12)


@given(image_cases(), st.integers(0, 400))
def test_prefix_decode_equals_reference(case, k):
    imgs, cfg = case
    tok = WaveletTokenizer(cfg, imgs.shape[1:])
    b = tok.encode(imgs)
    pyrs = tok.decode_pyramids(b, prefix=k)
    for i in range(len(imgs)):
        want = ref.decode_tokens(b.stream(i)[:k], int(b.exponents[i]), cfg.final_exponent,
                                 pyrs.shape[1:], tok.levels)
        assert np.array_equal(pyrs[i], want)


def test_rgb_channels_interleave_within_each_subband(rng):
    tok = WaveletTokenizer(TokenizerConfig(final_exponent=-2), (16, 16, 3))
    b = tok.encode(rng.integers(0, 256, (1, 16, 16, 3)).astype(np.uint8))
    sl = b.slots
    plane0 = sl[sl[:, 0] == 0]
    # within plane 0 the channel changes only together with ... -> (subband, channel) runs
    key = plane0[:, 3] * 10 + plane0[:, 4]
    runs = [(k, c) for i, (k, c) in enumerate(zip(key, plane0[:, 5]))
            if i == 0 or (k, c) != (key[i - 1], plane0[i - 1, 5])]
    assert runs[:3] == [(0, 0), (0, 1), (0, 2)]
    assert len(runs) == len(set(runs))  # each (subband, channel) once per plane
