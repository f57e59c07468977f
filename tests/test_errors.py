"""Bad input: a clear ValueError, never a crash, a hang or a traceback from inside."""
import gzip
from pathlib import Path

import numpy as np
import pytest

from wavecode import TokenBatch, TokenizerConfig, WaveletTokenizer, compress
from wavecode.datasets import load_idx_split, read_idx
from wavecode.imageio import read_image
from wavecode.layout import scan_layout


@pytest.fixture(scope="module")
def tok():
    return WaveletTokenizer("mnist", (28, 28))


def test_bad_settings():
    with pytest.raises(ValueError, match="unknown preset 'cifar'"):
        WaveletTokenizer("cifar", (28, 28))
    with pytest.raises(ValueError, match="unknown wavelet 'nope'"):
        TokenizerConfig(wavelet="nope")
    with pytest.raises(ValueError, match=r"image_shape must be \(H, W\) or \(H, W, 3\)"):
        WaveletTokenizer("mnist", (28, 28, 4))
    with pytest.raises(ValueError, match="color must be"):
        TokenizerConfig(color="hsv")
    with pytest.raises(ValueError, match="not a multiple"):
        scan_layout(1, 28, 28, 3)


def test_bad_images(tok):
    with pytest.raises(ValueError, match="images must be uint8, not float64"):
        tok.encode(np.zeros((2, 28, 28)))
    with pytest.raises(ValueError, match=r"images must have shape \(B, 28, 28\), not \(2, 28, 27\)"):
        tok.encode(np.zeros((2, 28, 27), np.uint8))
    with pytest.raises(ValueError, match="max_tokens must be >= 0"):
        tok.encode(np.zeros((1, 28, 28), np.uint8), max_tokens=-1)
    assert len(tok.encode(np.zeros((0, 28, 28), np.uint8))) == 0


def test_illegal_streams_name_the_position(tok):
    b = tok.encode(np.full((1, 28, 28), 200, np.uint8))
    bad = b.tokens.copy()
    bad[0] = 5  # a refinement where a decision is due
    with pytest.raises(ValueError, match=r"illegal token NextAccuracy0 at position 0 of stream 0: "
                                         r"expected one of"):
        tok.decode(TokenBatch(bad, b.offsets, b.exponents, meta=b.meta))
    junk = np.array([9], np.uint8)
    with pytest.raises(ValueError, match="illegal token id 9 at position 0"):
        tok.decode(TokenBatch(junk, np.array([0, 1]), b.exponents, meta=b.meta))
    # wider integer tokens: values that would wrap to a legal uint8 token are still refused
    for wide in (256, -1, 2 ** 40 + 3):
        t = b.tokens.astype(np.int64)
        t[3] = wide
        with pytest.raises(ValueError, match=f"illegal token id {wide} at position 3 of stream 0"):
            tok.decode(TokenBatch(t, b.offsets, b.exponents, meta=b.meta))
    assert np.array_equal(tok.decode(TokenBatch(b.tokens.astype(np.int16), b.offsets,
                                                b.exponents, meta=b.meta)), tok.decode(b))
    longer = np.concatenate([b.tokens, [5]]).astype(np.uint8)
    with pytest.raises(ValueError, match="already complete after the final bit-plane"):
        tok.decode(TokenBatch(longer, np.array([0, len(longer)]), b.exponents, meta=b.meta))


def test_inconsistent_batches(tok):
    t = np.zeros(3, np.uint8)
    with pytest.raises(ValueError, match="offsets must start at 0"):
        tok.decode(TokenBatch(t, np.array([0, 5]), np.array([1])))
    with pytest.raises(ValueError, match="offsets do not fit"):
        tok.decode(TokenBatch(t, np.array([0, 3]), np.array([1, 2])))
    with pytest.raises(ValueError, match="exponents out of range"):
        tok.decode(TokenBatch(t[:0], np.array([0, 0]), np.array([10 ** 6])))
    with pytest.raises(ValueError, match="expected a TokenBatch"):
        tok.decode(np.zeros(3))


def test_grammar_state_input(tok):
    with pytest.raises(ValueError, match="need 2 exponents, got 3"):
        tok.start(2, [1, 2, 3])
    st = tok.start(2, [3, 3])
    with pytest.raises(ValueError, match=r"step needs 2 tokens, got shape \(3,\)"):
        st.step(np.array([0, 0, 0]))
    with pytest.raises(ValueError, match="tokens must be integers"):
        st.step(np.array([0.5, 1.0]))
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        tok.start(0, [])


def test_bad_token_files(tmp_path):
    p = tmp_path / "garbage.npz"
    p.write_bytes(b"not a zip file at all")
    with pytest.raises(ValueError,
                       match=r"garbage.npz: cannot read token file \(not an .npz archive\)"):
        TokenBatch.load(p)
    with pytest.raises(ValueError, match="no such file"):
        TokenBatch.load(tmp_path / "missing.npz")
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(ValueError, match="not a token file"):
        TokenBatch.load(tmp_path / "other.npz")
    good = tmp_path / "good.npz"
    tok = WaveletTokenizer("mnist", (28, 28))
    tok.encode(np.full((2, 28, 28), 99, np.uint8)).save(good)
    data = good.read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cut.npz: cannot read token file"):
        TokenBatch.load(tmp_path / "cut.npz")


def test_bad_images_and_idx(tmp_path):
    (tmp_path / "x.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(ValueError, match="x.png"):
        read_image(tmp_path / "x.png")
    with pytest.raises(ValueError, match="no such file"):
        read_image(tmp_path / "none.png")
    with gzip.open(tmp_path / "t.gz", "wb") as f:
        f.write(bytes([0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 28, 0, 0, 0, 28]) + b"\0" * 100)
    with pytest.raises(ValueError, match="IDX body has 100 bytes, header says 1568"):
        read_idx(tmp_path / "t.gz")
    (tmp_path / "junk").write_bytes(b"hello")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tmp_path / "junk")
    with pytest.raises(ValueError, match="no t10k-images-idx3-ubyte"):
        load_idx_split(tmp_path, "test")


def test_decoder_fuzz_never_crashes(tok):
    """Random token arrays and exponents: a clean ValueError or images, never a crash or hang."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    small = WaveletTokenizer(TokenizerConfig(final_exponent=-2), (6, 10, 3))

    @settings(max_examples=300, deadline=None)
    @given(st.lists(st.integers(0, 6) | st.integers(0, 255), max_size=400), st.integers(-8, 6))
    def check(tokens, e):
        t = np.array(tokens, np.uint8)
        b = TokenBatch(t, np.array([0, len(t)]), np.array([e], np.int32))
        try:
            img = small.decode(b)
        except ValueError as exc:
            assert "illegal token" in str(exc)
        else:
            assert img.shape == (1, 6, 10, 3) and np.isfinite(img).all()
            assert img.min() >= 0 and img.max() <= 1

    check()


def test_stale_kernel_cache_is_dropped_when_any_kernel_source_changes(tmp_path):
    """numba checks only the defining file's timestamp; the package's stamp covers all sources."""
    import importlib.util

    from wavecode import _jitcache

    src = tmp_path / "kmod.py"
    src.write_text("from numba import njit\n\n@njit(cache=True)\ndef twice(x):\n    return 2 * x\n")
    spec = importlib.util.spec_from_file_location("kmod", src)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.twice(3) == 6
    cache_dir = Path(mod.twice._cache._cache_path)     # __pycache__, or under NUMBA_CACHE_DIR
    assert any(f.suffix == ".nbi" for f in cache_dir.iterdir())
    assert _jitcache.purge_stale([mod])                    # no stamp yet: built from unknown sources
    assert not any(f.suffix in (".nbi", ".nbc") for f in cache_dir.iterdir())
    assert mod.twice(4.0) == 8.0                           # a new signature: compiled, cached
    assert _jitcache.purge_stale([mod]) == []              # same sources: the cache stays
    assert any(f.suffix == ".nbi" for f in cache_dir.iterdir())
    src.write_text(src.read_text() + "# edited\n")
    assert _jitcache.purge_stale([mod])                    # any change: dropped


def test_write_atomic_keeps_the_old_file_and_names_the_target(tmp_path):
    from wavecode._files import write_atomic
    target = tmp_path / "out.npz"
    target.write_bytes(b"old")

    def fail(tmp):
        tmp.write_bytes(b"half")
        raise OSError(28, "No space left on device", str(tmp))

    with pytest.raises(OSError, match="out.npz") as info:
        write_atomic(target, fail)
    assert info.value.filename == str(target) and info.value.errno == 28
    assert target.read_bytes() == b"old" and sorted(tmp_path.iterdir()) == [target]
    with pytest.raises(ValueError, match="boom"):      # not an OSError: passes through
        write_atomic(target, lambda tmp: (_ for _ in ()).throw(ValueError("boom")))
    assert sorted(tmp_path.iterdir()) == [target]
    write_atomic(tmp_path / "new" / "deep.txt", lambda tmp: tmp.write_text("x"))
    assert (tmp_path / "new" / "deep.txt").read_text() == "x"


def test_images_over_pillows_size_guard_get_one_line(tmp_path, monkeypatch):
    from PIL import Image
    Image.new("L", (64, 64)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)   # 4096 px > 2x: Pillow refuses
    with pytest.raises(ValueError, match=r"big.png: too large \(Image size \(4096 pixels\)"):
        read_image(tmp_path / "big.png")


def test_a_token_file_claiming_a_huge_image_is_refused(tmp_path, capsys):
    """The image shape in a token file's metadata is the file's word: a 10^6 x 10^6 claim is
    refused before any table is built, in one line."""
    import json

    from wavecode.cli import main
    with pytest.raises(ValueError, match="not enough memory for the scan tables"):
        WaveletTokenizer("mnist", (10 ** 6, 10 ** 6))
    b = WaveletTokenizer("mnist", (28, 28)).encode(np.zeros((1, 28, 28), np.uint8))
    meta = dict(b.meta, image_shape=[10 ** 6, 10 ** 6, 1])
    np.savez(tmp_path / "t.npz", tokens=b.tokens, offsets=b.offsets, exponents=b.exponents,
             meta=np.array(json.dumps(meta)))
    assert main(["detokenize", str(tmp_path / "t.npz"), "-o", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert "not enough memory" in err and err.count("\n") == 1
    assert not (tmp_path / "x.png").exists()


def test_budgets_beyond_int64_mean_no_limit(tok):
    """Counts from the command line can exceed int64: a budget or prefix longer than any stream
    keeps the whole streams (no overflow inside the kernels)."""
    x = np.full((2, 28, 28), 99, np.uint8)
    full = tok.encode(x)
    for big in (2 ** 63, 10 ** 20):
        assert np.array_equal(tok.encode(x, max_tokens=big).tokens, full.tokens)
        assert np.array_equal(full.truncate(big).tokens, full.tokens)
    assert len(compress(np.zeros((8, 8), np.uint8), bpp=1e308)) > 0
