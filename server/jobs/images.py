"""POST /remove-bg: one image in, a transparent PNG (or a composite on a colour) out."""
from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import numpy as np
from aiohttp import web

from server.bodies import check_pixels
from server.context import context
from server.errors import ApiError
from server.jobs import params
from server.jobs.state import busy, jobs_state
from server.jobs.url_input import receive_input

IMAGE_PARAMS = (
    params.Param("background_type", params.background, "transparent"),
    params.Param("format", params.choice("png", "jpeg"), "png"),
    params.Param("url", str),
)
_MEDIA_TYPES = {"png": "image/png", "jpeg": "image/jpeg"}


def sniff_image(head: bytes) -> str | None:
    """The image format from its first bytes: png, jpeg, webp or None."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return None


def safe_stem(filename: str) -> str:
    """A name fit for Content-Disposition, from the client's file name."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(filename).stem)[:80].strip("._")
    return stem or "image"


async def remove_bg(request: web.Request) -> web.Response:
    q = params.parse_query(request, IMAGE_PARAMS)
    if q["background_type"] == "transparent" and q["format"] == "jpeg":
        raise ApiError(400, "JPEG has no alpha channel: use format=png for a transparent result, "
                            "or pick a background colour")
    state = jobs_state(request)
    cfg = state.config
    # The slot is taken only once the upload has arrived: slow senders must not hold one.
    upload = await receive_input(request, state.url_inputs, q["url"], state.files.new_upload(),
                                 cfg.max_upload_bytes)
    try:
        if sniff_image(upload.head()) is None:
            raise ApiError(415, "not a supported image: send a JPEG, PNG or WebP file")
        if state.images_pending >= cfg.image_workers + cfg.image_queue_size:
            state.metrics.rejected.labels(queue="images").inc()
            raise busy(f"too many images in progress ({state.images_pending}); retry shortly", retry_after_s=5)
        state.images_pending += 1
        try:
            started = time.perf_counter()
            body = await asyncio.get_running_loop().run_in_executor(
                state.images, _cut_out, context(request).runtime, upload.path, q["background_type"],
                q["format"], cfg.max_image_pixels)
            elapsed = time.perf_counter() - started
        finally:
            state.images_pending -= 1
        state.metrics.inference.labels(kind="image").observe(elapsed)
    finally:
        upload.discard()
    suffix = "png" if q["format"] == "png" else "jpg"
    name = f"{safe_stem(upload.filename)}-{q['background_type'].lstrip('#')}.{suffix}"
    return web.Response(body=body, content_type=_MEDIA_TYPES[q["format"]], headers={
        "Content-Disposition": f'inline; filename="{name}"',
        "X-Processing-Time": f"{elapsed:.3f}",
    })


def _cut_out(runtime, path: Path, background: str, fmt: str, max_pixels: int) -> bytes:
    """Decode, cut out, composite, encode: all CPU work, run in the image pool."""
    from matting.compositing import composite, parse_background
    from matting.images import ImageInputError, encode_jpeg, encode_png, load_image
    from matting.result import MatteResult

    check_pixels(path, max_pixels)
    try:
        rgb = load_image(path, max_pixels=max_pixels)
    except ImageInputError as exc:
        raise ApiError(400, str(exc)) from None
    alpha = runtime.cutout_process().cutout(rgb)  # in its own process: live frames never wait for it
    out = composite(rgb, MatteResult(alpha=alpha, foreground=rgb.astype(np.float32) / 255.0),
                    parse_background(background))
    return encode_png(out) if fmt == "png" else encode_jpeg(out)
