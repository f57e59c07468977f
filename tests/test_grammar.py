"""The grammar state: exact legal sets, slots, and what the encoder produces."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from wavecode import TokenBatch, TokenizerConfig, WaveletTokenizer
from wavecode.transform import analyze

G4, G2, INS, NSP, NSN, NA0, NA1 = range(7)


def replay(tok, batch, b):
    """Feed stream b token by token; check legality and slots at every step."""
    st_ = tok.start(1, batch.exponents[b:b + 1])
    slots = batch.stream_slots(b)
    for k, t in enumerate(batch.stream(b)):
        assert not st_.done[0]
        mask = st_.legal_mask()[0]
        assert mask[t], f"encoder token {t} at {k} not legal: {mask}"
        assert np.array_equal(st_.next_slots()[0], slots[k])
        st_.step(np.array([t]))
    assert st_.done[0] and not st_.legal_mask().any()
    return st_


@st.composite
def small_images(draw):
    shape = draw(st.sampled_from([(8, 8), (4, 12), (6, 6, 3), (5, 3), (16, 16)]))
    fe = draw(st.integers(-4, -1))
    wavelet = draw(st.sampled_from(["haar", "bior4.4"]))
    seed = draw(st.integers(0, 2 ** 31))
    r = np.random.default_rng(seed)
    sparse = draw(st.booleans())
    img = r.integers(0, 256, shape)
    if sparse:
        img = np.where(r.random(shape) < 0.15, img, 0)
    return img[None].astype(np.uint8), TokenizerConfig(wavelet=wavelet, final_exponent=fe)


@given(small_images())
def test_state_accepts_every_encoded_stream_with_its_slots(case):
    img, cfg = case
    tok = WaveletTokenizer(cfg, img.shape[1:])
    b = tok.encode(img)
    st_ = replay(tok, b, 0)
    assert np.allclose(st_.decode()[0], tok.decode(b)[0])


@given(st.sampled_from([(8, 8), (4, 12), (6, 6, 3), (1, 1), (3, 5), (16, 16)]),
       st.integers(-3, 2), st.integers(0, 2 ** 31))
def test_random_legal_walks_are_realisable(shape, e, seed):
    """Every stream the grammar allows is produced by some coefficients: walk the grammar with
    random legal tokens to the end, take the decoded approximations as coefficients and encode
    them -- the same stream comes back. (So the legal set is never too permissive; that every
    encoder stream is accepted shows it is never too strict.)"""
    tok = WaveletTokenizer(TokenizerConfig(final_exponent=-3, levels=None), shape)
    r = np.random.default_rng(seed)
    st_ = tok.start(1, [e])
    toks = []
    while not st_.done[0]:
        legal = np.flatnonzero(st_.legal_mask()[0])
        assert legal.size > 0
        # bias towards zeros so that the groups and forced splits get exercised
        p = np.where(np.isin(legal, [G4, G2, INS]), 4.0, 1.0)
        t = int(r.choice(legal, p=p / p.sum()))
        toks.append(t)
        st_.step(np.array([t]))
    again = tok.encode_pyramids(st_.pyramids())
    assert again.exponents[0] == e
    assert again.stream(0).tolist() == toks


def test_forced_split_rules():
    # one 4x4 block (levels 0): after three Group2x2 in a block that split with nothing
    # significant, the fourth may not be Group2x2; three Insignificant in such a 2x2 likewise
    tok = WaveletTokenizer(TokenizerConfig(final_exponent=0, levels=0), (4, 8))
    st_ = tok.start(1, [0])
    names = lambda: set(np.flatnonzero(st_.legal_mask()[0]).tolist())  # noqa: E731
    assert names() == {G4, G2, INS, NSP, NSN}
    st_.step(np.array([G4]))           # first block skipped
    assert names() == {G2, INS, NSP, NSN}, "last block of plane 0 with nothing yet: no G4"
    for _ in range(3):
        st_.step(np.array([G2]))
    assert names() == {INS, NSP, NSN}, "fourth part of a forced block"
    for _ in range(3):
        st_.step(np.array([INS]))
    assert names() == {NSP, NSN}, "last coefficient of a forced 2x2"
    with pytest.raises(ValueError, match=r"illegal token Insignificant for stream 0 at "
                                         r"position 7 \(legal here: NowSignificantPos, "
                                         r"NowSignificantNeg\)"):
        st_.step(np.array([INS]))
    st_.step(np.array([NSN]))
    assert names() == {NA0, NA1}
    st_.step(np.array([NA1]))
    assert st_.done[0]
    with pytest.raises(ValueError, match="stream is complete"):
        st_.step(np.array([NA0]))


def test_single_coefficient_must_be_significant_in_plane_zero():
    tok = WaveletTokenizer(TokenizerConfig(final_exponent=-1, levels=0), (1, 1))
    st_ = tok.start(2, [0, -5])        # the second has no plane at all
    assert st_.legal_mask()[0].tolist() == [False, False, False, True, True, False, False]
    assert st_.done.tolist() == [False, True]
    st_.step(np.array([NSP, -1]))      # -1 leaves a stream alone
    assert st_.lengths.tolist() == [1, 0]


def test_batch_step_is_all_or_nothing():
    tok = WaveletTokenizer("mnist", (28, 28))
    st_ = tok.start(3, [3, 3, 3])
    before = st_.next_slots()
    with pytest.raises(ValueError, match="stream 1"):
        st_.step(np.array([G2, NA0, G2]))
    assert np.array_equal(st_.next_slots(), before) and st_.lengths.tolist() == [0, 0, 0]


def test_random_single_token_changes_are_rejected_or_decode(mnist_sample):
    tok = WaveletTokenizer("mnist", (28, 28))
    b = tok.encode(mnist_sample)
    r = np.random.default_rng(7)
    rejected = accepted = 0
    for _ in range(300):
        i = int(r.integers(len(b)))
        s = b.stream(i).copy()
        k = int(r.integers(len(s)))
        s[k] = (s[k] + r.integers(1, 7)) % 7
        one = TokenBatch(s, np.array([0, len(s)]), b.exponents[i:i + 1], meta=b.meta)
        try:
            img = tok.decode(one)
        except ValueError as exc:
            assert f"position {k}" in str(exc) or "position" in str(exc)
            rejected += 1
        else:
            assert img.shape == (1, 28, 28) and np.isfinite(img).all()
            accepted += 1
    assert rejected > 0 and accepted > 0


def test_prefix_error_shrinks_plane_by_plane(mnist_sample):
    tok = WaveletTokenizer("mnist", (28, 28))
    b = tok.encode(mnist_sample)
    pyr_true = analyze(tok, mnist_sample)
    for i in range(len(b)):
        planes = b.plane_kinds[b.offsets[i]:b.offsets[i + 1]] >> 2
        ends = list(np.flatnonzero(np.diff(planes)) + 1) + [len(planes)]
        errs = [np.sum((tok.decode_pyramids(b.subset([i]), prefix=k)[0] - pyr_true[i]) ** 2)
                for k in [0] + ends]
        assert all(a > c for a, c in zip(errs, errs[1:])), errs
        # and the image error (the transform is orthogonal for haar) falls likewise
        imgs = [tok.decode(b.subset([i]), prefix=k)[0] for k in [0] + ends]
        mse = [np.mean((im - mnist_sample[i] / 255.0) ** 2) for im in imgs]
        assert mse[-1] < mse[0] and all(a >= c - 1e-12 for a, c in zip(mse, mse[1:]))


@pytest.fixture(scope="module")
def mnist_sample():
    from wavecode.sample_data import load_sample_digits
    return load_sample_digits()[0]


@given(small_images())
def test_legal_bits_and_slots_in_one_pass_match_the_stepwise_state(case):
    img, cfg = case
    tok = WaveletTokenizer(cfg, img.shape[1:])
    b = tok.encode(np.concatenate([img, img[:, ::-1]]))
    bits = tok.legal_bits(b)
    st_ = tok.start(len(b), b.exponents)
    for t in range(int(b.lengths.max())):
        mask = st_.legal_mask()
        live = b.lengths > t
        for i in np.flatnonzero(live):
            want = sum(1 << k for k in range(7) if mask[i, k])
            assert bits[b.offsets[i] + t] == want
        st_.step(np.array([b.stream(i)[t] if live[i] else -1 for i in range(len(b))]))
    bare = TokenBatch(b.tokens, b.offsets, b.exponents, meta=b.meta)
    again = tok.with_slots(bare)
    assert np.array_equal(again.entries, b.entries)
    assert np.array_equal(again.plane_kinds, b.plane_kinds)


def test_legal_bits_rejects_an_illegal_stream(mnist_sample):
    tok = WaveletTokenizer.from_preset("mnist", (28, 28))
    b = tok.encode(mnist_sample[:2])
    toks = np.array(b.tokens)
    toks[b.offsets[1] + 3] = NA1 if toks[b.offsets[1] + 3] < NA0 else G4
    bad = TokenBatch(toks, b.offsets, b.exponents, meta=b.meta)
    with pytest.raises(ValueError, match="stream 1"):
        tok.legal_bits(bad)


@given(small_images())
def test_contexts_match_the_reference_and_the_stepwise_state(case):
    import reference as ref
    img, cfg = case
    tok = WaveletTokenizer(cfg, img.shape[1:])
    b = tok.encode(img)
    ctx = tok.contexts(b)
    slots = b.slots
    shape = (tok.image_shape[2],) + tok.padded_shape
    stream = b.stream(0)
    step = max(1, len(stream) // 40)               # the reference decodes every prefix anew
    for k in range(0, len(stream), step):
        want = ref.context_of(stream[:k], int(b.exponents[0]), cfg.final_exponent, shape,
                              tok.levels, slots[k])
        assert ctx[k] == want, k
    st_ = tok.start(1, b.exponents)
    for k, t in enumerate(stream):
        assert st_.next_contexts()[0] == ctx[k]
        st_.step(np.array([t]))
