"""Still-image decoding and encoding with clear errors for bad input."""
from __future__ import annotations

import io
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

ACCEPTED_FORMATS = {"JPEG": "JPEG", "PNG": "PNG", "WEBP": "WebP", "BMP": "BMP"}
_SAVE_SUFFIXES = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".webp": "webp"}


class ImageInputError(ValueError):
    """The input is not an image we can use; the message says why, for the user."""


def load_image(source: Path | str | bytes | BinaryIO, *, max_pixels: int = 50_000_000) -> np.ndarray:
    """Decode an image to uint8 HxWx3 RGB, upright as its EXIF orientation says.

    The pixel count is checked from the header before any pixel is decoded, so a
    decompression bomb is refused without allocating it.
    """
    stream = _open_bytes(source)
    try:
        with Image.open(stream) as im:
            if im.format not in ACCEPTED_FORMATS:
                raise ImageInputError(f"unsupported image format {im.format}; "
                                      f"use {', '.join(ACCEPTED_FORMATS.values())}")
            w, h = im.size
            if w * h > max_pixels:
                raise ImageInputError(f"image is {w}x{h} ({w * h / 1e6:.0f} MP), "
                                      f"over the limit of {max_pixels / 1e6:.0f} MP")
            if w == 0 or h == 0:
                raise ImageInputError("image has no pixels")
            _check_size_plausible(stream.getbuffer(), im)
            im.load()
            return _to_rgb(ImageOps.exif_transpose(im))
    except ImageInputError:
        raise
    except Image.DecompressionBombError as exc:  # header far past PIL's own limit
        raise ImageInputError(f"image is too large to decode ({exc})") from None
    except UnidentifiedImageError:
        raise ImageInputError("not an image (expected JPEG, PNG or WebP data)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageInputError(f"corrupt or truncated image: {exc}") from None


# Markers of arithmetic-coded JPEG frames (SOF9-11, SOF13-15): no bits-per-block floor applies.
_ARITHMETIC_SOF = tuple(bytes([0xFF, m]) for m in (0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF))


def _check_size_plausible(data: memoryview, im: Image.Image) -> None:
    """Refuse a file too small to hold the image its header declares, before decoding it.

    Decoders fill what a truncated file lacks with grey, so a few hundred bytes that
    declare 6000x6000 would otherwise decode, and be matted, at full size. The floors
    are hard: deflate (PNG) never compresses better than 1032:1, and even a 1-bit image
    has ``ceil(w / 8)`` bytes a row; Huffman-coded JPEG spends at least one bit per 8x8
    block of its full-resolution component.
    """
    w, h = im.size
    nbytes = data.nbytes
    if im.format == "PNG":
        floor = h * (1 + (w + 7) // 8) // 1032
    elif im.format == "JPEG" and not any(m in bytes(data[:1 << 20]) for m in _ARITHMETIC_SOF):
        floor = ((w + 7) // 8) * ((h + 7) // 8) // 8
    else:
        return
    if nbytes < floor:
        raise ImageInputError(f"truncated or corrupt image: {nbytes} bytes cannot hold the {w}x{h} "
                              f"pixels its header declares (at least {floor} bytes)")


def _open_bytes(source) -> io.BytesIO:
    if isinstance(source, (str, Path)):
        path = Path(source)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ImageInputError(f"cannot read {path}: {exc.strerror or exc}") from None
    elif isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    else:
        data = source.read()
    if not data:
        raise ImageInputError("empty input: the image has 0 bytes")
    return io.BytesIO(data)


def _to_rgb(im: Image.Image) -> np.ndarray:
    if im.mode.startswith("I;16"):
        # 16-bit greyscale: PIL's convert("RGB") clips instead of scaling
        grey = (np.asarray(im, dtype=np.float32) * (255.0 / 65535.0) + 0.5).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        # transparent areas have arbitrary colours underneath; show them as a
        # viewer would, on white, so the model sees what the user saw
        rgba = im.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return np.asarray(flat)
    return np.asarray(im.convert("RGB"))


def _check_u8(img: np.ndarray, channels: tuple[int, ...]) -> None:
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] not in channels:
        raise ValueError(f"expected uint8 HxWx{'/'.join(map(str, channels))}, "
                         f"got {img.dtype} {img.shape}")


def encode_png(img: np.ndarray) -> bytes:
    """PNG bytes of a grey (HxWx1), RGB or RGBA uint8 image (fast zlib level)."""
    _check_u8(img, (1, 3, 4))
    pixels = img if img.shape[2] == 1 else cv2.cvtColor(img, cv2.COLOR_RGBA2BGRA if img.shape[2] == 4
                                                        else cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", pixels, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


def encode_jpeg(rgb: np.ndarray, quality: int = 92) -> bytes:
    _check_u8(rgb, (3,))
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


def image_format(path: Path | str, *, alpha: bool) -> str:
    """The format ``save_image`` will use for ``path``; ValueError if it cannot hold the image."""
    suffix = Path(path).suffix.lower()
    fmt = _SAVE_SUFFIXES.get(suffix)
    if fmt is None:
        raise ValueError(f"cannot save an image as '{suffix or path}'; use .png, .jpg or .webp")
    if fmt == "jpeg" and alpha:
        raise ValueError("JPEG has no transparency: save as .png or .webp, or pick a --background colour")
    return fmt


def encode_webp(img: np.ndarray, quality: int = 90) -> bytes:
    """WebP bytes of an RGB or RGBA uint8 image (lossy, alpha kept)."""
    _check_u8(img, (3, 4))
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="WEBP", quality=quality)
    return buf.getvalue()


def encode_image(img: np.ndarray, fmt: str) -> bytes:
    """``img`` (RGB/RGBA uint8, or HxW uint8 grey for png) as ``png``, ``jpeg`` or ``webp``."""
    if fmt == "png" and img.ndim == 2:
        return encode_png(img[:, :, None])
    if fmt == "png":
        return encode_png(img)
    if fmt == "jpeg":
        return encode_jpeg(img)
    if fmt == "webp":
        return encode_webp(img)
    raise ValueError(f"cannot encode an image as {fmt!r}; use png, jpeg or webp")


def save_image(img: np.ndarray, path: Path | str) -> None:
    """Write RGB/RGBA uint8 to ``path``; the format comes from the suffix."""
    _check_u8(img, (3, 4))
    Path(path).write_bytes(encode_image(img, image_format(path, alpha=img.shape[2] == 4)))
