"""The codec's numba lifting transforms against a slow, obvious numpy reference: CDF 9/7 and
LeGall 5/3 with whole-sample symmetric extension (JPEG 2000's), any length, odd too."""
import numpy as np
import pytest

from wavecode._lifting import _A, _B, _D, _G, _HI, _LO, _fwd2d, _inv2d, _inv2d_par

# (step coefficient or the 5/3 step's name, samples it updates: 1 odd / 0 even)
STEPS_97 = [(_A, 1), (_B, 0), (_G, 1), (_D, 0)]
STEPS_53 = [("predict", 1), ("update", 0)]


def _mirror(i, n):
    """Whole-sample symmetric extension: x[-1] = x[1], x[n] = x[n - 2]."""
    return -i if i < 0 else (2 * (n - 1) - i if i >= n else i)


def _step(t, coef, parity, sign):
    n = len(t)
    for r in range(parity, n, 2):
        s = t[_mirror(r - 1, n)] + t[_mirror(r + 1, n)]
        if coef == "predict":
            t[r] -= sign * np.floor(s / 2.0)
        elif coef == "update":
            t[r] += sign * np.floor((s + 2.0) / 4.0)
        else:
            t[r] += sign * coef * s


def ref_fwd_1d(x, reversible):
    """Lifting on the interleaved signal, then the low (even) half, then the high (odd) half."""
    t = np.array(x, np.float64)
    if len(t) < 2:
        return t
    for coef, parity in STEPS_53 if reversible else STEPS_97:
        _step(t, coef, parity, 1.0)
    lo, hi = (1.0, 1.0) if reversible else (_LO, _HI)
    return np.concatenate([t[0::2] * lo, t[1::2] * hi])


def ref_fwd_2d(x, levels, reversible):
    """Per level: the rows, then the columns of the current low-pass region."""
    x = np.array(x, np.float64)
    h, w = x.shape
    for _ in range(levels):
        for r in range(h):
            x[r, :w] = ref_fwd_1d(x[r, :w], reversible)
        for c in range(w):
            x[:h, c] = ref_fwd_1d(x[:h, c], reversible)
        h, w = (h + 1) // 2, (w + 1) // 2
    return x


SHAPES = [(1, 1), (1, 7), (2, 2), (3, 5), (5, 3), (8, 8), (17, 33), (31, 16), (64, 45)]


@pytest.mark.parametrize("reversible", [False, True])
@pytest.mark.parametrize("shape", SHAPES)
def test_lifting_equals_the_reference_and_inverts(shape, reversible, rng):
    h, w = shape
    levels = 0
    while levels < 5 and -(-min(h, w) // (1 << (levels + 1))) >= 2:
        levels += 1
    if reversible:
        x = rng.integers(-128, 128, shape).astype(np.float64)
    else:
        x = rng.standard_normal(shape) * 40
    want = ref_fwd_2d(x, levels, reversible)
    got = x.ravel().copy()
    tmp = np.empty(h * w + max(h, w) + 2)
    _fwd2d(got, h, w, levels, reversible, tmp)
    # the same sums in the same order: the same bits, float or integer
    assert np.array_equal(got.reshape(h, w), want)
    _inv2d(got, h, w, levels, reversible, tmp)
    if reversible:
        assert np.array_equal(got.reshape(h, w), x)     # lossless: exactly back
    else:
        np.testing.assert_allclose(got.reshape(h, w), x, rtol=0, atol=1e-9)


def test_unit_synthesis_norm_makes_the_97_near_orthonormal(rng):
    """Scaled to unit synthesis norm, a deep 9/7 keeps energy within a few per cent."""
    x = rng.standard_normal((64, 64))
    got = x.ravel().copy()
    _fwd2d(got, 64, 64, 4, False, np.empty(64 * 64 + 66))
    assert 0.9 < (got ** 2).sum() / (x ** 2).sum() < 1.1


@pytest.mark.parametrize("reversible", [False, True])
@pytest.mark.parametrize("shape,levels", [((1, 1), 0), ((1, 9), 3), ((17, 33), 4), ((64, 40), 5),
                                          ((3, 5), 1)])
def test_parallel_inverse_is_the_serial_one_to_the_bit(rng, shape, levels, reversible):
    h, w = shape
    x = (rng.integers(-300, 300, shape).astype(np.float64) if reversible else
         rng.standard_normal(shape) * 40).ravel()
    want = x.copy()
    _inv2d(want, h, w, levels, reversible, np.empty(h * w + max(h, w) + 2))
    for parts in (1, 2, 3, 7, 50):             # more parts than columns or rows: empty ones
        got = x.copy()
        _inv2d_par(got, h, w, levels, reversible, parts)
        assert np.array_equal(got, want), parts
