"""Image loading/saving: real photos, EXIF, odd modes, and bad input with clear errors."""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from matting.images import ImageInputError, encode_jpeg, encode_png, load_image, save_image


def _encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.fixture(scope="module")
def photo(media):
    return load_image(media / "images_nogt" / "girl-919048_1280.jpg")


def test_real_jpeg_png_webp_decode_alike(media, photo):
    assert photo.dtype == np.uint8 and photo.shape == (853, 1280, 3)
    png = load_image(media / "images" / "p3m_0a78cf02.png")
    assert png.shape == (1619, 1080, 3)
    webp = load_image(_encode(Image.fromarray(photo), "WEBP", lossless=True))
    assert np.array_equal(webp, photo)
    with open(media / "images_nogt" / "girl-919048_1280.jpg", "rb") as fh:  # file object input
        assert np.array_equal(load_image(fh), photo)


def test_exif_orientation_applied(photo):
    im = Image.fromarray(photo)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view"
    out = load_image(_encode(im, "JPEG", quality=95, exif=exif.tobytes()))
    assert out.shape == (1280, 853, 3)
    upright = load_image(_encode(im.transpose(Image.Transpose.ROTATE_270), "JPEG", quality=95))
    assert np.abs(out.astype(int) - upright).mean() < 2.0


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "LA", "CMYK"])
def test_modes_become_rgb(photo, mode):
    im = Image.fromarray(photo[:64, :64])
    im = im.quantize(256) if mode == "P" else im.convert(mode)
    out = load_image(_encode(im, "JPEG" if mode == "CMYK" else "PNG"))
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - photo[:64, :64]).mean() < (40 if mode in ("L", "LA") else 12)


def test_transparent_pixels_flattened_on_white():
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[:, :4] = (255, 0, 0, 255)   # opaque red on the left, fully transparent black on the right
    out = load_image(_encode(Image.fromarray(rgba), "PNG"))
    assert (out[:, :4] == (255, 0, 0)).all() and (out[:, 4:] == 255).all()


def test_16bit_grey_scaled_not_clipped():
    ramp = (np.arange(256, dtype=np.uint16) * 257).reshape(1, 256).repeat(4, 0)
    out = load_image(_encode(Image.fromarray(ramp), "PNG"))
    assert np.array_equal(out[0, :, 0], np.arange(256))


@pytest.mark.parametrize("data, message", [
    (b"", "empty"),
    (b"hello, this is text, not pixels" * 10, "not an image"),
    (b"GIF89a" + bytes(100), "not an image"),
])
def test_bad_bytes(data, message):
    with pytest.raises(ImageInputError, match=message):
        load_image(data)


def test_truncated_and_corrupt(media):
    jpeg = (media / "images_nogt" / "girl-919048_1280.jpg").read_bytes()
    with pytest.raises(ImageInputError, match="corrupt or truncated"):
        load_image(jpeg[: len(jpeg) // 3])
    png = bytearray((media / "alpha" / "p3m_0a78cf02.png").read_bytes())
    png[200:400] = bytes(200)  # clobber the compressed data
    with pytest.raises(ImageInputError, match="corrupt or truncated"):
        load_image(bytes(png))


def test_unsupported_format():
    gif = _encode(Image.new("RGB", (4, 4)), "GIF")
    with pytest.raises(ImageInputError, match="unsupported image format GIF"):
        load_image(gif)


def _png_claiming(w: int, h: int) -> bytes:
    """A tiny PNG whose header claims w x h pixels (a decompression bomb's calling card)."""
    png = _encode(Image.new("RGB", (1, 1)), "PNG")
    ihdr = b"IHDR" + struct.pack(">II", w, h) + png[24:29]
    return png[:12] + ihdr + struct.pack(">I", zlib.crc32(ihdr)) + png[33:]


@pytest.mark.parametrize("side", [8000, 30000])  # over our limit; over PIL's own hard limit too
def test_bomb_refused_before_decoding(side):
    with pytest.raises(ImageInputError, match="too large|over the limit"):
        load_image(_png_claiming(side, side))
    with pytest.raises(ImageInputError, match="over the limit"):
        load_image(_encode(Image.new("RGB", (100, 100)), "PNG"), max_pixels=9_999)


def test_missing_file(tmp_path):
    with pytest.raises(ImageInputError, match="cannot read"):
        load_image(tmp_path / "nope.jpg")


def test_encode_and_save_round_trip(tmp_path, photo):
    rgba = np.dstack([photo, np.linspace(0, 255, photo.shape[1], dtype=np.uint8)[None].repeat(photo.shape[0], 0)])
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(encode_png(rgba)))), rgba)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(encode_png(photo)))), photo)
    assert np.abs(load_image(encode_jpeg(photo)).astype(int) - photo).mean() < 3
    save_image(rgba, tmp_path / "a.png")
    save_image(rgba, tmp_path / "a.webp")
    save_image(photo, tmp_path / "a.JPG")
    assert Image.open(tmp_path / "a.webp").mode == "RGBA"
    assert Image.open(tmp_path / "a.JPG").format == "JPEG"
    with pytest.raises(ValueError, match="JPEG has no transparency"):
        save_image(rgba, tmp_path / "b.jpg")
    with pytest.raises(ValueError, match="cannot save"):
        save_image(photo, tmp_path / "b.gif")
    with pytest.raises(ValueError, match="uint8"):
        encode_png(photo.astype(np.float32))
