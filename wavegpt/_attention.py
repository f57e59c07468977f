"""One decoding step's attention on the CPU: one query per (row, head) over a float32 key/value
cache, fused in a numba kernel.

Why: at batch 64 the step is a batch of 256 matrix-vector products over the cache, and torch's
CPU ``scaled_dot_product_attention`` (flash kernel, blocked for long queries) reads that cache at
a fraction of this machine's memory bandwidth. Here keys and values are stored transposed,
(D, T) per head, so both products run along the contiguous time axis (vectorised over keys, no
short 32-wide reductions), and the exponentials use a vectorisable polynomial (Cephes ``expf``,
within 2 ulp) instead of a libm call per key. Results agree with SDPA to float32 rounding (the
sums are taken in another order; tested).

:func:`_attend_last_q` does the same over an int16 or int8 cache with one float32 scale per
key / value vector: half or a quarter of the bytes to read, the reads being most of a step.

Both products take four rows of the cache per pass (four streams in flight, a quarter of the
loads and stores of the running scores). Each (row, head) reads 2 x D short rows of the cache
(T of T_max positions), too short for the hardware prefetcher to ramp up, so the integer
kernel asks for the next four rows' cache lines while it sums the current ones once a row
spans several lines; the float32 kernel's reads run at about the bandwidth without it.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

__all__: list[str] = []


# reassociation lets the sums vectorise; no "ninf" flag: the running maximum starts at -inf
_FAST = {"reassoc", "contract"}


@intrinsic
def _prefetch(typingctx, arr, idx):
    """Ask for the cache line holding ``arr[idx]`` (1-D) ahead of use: LLVM's prefetch, read,
    keep in all levels. No effect on results."""
    sig = types.void(arr, idx)

    def codegen(context, builder, signature, args):
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [args[1]], wraparound=False)
        if getattr(ptr.type, "is_opaque", False):       # LLVM >= 15 (numba >= 0.61)
            name = "llvm.prefetch.p0"
        else:                                           # typed pointers: the i8* overload
            ptr, name = builder.bitcast(ptr, ir.IntType(8).as_pointer()), "llvm.prefetch.p0i8"
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [ptr.type, i32, i32, i32]), name)
        builder.call(fn, [ptr, ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()
    return sig, codegen


@njit(cache=True, nogil=True, inline="always")
def _prefetch_rows(rows, c0, c1, t):  # pragma: no cover - compiled
    """Prefetch ``rows[c, :t]`` for ``c0 <= c < min(c1, D)``: the next rows' cache lines are
    requested while the current ones are summed (short strided rows defeat the hardware
    prefetcher)."""
    step = 64 // rows.itemsize
    for c in range(c0, min(c1, rows.shape[0])):
        row = rows[c]
        for u in range(0, t, step):
            _prefetch(row, u)


@njit(cache=True, nogil=True, fastmath=_FAST)
def _exp_weights(s, bits, valid_row, t):  # pragma: no cover - compiled
    """``s[u] <- exp(s[u] - max)`` over the valid keys ``u < t`` (0 for the others), in place;
    returns their sum. ``bits`` (int32, >= t) is scratch."""
    m = np.float32(-np.inf)
    for u in range(t):
        if valid_row[u]:
            m = max(m, s[u])
    # exp(x) = 2^n p(x - n ln 2), with 2^n built from its bits: no call, so it vectorises
    for u in range(t):
        x = max(s[u] - m, np.float32(-87.0))
        n = np.floor(x * np.float32(1.44269504088896341) + np.float32(0.5))
        y = x - n * np.float32(0.693359375) + n * np.float32(2.12194440e-4)
        p = np.float32(1.9875691500e-4)
        p = p * y + np.float32(1.3981999507e-3)
        p = p * y + np.float32(8.3334519073e-3)
        p = p * y + np.float32(4.1665795894e-2)
        p = p * y + np.float32(1.6666665459e-1)
        p = p * y + np.float32(5.0000001201e-1)
        s[u] = (p * y * y + y + np.float32(1.0)) if valid_row[u] else np.float32(0.0)
        bits[u] = (np.int32(n) + np.int32(127)) << 23
    two_n = bits[:t].view(np.float32)
    total = np.float32(0.0)
    for u in range(t):
        e = s[u] * two_n[u]
        s[u] = e
        total += e
    return total


@njit(cache=True, nogil=True, fastmath=_FAST, inline="always")
def _scores(q, keys, t, scale, s, ahead):  # pragma: no cover - compiled
    """``s[u] += scale * q . keys[:, u]`` for u < t; keys (D, T), float32 or integers. Four key
    rows per pass over ``s``: a quarter of the loads and stores of ``s``."""
    d = keys.shape[0]
    c = 0
    while c + 4 <= d:
        if ahead:
            _prefetch_rows(keys, c + 4, c + 8, t)
        q0, q1, q2, q3 = q[c] * scale, q[c + 1] * scale, q[c + 2] * scale, q[c + 3] * scale
        k0, k1, k2, k3 = keys[c], keys[c + 1], keys[c + 2], keys[c + 3]
        for u in range(t):
            s[u] += (q0 * np.float32(k0[u]) + q1 * np.float32(k1[u])
                     + q2 * np.float32(k2[u]) + q3 * np.float32(k3[u]))
        c += 4
    while c < d:
        qc = q[c] * scale
        krow = keys[c]
        for u in range(t):
            s[u] += qc * np.float32(krow[u])
        c += 1


@njit(cache=True, nogil=True, fastmath=_FAST, inline="always")
def _weighted_sum(w, values, t, inv, out, ahead):  # pragma: no cover - compiled
    """``out[c] = inv * sum_u w[u] * values[c, u]`` over u < t; values (D, T). Four value rows
    per pass over ``w``."""
    d = values.shape[0]
    c = 0
    while c + 4 <= d:
        if ahead:
            _prefetch_rows(values, c + 4, c + 8, t)
        v0, v1, v2, v3 = values[c], values[c + 1], values[c + 2], values[c + 3]
        a0 = a1 = a2 = a3 = np.float32(0.0)
        for u in range(t):
            wu = w[u]
            a0 += wu * np.float32(v0[u])
            a1 += wu * np.float32(v1[u])
            a2 += wu * np.float32(v2[u])
            a3 += wu * np.float32(v3[u])
        out[c], out[c + 1], out[c + 2], out[c + 3] = a0 * inv, a1 * inv, a2 * inv, a3 * inv
        c += 4
    while c < d:
        vrow = values[c]
        acc = np.float32(0.0)
        for u in range(t):
            acc += w[u] * np.float32(vrow[u])
        out[c] = acc * inv
        c += 1


@njit(cache=True, nogil=True, parallel=True, fastmath=_FAST)
def _attend_last(qkv, kt, vt, valid, t, scale, out, rows):  # pragma: no cover - compiled
    """Store the new position's key and value in the cache, then attend:
    ``out[i, j] = softmax(scale * q[i, j] . K[:t]) V[:t]`` over keys ``u < t`` with
    ``valid[rows[i], u]``, K and V those of cache row ``rows[i]``.

    qkv (N, 3C): the new position's query, key and value (GPT-2's ``c_attn`` output, heads
    side by side) of N rows; kt / vt (B, H, D, T_max): the cache, column ``t - 1`` of the
    ``rows`` written here; valid (B, T_max) bool; out (N, H, D); rows (N,) int64: the cache
    rows (``arange(B)``, or the streams still running).
    """
    n, h, d = out.shape
    width = h * d
    for r in prange(n * h):         # one (row, head) per task; its buffers are its own
        i = r // h
        j = r - i * h
        ci = rows[i]
        keys = kt[ci, j]
        values = vt[ci, j]
        for c in range(d):
            keys[c, t - 1] = qkv[i, width + j * d + c]
            values[c, t - 1] = qkv[i, 2 * width + j * d + c]
        s = np.zeros(t, np.float32)
        _scores(qkv[i, j * d:(j + 1) * d], keys, t, scale, s, False)
        inv = np.float32(1.0) / _exp_weights(s, np.empty(t, np.int32), valid[ci], t)
        _weighted_sum(s, values, t, inv, out[i, j], False)


@njit(cache=True, nogil=True)
def _quantize(x, dst, col, scales, qmax):  # pragma: no cover - compiled
    """One key or value vector ``x`` (D,) into column ``col`` of ``dst`` (D, T), int16 or int8,
    with one scale per vector (``scales[col]``: its largest magnitude / ``qmax``), rounded to
    nearest even as ``torch.round`` / ``np.rint`` do."""
    amax = np.float32(0.0)
    for c in range(x.shape[0]):
        amax = max(amax, abs(x[c]))
    inv = qmax / amax if amax > 0 else np.float32(0.0)
    for c in range(x.shape[0]):
        dst[c, col] = np.rint(x[c] * inv)
    scales[col] = amax / qmax


@njit(cache=True, nogil=True, parallel=True, fastmath=_FAST)
def _attend_last_q(qkv, kt, vt, ks, vs, valid, t, scale, out, qmax, rows):  # pragma: no cover
    """:func:`_attend_last` over an integer cache: key / value ``u`` is ``kt[..., u] * ks[u]``
    / ``vt[..., u] * vs[u]`` (one scale per (row, head, position)). The new key and value are
    quantised here (:func:`_quantize`, ``qmax`` 32767 for int16, 127 for int8).

    kt / vt (B, H, D, T_max) int16 or int8, ks / vs (B, H, T_max) float32; the rest as
    :func:`_attend_last`.
    """
    n, h, d = out.shape
    width = h * d
    # prefetching pays once a row is several cache lines long (measured: it costs time on
    # shorter rows, and on the float32 cache, whose reads already run at the bandwidth)
    ahead = t * kt.itemsize >= 384
    for r in prange(n * h):
        i = r // h
        j = r - i * h
        ci = rows[i]
        keys, values, kscale, vscale = kt[ci, j], vt[ci, j], ks[ci, j], vs[ci, j]
        lo = width + j * d
        _quantize(qkv[i, lo:lo + d], keys, t - 1, kscale, qmax)
        _quantize(qkv[i, lo + width:lo + width + d], values, t - 1, vscale, qmax)
        if ahead:
            _prefetch_rows(keys, 0, 4, t)
        s = np.zeros(t, np.float32)
        _scores(qkv[i, j * d:(j + 1) * d], keys, t, scale, s, ahead)
        if ahead:
            _prefetch_rows(values, 0, 4, t)
        for u in range(t):
            s[u] *= kscale[u]                     # the key's scale, once per key
        inv = np.float32(1.0) / _exp_weights(s, np.empty(t, np.int32), valid[ci], t)
        for u in range(t):
            s[u] *= vscale[u]                     # the value's scale folded into its weight
        _weighted_sum(s, values, t, inv, out[i, j], ahead)
