"""The fused one-query attention kernel of the static cache against a slow numpy reference."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from wavegpt._attention import _attend_last, _attend_last_q  # noqa: E402


def attend_reference(q, k, v, valid, t, scale):
    """softmax(scale q.K) V per (row, head) over the valid keys u < t, written out in float64;
    q (B, H, D), k / v (B, H, T, D) (not transposed), valid (B, T)."""
    b, h, d = q.shape
    out = np.zeros((b, h, d))
    for i in range(b):
        keep = np.flatnonzero(valid[i, :t])
        for j in range(h):
            scores = scale * (k[i, j, keep].astype(np.float64) @ q[i, j].astype(np.float64))
            w = np.exp(scores - scores.max())
            out[i, j] = (w / w.sum()) @ v[i, j, keep].astype(np.float64)
    return out


# head sizes: whole blocks of four rows (8), and a remainder (6)
@pytest.mark.parametrize("t,d", [(1, 8), (2, 6), (7, 8), (16, 8), (33, 6), (130, 8), (130, 6)])
def test_fused_attention_matches_the_reference(t, d):
    rng = np.random.default_rng(t)
    b, h, t_max = 3, 2, 140
    q = (rng.standard_normal((b, h, d)) * 3).astype(np.float32)     # sharp and flat softmaxes
    k = rng.standard_normal((b, h, t_max, d)).astype(np.float32)
    v = rng.standard_normal((b, h, t_max, d)).astype(np.float32)
    valid = np.ones((b, t_max), np.bool_)
    valid[1, :t // 2] = False                    # a left-padded row: its padding is not attended
    valid[:, t - 1] = True                       # the newest key is always real
    out = np.full((b, h, d), np.nan, np.float32)
    kt = np.ascontiguousarray(k.transpose(0, 1, 3, 2))                  # (B, H, D, T)
    vt = np.ascontiguousarray(v.transpose(0, 1, 3, 2))
    kt[..., t - 1] = vt[..., t - 1] = np.nan        # the new key and value come with the query
    qkv = np.concatenate([a.reshape(b, h * d) for a in (q, k[:, :, t - 1], v[:, :, t - 1])], 1)
    _attend_last(qkv, kt, vt, valid, t, np.float32(d ** -0.5), out, np.arange(b))
    assert np.array_equal(kt[..., t - 1], k[:, :, t - 1]) and \
        np.array_equal(vt[..., t - 1], v[:, :, t - 1])
    ref = attend_reference(q, k, v, valid, t, d ** -0.5)
    assert np.abs(out - ref).max() < 2e-6 * max(1.0, np.abs(ref).max())
    # keys past t, however large, play no part
    kt[..., t:] = 1e4
    vt[..., t:] = 1e4
    again = np.empty_like(out)
    _attend_last(qkv, kt, vt, valid, t, np.float32(d ** -0.5), again, np.arange(b))
    assert np.array_equal(again, out)


def test_a_subset_of_rows_attends_exactly_as_in_the_full_batch():
    """``rows`` maps the kernel's rows to cache rows: the rows given get the very outputs (and
    stored keys and values) of a full call; the other cache rows are not touched."""
    rng = np.random.default_rng(5)
    b, h, d, t_max, t = 5, 2, 8, 40, 30
    qkv = rng.standard_normal((b, 3 * h * d)).astype(np.float32)
    kt = rng.standard_normal((b, h, d, t_max)).astype(np.float32)
    vt = rng.standard_normal((b, h, d, t_max)).astype(np.float32)
    valid = np.ones((b, t_max), np.bool_)
    scale = np.float32(d ** -0.5)
    full_k, full_v, full = kt.copy(), vt.copy(), np.empty((b, h, d), np.float32)
    _attend_last(qkv, full_k, full_v, valid, t, scale, full, np.arange(b))
    rows = np.array([1, 4, 2])
    sub_k, sub_v, sub = kt.copy(), vt.copy(), np.empty((3, h, d), np.float32)
    _attend_last(qkv[rows], sub_k, sub_v, valid, t, scale, sub, rows)
    assert np.array_equal(sub, full[rows])
    assert np.array_equal(sub_k[rows], full_k[rows]) and np.array_equal(sub_v[rows], full_v[rows])
    rest = [0, 3]
    assert np.array_equal(sub_k[rest], kt[rest]) and np.array_equal(sub_v[rest], vt[rest])
    # and the integer kernel
    kq = rng.integers(-30000, 30000, (b, h, d, t_max)).astype(np.int16)
    ks = rng.uniform(1e-5, 1e-4, (b, h, t_max)).astype(np.float32)
    qfull_k, qfull_s = kq.copy(), ks.copy()
    _attend_last_q(qkv, qfull_k, qfull_k.copy(), qfull_s, ks.copy(), valid, t, scale, full,
                   np.float32(32767), np.arange(b))
    qsub_k, qsub_s = kq.copy(), ks.copy()
    _attend_last_q(qkv[rows], qsub_k, qsub_k.copy(), qsub_s, ks.copy(), valid, t, scale, sub,
                   np.float32(32767), rows)
    assert np.array_equal(qsub_k[rows], qfull_k[rows]) and np.array_equal(qsub_k[rest], kq[rest])
    assert np.array_equal(qsub_s[rows], qfull_s[rows]) and np.array_equal(qsub_s[rest], ks[rest])


def test_fused_attention_handles_extreme_scores():
    """Scores far below the maximum underflow to zero weight, not to NaN."""
    q = np.zeros((1, 1, 4), np.float32)
    q[0, 0, 0] = 1.0
    k = np.zeros((1, 1, 4, 3), np.float32)
    k[0, 0, 0] = [200.0, 0.0, -300.0]              # scores 200, 0, -300
    v = np.zeros((1, 1, 4, 3), np.float32)
    v[0, 0, 1] = [1.0, 2.0, 3.0]
    out = np.empty((1, 1, 4), np.float32)
    qkv = np.concatenate([q[0], k[0, :, :, 2], v[0, :, :, 2]], 1)          # (1, 12)
    _attend_last(qkv, k, v, np.ones((1, 3), np.bool_), 3, np.float32(1.0), out,
                 np.arange(1))
    assert np.allclose(out[0, 0], [0.0, 1.0, 0.0, 0.0], atol=1e-7)


def quantize_reference(x, qmax):
    """Per-vector symmetric quantisation, x (..., D) -> integers (..., D), scales (...): the
    largest magnitude maps to qmax, rounding to nearest even; an all-zero vector gets scale 0."""
    x = x.astype(np.float32)
    amax = np.abs(x).max(-1)
    inv = np.where(amax > 0, np.float32(qmax) / np.where(amax > 0, amax, 1), 0).astype(np.float32)
    return np.rint(x * inv[..., None]), (amax / np.float32(qmax)).astype(np.float32)


@pytest.mark.parametrize("dtype,qmax", [(np.int16, 32767), (np.int8, 127)])
# long rows (t * itemsize >= 384 bytes) take the prefetching path
@pytest.mark.parametrize("t,d", [(1, 8), (2, 6), (33, 8), (130, 6), (400, 8)])
def test_quantised_attention_matches_the_reference_over_the_stored_cache(t, d, dtype, qmax):
    rng = np.random.default_rng(t)
    b, h, t_max = 3, 2, max(140, t + 5)
    q = (rng.standard_normal((b, h, d)) * 3).astype(np.float32)
    k = (rng.standard_normal((b, h, t_max, d)) * rng.uniform(0.01, 10, (b, h, t_max, 1))
         ).astype(np.float32)                                  # vectors of very different sizes
    v = rng.standard_normal((b, h, t_max, d)).astype(np.float32)
    k[0, 0, t - 1] = 0.0                                       # an all-zero new key: scale 0
    valid = np.ones((b, t_max), np.bool_)
    valid[1, :t // 2] = False
    valid[:, t - 1] = True
    (kq, ks), (vq, vs) = quantize_reference(k, qmax), quantize_reference(v, qmax)
    kt = np.ascontiguousarray(kq.transpose(0, 1, 3, 2)).astype(dtype)     # (B, H, D, T)
    vt = np.ascontiguousarray(vq.transpose(0, 1, 3, 2)).astype(dtype)
    ks_c, vs_c = ks.copy(), vs.copy()
    kt[..., t - 1] = vt[..., t - 1] = 0                        # the kernel stores the new column
    ks_c[..., t - 1] = vs_c[..., t - 1] = np.nan
    qkv = np.concatenate([a.reshape(b, h * d) for a in (q, k[:, :, t - 1], v[:, :, t - 1])], 1)
    out = np.full((b, h, d), np.nan, np.float32)
    _attend_last_q(qkv, kt, vt, ks_c, vs_c, valid, t, np.float32(d ** -0.5), out,
                   np.float32(qmax), np.arange(b))
    # the new key and value are stored exactly as the reference quantises them
    assert np.array_equal(kt[..., t - 1], kq[:, :, t - 1].astype(dtype))
    assert np.array_equal(vt[..., t - 1], vq[:, :, t - 1].astype(dtype))
    assert np.array_equal(ks_c[..., t - 1], ks[..., t - 1]) and ks_c[0, 0, t - 1] == 0
    assert np.array_equal(vs_c[..., t - 1], vs[..., t - 1])
    # attention over the dequantised cache, to float32 rounding
    kd = kq.astype(np.float32) * ks[..., None]
    vd = vq.astype(np.float32) * vs[..., None]
    ref = attend_reference(q, kd, vd, valid, t, d ** -0.5)
    # float32 sums of t terms: rounding grows with t
    assert np.abs(out - ref).max() < 2e-6 * max(1.0, t / 130) * max(1.0, np.abs(ref).max())
    # and close to the float32 cache's: within what the quantisation moves
    exact = attend_reference(q, k, v, valid, t, d ** -0.5)
    # and near the float32 cache's result: off by an amount that shrinks with the step size
    # (sharp softmaxes here: keys up to 10x larger than unit, queries 3x)
    assert np.abs(out - exact).max() < 20 / qmax * max(1.0, np.abs(exact).max())
