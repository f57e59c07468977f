"""The numba DWT and colour/padding pipeline are bit-identical to the spec's PyWavelets pipeline."""
import numpy as np
import pytest
import pywt

import reference as ref
from wavecode import WaveletTokenizer
from wavecode._dwt import _dwt2_inplace, _idwt2_inplace, dwt_plan
from wavecode.transform import analyze, synthesize

WAVELETS = ["haar", "bior4.4", "db2", "db4", "sym5", "coif1", "bior2.2"]
SHAPES = [(32, 32, 4), (16, 48, 3), (8, 8, 2), (64, 32, 5), (4, 4, 1), (2, 2, 1), (24, 40, 3)]


@pytest.mark.parametrize("wavelet", WAVELETS)
@pytest.mark.parametrize("h,w,levels", SHAPES)
def test_dwt_bit_identical_to_pywavelets(wavelet, h, w, levels, rng):
    x = rng.integers(0, 256, (h, w)) / 255.0
    want = pywt.coeffs_to_array(pywt.wavedec2(x, wavelet, mode="periodization", level=levels))[0]
    p = dwt_plan(wavelet, h, w, levels)
    got = x.ravel().copy()
    tmp = np.empty(h * w)
    _dwt2_inplace(got, tmp, h, w, levels, p[0], p[1], p[4], p[5], p[6])
    assert np.array_equal(got.reshape(h, w), want)

    y = rng.standard_normal((h, w))
    slices = pywt.coeffs_to_array(pywt.wavedec2(np.zeros((h, w)), wavelet, mode="periodization",
                                                level=levels))[1]
    want_inv = pywt.waverec2(pywt.array_to_coeffs(y, slices, output_format="wavedec2"), wavelet,
                             mode="periodization")
    got_inv = y.ravel().copy()
    _idwt2_inplace(got_inv, tmp, h, w, levels, p[2], p[3], p[7], p[8], p[9])
    assert np.array_equal(got_inv.reshape(h, w), want_inv)


@pytest.mark.parametrize("shape,wavelet", [((28, 28), "haar"), ((28, 28), "bior4.4"),
                                           ((17, 33), "haar"), ((20, 12, 3), "bior4.4"),
                                           ((1, 5), "haar"), ((3, 5, 3), "db2")])
def test_analyze_and_synthesize_match_reference(shape, wavelet, rng):
    imgs = rng.integers(0, 256, (3,) + shape).astype(np.uint8)
    tok = WaveletTokenizer(dict_config(wavelet), shape)
    pyr = analyze(tok, imgs)
    for b in range(3):
        want, levels, _ = ref.to_pyramid(imgs[b], wavelet)
        assert levels == tok.levels
        assert np.array_equal(pyr[b], want)
    back = synthesize(tok, pyr)
    for b in range(3):
        want = ref.from_pyramid(pyr[b], wavelet, tok.levels, shape)
        assert np.allclose(back[b], want, atol=1e-12)
        # the full pyramid reconstructs the image
        assert np.allclose(back[b], imgs[b] / 255.0, atol=1e-9)


def dict_config(wavelet):
    from wavecode import TokenizerConfig
    return TokenizerConfig(wavelet=wavelet)


def test_mnist_padding_is_two_pixels_each_side():
    tok = WaveletTokenizer("mnist", (28, 28))
    assert tok.padded_shape == (32, 32) and tok.pad == (2, 2) and tok.levels == 4
    assert WaveletTokenizer("mnist", (256, 256)).levels == 7
    assert WaveletTokenizer("mnist", (1, 9)).levels == 0
