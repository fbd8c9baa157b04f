"""POST /remove-bg: one image in, its cut-out out (transparent, on a colour, a blur or an
uploaded background; PNG, WebP, JPEG or the mask), with options as query parameters or
form fields."""
from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

from aiohttp import web

from server.bodies import check_pixels
from server.context import context
from server.errors import ApiError
from server.jobs import params
from server.jobs.state import busy, jobs_state
from server.jobs.uploads import FIELD, Form, receive_form
from server.jobs.url_input import receive_input

IMAGE_PARAMS = (
    params.Param("model", params.choice("auto", "rvm", "rmbg"), "auto"),
    params.Param("format", params.choice("png", "webp", "jpeg", "mask"), "png"),
    params.Param("background_type", params.background, "transparent"),
    params.Param("foreground", params.choice("estimated", "original"), "estimated"),
    params.Param("crop", params.boolean, False),
    params.Param("crop_margin", params.integer(0, 10_000), 0),
    params.Param("max_size", params.integer(1, 16_384)),
    params.Param("url", str),
)
BACKGROUND_FILE = "background_file"
# format=jpeg without a background: a JPEG cannot be transparent
JPEG_BACKGROUND = "white"


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
    state = jobs_state(request)
    cfg = state.config
    targets = {FIELD: state.files.new_upload(), BACKGROUND_FILE: state.files.new_upload()}
    try:
        url = request.query.get("url")
        if url is None:
            form = await receive_form(request, targets, cfg.max_upload_bytes,
                                      [p.name for p in IMAGE_PARAMS if p.name != "url"])
        else:
            fetched = await receive_input(request, state.url_inputs, url, targets[FIELD], cfg.max_upload_bytes)
            form = Form(files={FIELD: fetched}, fields={})
        q = params.parse_options(request, IMAGE_PARAMS, form.fields)
        upload = form.files[FIELD]
        for field, received in form.files.items():
            if sniff_image(received.head()) is None:
                raise ApiError(415, f"'{field}' is not a supported image: send a JPEG, PNG or WebP file")
        background_path = form.files[BACKGROUND_FILE].path if BACKGROUND_FILE in form.files else None
        if background_path is not None and q["background_type"] != "transparent":
            raise ApiError(400, f"give background_type or {BACKGROUND_FILE}, not both", code="invalid_parameter")
        # The slot is taken only once the upload has arrived: slow senders must not hold one.
        if state.images_pending >= cfg.image_workers + cfg.image_queue_size:
            state.metrics.rejected.labels(queue="images").inc()
            raise busy(f"too many images in progress ({state.images_pending}); retry shortly", retry_after_s=5)
        state.images_pending += 1
        try:
            started = time.perf_counter()
            body, options, model = await asyncio.get_running_loop().run_in_executor(
                state.images, _cut_out, context(request).runtime, upload.path, background_path, q,
                cfg.max_image_pixels)
            elapsed = time.perf_counter() - started
        finally:
            state.images_pending -= 1
        state.metrics.inference.labels(kind="image").observe(elapsed)
    finally:
        for target in targets.values():
            target.unlink(missing_ok=True)
    background = "image" if background_path is not None else q["background_type"].lstrip("#")
    name = f"{safe_stem(upload.filename)}-{'mask' if options.format == 'mask' else background}.{options.suffix}"
    return web.Response(body=body, content_type=options.media_type, headers={
        "Content-Disposition": f'inline; filename="{name}"',
        "X-Processing-Time": f"{elapsed:.3f}",
        "X-Model": model,  # what auto chose
    })


def _cut_out(runtime, path: Path, background_path: Path | None, q: dict, max_pixels: int):
    """Decode, cut out, composite, encode: all CPU work, run in the image pool."""
    from matting.compositing import Background, parse_background
    from matting.cutout_options import CutoutOptions, cut_out_image

    rgb = _load(path, max_pixels, "file")
    if background_path is not None:
        background = Background("image", image=_load(background_path, max_pixels, BACKGROUND_FILE))
    elif q["format"] == "jpeg" and q["background_type"] == "transparent":
        background = parse_background(JPEG_BACKGROUND)  # JPEG has no alpha: on white, as hosted APIs do
    else:
        background = parse_background(q["background_type"])
    try:
        options = CutoutOptions(model=q["model"], format=q["format"], background=background,
                                foreground=q["foreground"], crop=q["crop"], crop_margin=q["crop_margin"],
                                max_size=q["max_size"])
    except ValueError as exc:
        raise ApiError(400, str(exc), code="invalid_parameter") from None
    # in its own process: live frames never wait for it
    body, model = cut_out_image(runtime.cutout_process(), rgb, options)
    return body, options, model


def _load(path: Path, max_pixels: int, field: str):
    from matting.images import ImageInputError, load_image

    check_pixels(path, max_pixels)
    try:
        return load_image(path, max_pixels=max_pixels)
    except ImageInputError as exc:
        raise ApiError(400, f"{field}: {exc}" if field != "file" else str(exc)) from None
