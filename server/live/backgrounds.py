"""Backgrounds chosen by clients: specs from JSON or the data channel, images from uploads."""
from __future__ import annotations

import re

from matting.compositing import NAMED_COLORS, Background, parse_background
from matting.images import ImageInputError, load_image

CLIENT_SPECS = f"transparent, {', '.join(NAMED_COLORS)}, #rrggbb, blur or blur:N (1-100)"
_CLIENT_SPEC = re.compile(rf"transparent|{'|'.join(NAMED_COLORS)}|#?[0-9a-f]{{6}}|blur(:\S+)?", re.IGNORECASE)


def parse_client_background(spec: object) -> Background:
    """Like ``parse_background`` but without ``image:PATH``: a client must not make the
    server read its own files; images arrive as uploads instead."""
    if not isinstance(spec, str):
        raise ValueError(f"background must be a string: {CLIENT_SPECS}")
    if spec.strip().lower().startswith("image:"):
        raise ValueError("image backgrounds are uploaded: POST multipart/form-data with an 'image' file "
                         "to /sessions/{id}/background")
    if not _CLIENT_SPEC.fullmatch(spec.strip()):
        raise ValueError(f"unknown background {spec!r}; use {CLIENT_SPECS}")
    return parse_background(spec)


def image_background(data: bytes) -> Background:
    """A background from uploaded image bytes; ValueError with a user-facing message."""
    try:
        return Background("image", image=load_image(data))
    except ImageInputError as exc:
        raise ValueError(f"background image: {exc}") from None
