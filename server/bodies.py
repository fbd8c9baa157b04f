"""Request bodies shared by the live and stream routes: JSON objects, SDP offers, uploads."""
from __future__ import annotations

import io
import json
from pathlib import Path

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError
from aiortc import RTCSessionDescription

from server.errors import ApiError

MAX_JSON_BYTES = 200_000
MAX_SDP_CHARS = 100_000
# What aiohttp's multipart reader raises for a body that is not valid multipart.
MALFORMED_MULTIPART = (ValueError, AssertionError, RuntimeError, HttpProcessingError)


async def json_body(request: web.Request) -> dict:
    """The body as a JSON object (empty body: {}); 400/413 otherwise."""
    if request.content_length is not None and request.content_length > MAX_JSON_BYTES:
        raise ApiError(413, "request body too large")
    try:
        data = json.loads(await request.text() or "{}")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"body is not valid JSON: {exc}") from None
    except RecursionError:
        raise ApiError(400, "body is nested too deeply to be a request") from None
    if not isinstance(data, dict):
        raise ApiError(400, "body must be a JSON object")
    return data


def sdp_offer(body: dict) -> RTCSessionDescription:
    sdp, kind = body.get("sdp"), body.get("type")
    if kind != "offer" or not isinstance(sdp, str) or not sdp.strip():
        raise ApiError(400, 'expected {"sdp": "<SDP offer>", "type": "offer"}', code="bad_offer")
    if len(sdp) > MAX_SDP_CHARS:
        raise ApiError(413, f"SDP offer longer than {MAX_SDP_CHARS} characters")
    return RTCSessionDescription(sdp=sdp, type="offer")


async def file_part(request: web.Request, name: str, limit: int) -> bytes:
    """The ``name`` part of a multipart body, refused past ``limit`` bytes while reading."""
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader) or part.name != name:
                continue
            data = bytearray()
            while chunk := await part.read_chunk(64 * 1024):
                data += chunk
                if len(data) > limit:
                    raise ApiError(413, f"'{name}' larger than {limit} bytes")
            return bytes(data)
    except MALFORMED_MULTIPART as exc:
        why = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        raise ApiError(400, f"malformed multipart body: {why}") from None
    raise ApiError(400, f"multipart body has no '{name}' file")


def check_pixels(source: Path | bytes, max_pixels: int) -> None:
    """413 for an image whose header declares more than ``max_pixels`` pixels (reads the
    header only, so a decompression bomb is refused before any pixel is decoded)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as im:
            w, h = im.size
    except Image.DecompressionBombError:
        raise ApiError(413, f"image has more than the limit of {max_pixels} pixels") from None
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types for broken headers
        raise ApiError(400, f"cannot read the image: {exc}") from None
    if w * h > max_pixels:
        raise ApiError(413, f"image is {w}x{h} = {w * h} pixels, more than the limit of {max_pixels} "
                            "(ABRAR_MAX_IMAGE_PIXELS)")
