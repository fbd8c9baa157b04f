"""Backgrounds chosen by clients: specs from JSON or the data channel, images from uploads."""
from __future__ import annotations

import asyncio
import re

from aiohttp import web

from matting.compositing import NAMED_COLORS, Background, parse_background
from matting.images import ImageInputError, load_image
from server.bodies import check_pixels, file_part, json_body
from server.context import context
from server.errors import ApiError

CLIENT_SPECS = f"transparent, {', '.join(NAMED_COLORS)}, #rrggbb, blur or blur:N (1-100)"
_CLIENT_SPEC = re.compile(rf"transparent|{'|'.join(NAMED_COLORS)}|#?[0-9a-f]{{6}}|blur(:\S+)?", re.IGNORECASE)


def parse_client_background(spec: object) -> Background:
    """Like ``parse_background`` but without ``image:PATH``: a client must not make the
    server read its own files; images arrive as uploads instead."""
    return client_background(spec)[0]


def client_background(spec: object) -> tuple[Background, str]:
    """:func:`parse_client_background`, and ``spec`` itself (a string) as the label to report."""
    if not isinstance(spec, str):
        raise ValueError(f"background must be a string: {CLIENT_SPECS}")
    if spec.strip().lower().startswith("image:"):
        raise ValueError("image backgrounds are uploaded: POST multipart/form-data with an 'image' file "
                         "to the session's or stream's /background")
    if not _CLIENT_SPEC.fullmatch(spec.strip()):
        raise ValueError(f"unknown background {spec!r}; use {CLIENT_SPECS}")
    return parse_background(spec), spec


def image_background(data: bytes, max_pixels: int) -> Background:
    """A background from uploaded image bytes: 413 over ``max_pixels``, ValueError with a
    user-facing message for anything else wrong. CPU work: run it off the event loop."""
    check_pixels(data, max_pixels)
    try:
        return Background("image", image=load_image(data, max_pixels=max_pixels))
    except ImageInputError as exc:
        raise ValueError(f"background image: {exc}") from None


async def background_from_request(request: web.Request, max_image_bytes: int) -> tuple[Background, str]:
    """A background change request: JSON ``{"background": spec}`` or a multipart ``image``
    upload, decoded in the heavy lane with the ``ABRAR_MAX_IMAGE_PIXELS`` limit. Returns
    the background and the label to report."""
    try:
        if request.content_type == "multipart/form-data":
            data = await file_part(request, "image", max_image_bytes)
            ctx = context(request)
            background = await asyncio.get_running_loop().run_in_executor(
                ctx.heavy, image_background, data, ctx.config.jobs.max_image_pixels)
            return background, "image"
        return client_background((await json_body(request)).get("background"))
    except ValueError as exc:
        raise ApiError(400, str(exc), code="bad_background") from None
