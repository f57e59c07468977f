"""The wavelet language pinned by hand-computed cases (issue 2's spec)."""
import numpy as np
import pytest

import reference as ref
from wavecode import TOKEN_NAMES, TokenBatch, TokenizerConfig, WaveletTokenizer

G4, G2, INS, NSP, NSN, NA0, NA1 = range(7)
K_G4, K_G2, K_COEF, K_REF = range(4)


def tok_for(shape, final_exponent, wavelet="haar", levels=0):
    return WaveletTokenizer(TokenizerConfig(wavelet=wavelet, final_exponent=final_exponent,
                                            levels=levels), shape)


def test_token_ids_are_pinned():
    assert TOKEN_NAMES == ("Group4x4", "Group2x2", "Insignificant", "NowSignificantPos",
                           "NowSignificantNeg", "NextAccuracy0", "NextAccuracy1")


def test_worked_example():
    # T = 16, alpha = -17.45 -> NSNeg (-24), NA0 (-20); T=8 NA0 (-18); T=4 NA0 (-17); T=2 NA1 (-17.5)
    tok = tok_for((1, 1), final_exponent=1)
    b = tok.encode_pyramids(np.full((1, 1, 1, 1), -17.45))
    assert b.exponents.tolist() == [4]
    assert b.stream(0).tolist() == [NSN, NA0, NA0, NA0, NA1]
    planes = b.plane_kinds >> 2
    kinds = b.plane_kinds & 3
    assert planes.tolist() == [0, 0, 1, 2, 3]
    assert kinds.tolist() == [K_COEF, K_REF, K_REF, K_REF, K_REF]
    approx = [tok.decode_pyramids(b, prefix=k)[0, 0, 0, 0] for k in range(6)]
    assert approx == [0.0, -24.0, -20.0, -18.0, -17.0, -17.5]


def one_4x4(values: dict, final_exponent):
    pyr = np.zeros((1, 1, 4, 4))
    for (r, c), v in values.items():
        pyr[0, 0, r, c] = v
    tok = tok_for((4, 4), final_exponent)
    return tok, tok.encode_pyramids(pyr)


def test_group_rules_in_a_4x4_block():
    tok, b = one_4x4({(0, 3): 1.0}, final_exponent=0)   # one plane, T = 1
    # block splits; TL quad zero (G2, answered at the block's decision); TR quad splits:
    # (0,2) Ins, (0,3) NSPos + refinement (1.0 < 1.5 -> NA0), (1,2) Ins, (1,3) Ins; BL, BR zero
    assert b.stream(0).tolist() == [G2, INS, NSP, NA0, INS, INS, G2, G2]
    assert (b.plane_kinds & 3).tolist() == [K_G4, K_G2, K_COEF, K_REF, K_COEF, K_COEF, K_G2, K_G2]
    sl = b.slots
    assert sl[:, 1].tolist() == [0, 0, 0, 0, 1, 1, 2, 2]   # rows (group: top-left corner)
    assert sl[:, 2].tolist() == [0, 2, 3, 3, 2, 3, 0, 2]   # columns
    # a second plane: the block holds a significant coefficient, so it never groups; only
    # quads without one may
    _, b2 = one_4x4({(0, 3): 1.0}, final_exponent=-1)
    assert b2.stream(0).tolist() == [G2, INS, NSP, NA0, INS, INS, G2, G2,
                                     G2, INS, NA0, INS, INS, G2, G2]
    assert (b2.plane_kinds[8:] & 3).tolist() == [K_G2, K_COEF, K_REF, K_COEF, K_COEF, K_G2, K_G2]
    # an all-small block is one Group4x4 per plane (once something else set T0)
    _, b3 = one_4x4({(0, 0): 0.3}, final_exponent=-1)     # e = -2 < final: no plane at all
    assert b3.stream(0).tolist() == [] and b3.exponents.tolist() == [-2]


def test_group4_when_subband_holds_two_blocks():
    # 4x8 plane, levels 0: two 4x4 blocks; only the second holds a coefficient
    pyr = np.zeros((1, 1, 4, 8))
    pyr[0, 0, 3, 7] = -3.0   # e = 1, T = 2
    tok = tok_for((4, 8), final_exponent=1)
    b = tok.encode_pyramids(pyr)
    assert b.stream(0).tolist() == [G4, G2, G2, G2, INS, INS, INS, NSN, NA1]
    assert (b.plane_kinds & 3).tolist() == [K_G4, K_G4, K_G2, K_G2, K_G2, K_COEF, K_COEF, K_COEF,
                                            K_REF]


def test_reference_agrees_on_hand_cases():
    for values in ({(0, 3): 1.0}, {(2, 2): -0.7, (0, 0): 5.0}, {(1, 1): 2.5, (3, 3): -2.5}):
        tok, b = one_4x4(values, final_exponent=-2)
        pyr = tok.decode_pyramids(b)  # not needed, but checks decode runs
        assert pyr.shape == (1, 1, 4, 4)
        want = np.zeros((1, 4, 4))
        for (r, c), v in values.items():
            want[0, r, c] = v
        t, s, e = ref.encode_pyramid(want, 0, -2)
        assert b.stream(0).tolist() == t.tolist()
        assert np.array_equal(b.slots, s)


def test_mnist_subband_order_and_first_tokens():
    # LL 2x2 is one 2x2 block; then level 1 quadrants [0:2,2:4], [2:4,0:2], [2:4,2:4] ...
    tok = WaveletTokenizer("mnist", (28, 28))
    img = np.zeros((1, 28, 28), np.uint8)
    img[0, 10:18, 10:18] = 255
    b = tok.encode(img)
    sl = b.slots
    first_plane = sl[sl[:, 0] == 0]
    bands = [(lv, o) for lv, o in zip(first_plane[:, 3], first_plane[:, 4])]
    order = [bands[0]] + [bd for i, bd in enumerate(bands[1:], 1) if bd != bands[i - 1]]
    assert order == [(0, 0), (1, 1), (1, 2), (1, 3), (2, 1), (2, 2), (2, 3), (3, 1), (3, 2),
                     (3, 3), (4, 1), (4, 2), (4, 3)]


def test_all_zero_image_has_empty_stream():
    tok = WaveletTokenizer("mnist", (28, 28))
    b = tok.encode(np.zeros((2, 28, 28), np.uint8))
    assert b.lengths.tolist() == [0, 0]
    assert b.exponents.tolist() == [-4, -4]
    assert np.array_equal(tok.decode(b), np.zeros((2, 28, 28)))


def test_max_tokens_keeps_the_first_tokens(rng):
    tok = WaveletTokenizer("mnist", (28, 28))
    imgs = rng.integers(0, 256, (4, 28, 28)).astype(np.uint8)
    full = tok.encode(imgs)
    cut = tok.encode(imgs, max_tokens=100)
    assert (cut.lengths == np.minimum(full.lengths, 100)).all()
    for i in range(4):
        assert np.array_equal(cut.stream(i), full.stream(i)[:100])
    assert np.array_equal(tok.decode(cut), tok.decode(full, prefix=100))
    cfg = WaveletTokenizer.from_preset("mnist", (28, 28), max_tokens=50)
    assert cfg.encode(imgs).lengths.max() == 50


def test_token_file_round_trip(tmp_path, rng):
    tok = WaveletTokenizer("fashion-mnist", (28, 28))
    b = tok.encode(rng.integers(0, 256, (3, 28, 28)).astype(np.uint8))
    b.save(tmp_path / "t.npz")
    c = TokenBatch.load(tmp_path / "t.npz")
    assert np.array_equal(c.tokens, b.tokens) and np.array_equal(c.slots, b.slots)
    assert WaveletTokenizer.from_meta(c.meta).config == tok.config
    assert np.array_equal(WaveletTokenizer.from_meta(c.meta).decode(c), tok.decode(b))


@pytest.mark.parametrize("name,wavelet,fe,mean_tokens,max_tokens,psnr", [
    ("mnist", "haar", -3, 1360.537, 1960, 34.15),
    ("mnist", "haar", -2, 892.442, 1297, 26.30),
    ("fashion-mnist", "bior4.4", -4, 1992.4315, 3677, 35.48),
])
def test_dataset_figures(name, wavelet, fe, mean_tokens, max_tokens, psnr, request):
    """The 10k test sets: tokens per image and PSNR of the full stream on the 28x28 crop (mean
    over images). Regression figures of this implementation -- see the README for how they
    compare to the figures quoted in issue 2."""
    x, _ = request.getfixturevalue("mnist_test" if name == "mnist" else "fashion_test")
    tok = WaveletTokenizer(TokenizerConfig(wavelet=wavelet, final_exponent=fe), (28, 28))
    b = tok.encode(x)
    assert b.lengths.mean() == pytest.approx(mean_tokens, abs=1e-3)
    assert b.lengths.max() == max_tokens
    rec = tok.decode(b)
    mse = np.mean((rec - x / 255.0) ** 2, axis=(1, 2))
    assert np.mean(10 * np.log10(1 / mse)) == pytest.approx(psnr, abs=0.01)


@pytest.mark.parametrize("name,wavelet,fe,quoted_mean,quoted_max,quoted_psnr", [
    ("mnist", "haar", -3, 1307, 1905, 34.3),
    ("mnist", "haar", -2, 858, None, 26.6),
    ("fashion-mnist", "bior4.4", -4, 1971, 3009, 35.6),
])
def test_issue_figures_first_300(name, wavelet, fe, quoted_mean, quoted_max, quoted_psnr,
                                 request):
    """Issue 2's figures, quoted "on the 10k test sets", are those of the first 300 test images:
    the maxima equal to the token, the means within 1.2 tokens (0.14 %), the PSNRs within 0.06 dB
    (the whole 10k give 1360.5 / 1960, 892.4 and 1992.4 / 3677: see test_dataset_figures)."""
    x, _ = request.getfixturevalue("mnist_test" if name == "mnist" else "fashion_test")
    x = x[:300]
    tok = WaveletTokenizer(TokenizerConfig(wavelet=wavelet, final_exponent=fe), (28, 28))
    b = tok.encode(x)
    assert abs(b.lengths.mean() - quoted_mean) <= 1.2
    if quoted_max is not None:
        assert b.lengths.max() == quoted_max
    mse = np.mean((tok.decode(b) - x / 255.0) ** 2, axis=(1, 2))
    assert abs(np.mean(10 * np.log10(1 / mse)) - quoted_psnr) <= 0.06


@pytest.mark.parametrize("fe,noisy", [(-3, 1), (-3, 2), (-12, 4)])
def test_threads_split_the_batch_into_the_same_streams(rng, fe, noisy):
    """Two threads encode halves of the batch into regions of one buffer, then move the second
    half down -- in plain copies when the gap is wide (noisy=1), overlapping (2) -- or, when a
    half outgrew its region (-12: ~25 planes of noise), concatenate. The streams equal one
    thread's."""
    x = rng.integers(0, 256, (130, 28, 28)).astype(np.uint8)
    x[np.arange(130) % 4 >= noisy] = 0      # noise in `noisy` of every 4 images
    cfg = TokenizerConfig(wavelet="haar", final_exponent=fe)
    one = WaveletTokenizer(cfg, (28, 28), threads=1).encode(x)
    two = WaveletTokenizer(cfg, (28, 28), threads=2).encode(x)
    for name in ("tokens", "offsets", "exponents", "entries", "plane_kinds"):
        assert np.array_equal(getattr(one, name), getattr(two, name)), name
    assert np.array_equal(WaveletTokenizer(cfg, (28, 28), threads=2).encode(x, slots=False).tokens,
                          one.tokens)


@pytest.mark.parametrize("sizes", [(10, 3), (7, 10), (0, 10, 4), (10, 10, 10), (1, 0, 9), (4, 6)])
def test_gather_moves_chunks_together_in_place(sizes):
    from wavecode.tokenizer import _gather
    cap = 10
    buf = np.full(cap * len(sizes), -1, np.int32)
    parts = []
    for j, n in enumerate(sizes):
        buf[j * cap:j * cap + n] = np.arange(n) + 100 * j
        parts.append(buf[j * cap:j * cap + n])
    want = np.concatenate([np.arange(n) + 100 * j for j, n in enumerate(sizes)])
    moved = [p.copy() for p in parts]   # as if the kernel had reallocated them: concatenated
    assert np.array_equal(_gather(moved, np.empty_like(buf), cap), want)
    out = _gather(parts, buf, cap)
    assert np.array_equal(out, want) and np.shares_memory(out, buf)


def test_overlapping_small_page_allocations_restore_numpy_huge_page_advice(rng):
    """The batch outputs are allocated with numpy's huge-page advice switched off for the
    moment; overlapping calls from two threads (A enters, B enters, A leaves, B leaves) must
    leave it as they found it -- B must not restore the "off" it saw on entering."""
    import threading

    from wavecode.tokenizer import _set_madvise_hugepage, _small_pages
    if _set_madvise_hugepage is None:
        pytest.skip("this numpy has no huge-page advice switch")
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()

    def a():
        with _small_pages():
            a_in.set()
            b_in.wait(5)
        a_out.set()

    def b():
        a_in.wait(5)
        with _small_pages():
            b_in.set()
            a_out.wait(5)

    for start in (True, False):
        was = _set_madvise_hugepage(start)
        try:
            for e in (a_in, b_in, a_out):
                e.clear()
            threads = [threading.Thread(target=f) for f in (a, b)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(10)
            assert _set_madvise_hugepage(start) == start
        finally:
            _set_madvise_hugepage(was)
    # and real encodes from several threads at once
    tok = WaveletTokenizer("mnist", (28, 28), threads=2)
    x = rng.integers(0, 256, (200, 28, 28)).astype(np.uint8)
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(4) as ex:
        outs = list(ex.map(lambda _: tok.encode(x).tokens, range(8)))
    assert all(np.array_equal(o, outs[0]) for o in outs)
