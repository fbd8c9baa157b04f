"""File downloads with Range requests whose errors are JSON like every other error."""
from __future__ import annotations

import re
from pathlib import Path

from aiohttp import web

from server.errors import ApiError

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def file_response(request: web.Request, path: Path, headers: dict[str, str]) -> web.FileResponse:
    """``path`` as a FileResponse, after refusing (416, JSON) a Range it cannot satisfy.

    aiohttp answers those with a plain-text 416, and serves ``bytes=-0`` (an empty
    suffix, unsatisfiable by RFC 9110) as the whole file.
    """
    header = request.headers.get("Range")
    if header is not None:
        _check_range(header.strip(), path.stat().st_size)
    return web.FileResponse(path, headers=headers)


def _check_range(header: str, size: int) -> None:
    match = _RANGE.fullmatch(header)
    first, last = (match.group(1), match.group(2)) if match else ("", "")
    if not match or (not first and not last):
        reason = "only one range, as bytes=START-END, bytes=START- or bytes=-LENGTH"
    elif not first and int(last) == 0:
        reason = "an empty suffix (bytes=-0) selects nothing"
    elif first and int(first) >= size:
        reason = f"the range starts at or past the end of the {size}-byte file"
    elif first and last and int(last) < int(first):
        reason = "the range ends before it starts"
    else:
        return
    raise ApiError(416, f"cannot serve Range {header!r}: {reason}", headers={"Content-Range": f"bytes */{size}"})
