"""The wavecode CLI, in-process."""
import numpy as np
import pytest

from wavecode import TokenBatch, WaveletTokenizer
from wavecode.cli import main
from wavecode.imageio import read_image, write_image
from wavecode.sample_data import load_sample_digits


@pytest.fixture
def digits_dir(tmp_path):
    images, _ = load_sample_digits()
    d = tmp_path / "digits"
    for i, im in enumerate(images[:6]):
        write_image(d / f"d{i}.png", im)
    return d, images[:6]


def test_tokenize_detokenize_round_trip(digits_dir, tmp_path, capsys):
    d, images = digits_dir
    out = tmp_path / "t.npz"
    assert main(["tokenize", str(d), "-o", str(out), "--preset", "mnist"]) == 0
    text = capsys.readouterr().out
    assert "6 image(s) (28, 28)" in text and "tokens/image: mean" in text
    b = TokenBatch.load(out)
    assert len(b) == 6 and b.meta["files"][0] == "d0.png"
    direct = WaveletTokenizer("mnist", (28, 28)).encode(images)
    assert np.array_equal(b.tokens, direct.tokens)

    png = tmp_path / "one.png"
    assert main(["detokenize", str(out), "-o", str(png), "--index", "2"]) == 0
    rec = read_image(png)
    assert rec.shape == (28, 28)
    assert np.abs(rec.astype(int) - images[2]).mean() < 4  # full stream: close to the original
    assert main(["detokenize", str(out), "-o", str(tmp_path / "coarse.png"), "--index", "2",
                 "--prefix", "30"]) == 0
    coarse = read_image(tmp_path / "coarse.png")
    assert np.abs(coarse.astype(int) - images[2]).mean() > np.abs(rec.astype(int) - images[2]).mean()
    assert main(["detokenize", str(out), "-o", str(tmp_path / "grid.png")]) == 0
    assert read_image(tmp_path / "grid.png").shape[1] > 28 * 2


def test_tokenize_colour_image(tmp_path, capsys):
    r = np.random.default_rng(0)
    write_image(tmp_path / "c.png", r.integers(0, 256, (17, 33, 3)).astype(np.uint8))
    assert main(["tokenize", str(tmp_path / "c.png"), "-o", str(tmp_path / "c.npz"),
                 "--wavelet", "bior4.4", "--final-exponent", "-4", "--max-tokens", "500"]) == 0
    b = TokenBatch.load(tmp_path / "c.npz")
    assert b.lengths.tolist() == [500]
    assert b.meta["image_shape"] == [17, 33, 3]


def test_show_writes_a_strip(digits_dir, tmp_path, capsys):
    d, _ = digits_dir
    out = tmp_path / "strip.png"
    assert main(["show", str(d / "d0.png"), "--steps", "5", "-o", str(out), "--scale", "2"]) == 0
    strip = read_image(out)
    # 5 prefixes + the original, 56 px each, 2 px gaps
    assert strip.shape == (56 + 4, 6 * 58 + 2)
    assert main(["show", str(d), "--steps", "4", "--mode", "planes", "-o", str(out)]) == 0
    assert read_image(out).shape[0] > 100


def test_demo(tmp_path, capsys):
    assert main(["demo", "-o", str(tmp_path / "demo")]) == 0
    assert (tmp_path / "demo" / "digits_progressive.png").exists()
    assert "full-stream PSNR" in capsys.readouterr().out


@pytest.mark.parametrize("argv,message", [
    (["tokenize", "{tmp}/missing.png", "-o", "{tmp}/x.npz"], "no such file or directory"),
    (["tokenize", "{tmp}/bad.png", "-o", "{tmp}/x.npz"], "not an image"),
    (["detokenize", "{tmp}/bad.png", "-o", "{tmp}/x.png"], "cannot read token file"),
    (["tokenize", "{tmp}/ok.png", "-o", "{tmp}/x.npz", "--wavelet", "nope"], "unknown wavelet"),
    (["show", "{tmp}/ok.png", "-o", "{tmp}/x.png", "--steps", "0"], "steps must be in 1..256"),
    (["show", "{tmp}/ok.png", "-o", "{tmp}/x.png", "--steps", "100000"], "steps must be in"),
    (["tokenize", "{tmp}/ok.png", "-o", "{tmp}/file/x.npz"], "{tmp}/file/x.npz: Not a direc"),
    (["show", "{tmp}/ok.png", "-o", "{tmp}/file/x.png"], "{tmp}/file/x.png: Not a directory"),
    (["encode", "{tmp}/ok.png", "{tmp}/file/x.wvc", "--bpp", "1"], "{tmp}/file/x.wvc: Not a dir"),
])
def test_errors_are_one_line_with_status_2(tmp_path, capsys, argv, message):
    (tmp_path / "bad.png").write_bytes(b"garbage")
    write_image(tmp_path / "ok.png", np.zeros((8, 8), np.uint8))
    (tmp_path / "file").write_bytes(b"a file where a folder is needed")
    code = main([a.format(tmp=tmp_path) for a in argv])
    err = capsys.readouterr().err
    assert code == 2
    assert message.format(tmp=tmp_path) in err and err.count("\n") == 1 and "Traceback" not in err


def test_existing_output_survives_a_failed_write(digits_dir, tmp_path):
    d, _ = digits_dir
    out = tmp_path / "t.npz"
    assert main(["tokenize", str(d), "-o", str(out)]) == 0
    before = out.read_bytes()
    assert main(["tokenize", str(tmp_path / "nothing"), "-o", str(out)]) == 2
    assert out.read_bytes() == before
