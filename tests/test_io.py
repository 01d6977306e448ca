"""imread/imwrite on what users have: every awkward mode, broken files, and clear errors."""
import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image

from tinysr.data.io import ImageError, check_size, convert, imread, imwrite


def _rgb(h=12, w=10, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _png16(path, a):
    """Write a 16-bit-per-channel PNG by hand (Pillow cannot write 16-bit RGB)."""
    h, w, c = a.shape
    ctype = {1: 0, 3: 2, 4: 6}[c]
    raw = b"".join(b"\x00" + a[i].astype(">u2").tobytes() for i in range(h))

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, ctype, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_rgb_and_gray_round_trip(tmp_path):
    a = _rgb()
    imwrite(tmp_path / "a.png", a)
    np.testing.assert_array_equal(imread(tmp_path / "a.png"), a)
    g = a[..., 0].copy()
    imwrite(tmp_path / "g.png", g)
    out = imread(tmp_path / "g.png")
    assert out.shape == g.shape and out.dtype == np.uint8
    assert imread(tmp_path / "g.png", mode="RGB").shape == g.shape + (3,)
    y = imread(tmp_path / "a.png", mode="L")
    from tinysr.data.color import rgb_to_y
    np.testing.assert_array_equal(y, rgb_to_y(a))
    # float [0, 1] input is rounded like im2uint8; no stray temp files are left
    imwrite(tmp_path / "f.png", a / 255.0)
    np.testing.assert_array_equal(imread(tmp_path / "f.png"), a)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "f.png", "g.png"]


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_is_dropped_with_a_warning(tmp_path, mode):
    a = _rgb()
    im = Image.fromarray(a).convert(mode)
    im.save(tmp_path / "x.png")
    with pytest.warns(UserWarning, match="alpha"):
        out = imread(tmp_path / "x.png")
    expect = np.asarray(im.convert("RGB" if mode == "RGBA" else "L"))
    np.testing.assert_array_equal(out, expect)


def test_palette(tmp_path):
    a = _rgb()
    Image.fromarray(a).convert("P", palette=Image.Palette.ADAPTIVE, colors=16).save(tmp_path / "p.png")
    out = imread(tmp_path / "p.png")
    assert out.shape == a.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out, np.asarray(Image.open(tmp_path / "p.png").convert("RGB")))
    Image.fromarray(a).convert("RGBA").convert("P").save(tmp_path / "t.gif", transparency=0)
    with pytest.warns(UserWarning, match="transparency"):
        assert imread(tmp_path / "t.gif").ndim in (2, 3)


def test_16_bit_gray_and_rgb(tmp_path):
    rng = np.random.default_rng(4)
    a16 = rng.integers(0, 65536, (9, 8), dtype=np.uint16)
    a16[0, 0], a16[0, 1] = 65535, 0
    Image.fromarray(a16).save(tmp_path / "g16.png")
    with pytest.warns(UserWarning, match="16-bit"):
        out = imread(tmp_path / "g16.png")
    assert out.dtype == np.uint8 and out[0, 0] == 255 and out[0, 1] == 0
    np.testing.assert_array_equal(out, np.floor(a16 / 257 + 0.5).astype(np.uint8))
    rgb16 = rng.integers(0, 65536, (6, 7, 3), dtype=np.uint16)
    _png16(tmp_path / "rgb16.png", rgb16)
    with pytest.warns(UserWarning, match="16-bit"):
        out = imread(tmp_path / "rgb16.png")
    assert out.shape == (6, 7, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - rgb16 / 257).max() <= 1.0


def test_cmyk_and_exif_orientation(tmp_path):
    a = _rgb(16, 24)
    Image.fromarray(a).convert("CMYK").save(tmp_path / "c.jpg", quality=95)
    out = imread(tmp_path / "c.jpg")
    assert out.shape == (16, 24, 3) and out.dtype == np.uint8
    # EXIF orientation 6 = "rotate 90 CW to display": the stored 16x24 image is shown as 24x16.
    im = Image.fromarray(a)
    exif = im.getexif()
    exif[0x0112] = 6
    im.save(tmp_path / "o.jpg", exif=exif, quality=100)
    out = imread(tmp_path / "o.jpg")
    assert out.shape == (24, 16, 3)
    stored = np.asarray(Image.open(tmp_path / "o.jpg"))
    np.testing.assert_array_equal(out, np.rot90(stored, k=-1))


def test_missing_unreadable_truncated(tmp_path):
    with pytest.raises(ImageError, match="nothere.png: file not found"):
        imread(tmp_path / "nothere.png")
    (tmp_path / "page.png").write_text("<html>404 Not Found</html>")
    with pytest.raises(ImageError, match=r"page\.png: not an image file"):
        imread(tmp_path / "page.png")
    imwrite(tmp_path / "full.png", _rgb(64, 64))
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match=r"cut\.png: truncated or corrupt") as e:
        imread(tmp_path / "cut.png")
    assert "again" in str(e.value) and isinstance(e.value, ValueError)
    Image.fromarray(_rgb(64, 64)).save(tmp_path / "full.jpg")
    jd = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(jd[: len(jd) // 2])
    with pytest.raises(ImageError, match=r"cut\.jpg"):
        imread(tmp_path / "cut.jpg")
    with pytest.raises(ImageError, match="folder"):
        imread(tmp_path)


def test_too_small_for_the_scale(tmp_path):
    img = _rgb(5, 7)
    with pytest.raises(ImageError, match=r"tiny\.png: image is 7x5 px, too small for scale 8"):
        check_size(img, 8, tmp_path / "tiny.png")
    assert check_size(img, 2, "ok.png") is img
    with pytest.raises(ImageError, match="patch"):
        check_size(img, 2, "x.png", min_lr=4)


def test_nothing_written_when_reading_fails(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    dst = tmp_path / "out" / "bad.png"
    with pytest.raises(ImageError, match="bad.png"):
        convert(tmp_path / "bad.png", dst)
    assert not dst.exists()
    imwrite(tmp_path / "small.png", _rgb(3, 3))
    with pytest.raises(ImageError, match="too small"):
        convert(tmp_path / "small.png", tmp_path / "small_out.png", scale=4)
    assert not (tmp_path / "small_out.png").exists()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        convert(tmp_path / "small.png", tmp_path / "ok.png")
    assert (tmp_path / "ok.png").exists()


def test_imwrite_rejects_bad_arrays(tmp_path):
    with pytest.raises(ValueError, match="shape"):
        imwrite(tmp_path / "x.png", np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(ValueError, match="extension"):
        imwrite(tmp_path / "x.nope", np.zeros((4, 4), np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_imwrite_on_a_full_disk_names_the_file_and_keeps_the_old_image(tmp_path, monkeypatch):
    """imwrite goes through checkpoint.atomic_write_bytes: a full disk is one sentence that names the
    file and what to free, the image already there is untouched and no temporary file is left."""
    import errno
    target = tmp_path / "out.png"
    imwrite(target, np.full((8, 8), 7, np.uint8))
    before = target.read_bytes()

    def full(self, fp, *args, **kwargs):
        fp.write(b"x" * 10)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", full)
    with pytest.raises(OSError) as e:
        imwrite(target, np.zeros((8, 8), np.uint8))
    assert e.value.errno == errno.ENOSPC
    assert f"the disk holding {tmp_path} is full: writing out.png needs about" in str(e.value)
    assert target.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["out.png"]
