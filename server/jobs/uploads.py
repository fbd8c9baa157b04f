"""Multipart uploads streamed to disk in chunks, with a size limit; never held whole in memory."""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from server.context import context
from server.errors import ApiError

T = TypeVar("T")

FIELD = "file"
_CHUNK = 256 * 1024
# Multipart framing around the file (boundaries, part headers) is small; a
# Content-Length this far over the limit cannot be a file within it.
_FRAMING_SLACK = 64 * 1024
# What aiohttp's multipart reader raises for a body that is not valid multipart.
_MALFORMED = (ValueError, AssertionError, RuntimeError, HttpProcessingError)


@dataclass(frozen=True)
class Upload:
    path: Path
    filename: str
    size: int

    def head(self, n: int = 64) -> bytes:
        with self.path.open("rb") as f:
            return f.read(n)

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


def _malformed(exc: Exception) -> ApiError:
    why = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return ApiError(400, f"malformed multipart body: {why}".strip())


def too_large(max_bytes: int) -> ApiError:
    return ApiError(413, f"upload larger than the limit of {_human(max_bytes)}", max_bytes=max_bytes)


def _human(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MiB" if n >= 1024 * 1024 else f"{n} bytes"


async def receive_file(request: web.Request, target: Path, max_bytes: int) -> Upload:
    """Read the one multipart field ``file`` into ``target``.

    415 if the body is not multipart/form-data, 413 past ``max_bytes``, 400 for a
    missing, empty or extra field. The partial file is removed on any error.
    """
    if request.content_type != "multipart/form-data":
        raise ApiError(415, f"send the file as multipart/form-data in a field named '{FIELD}' "
                            f"(got Content-Type {request.content_type or 'none'!r})")
    if request.content_length is not None and request.content_length > max_bytes + _FRAMING_SLACK:
        raise too_large(max_bytes)
    try:
        return await _receive(request, target, max_bytes)
    except BaseException:
        target.unlink(missing_ok=True)
        raise


async def _receive(request: web.Request, target: Path, max_bytes: int) -> Upload:
    idle_s = context(request).config.read_timeout_s
    try:
        reader = await request.multipart()
    except _MALFORMED as exc:
        raise _malformed(exc) from None
    upload: Upload | None = None
    while True:
        try:
            part = await _within(reader.next(), request, idle_s)
        except _MALFORMED as exc:
            raise _malformed(exc) from None
        if part is None:
            break
        if not isinstance(part, BodyPartReader) or part.name != FIELD or upload is not None:
            name = getattr(part, "name", None)
            raise ApiError(400, f"unexpected form field {name!r}: send exactly one field named '{FIELD}'")
        size = await _write_part(part, target, max_bytes, request, idle_s)
        upload = Upload(path=target, filename=part.filename or "upload", size=size)
    if upload is None:
        raise ApiError(400, f"missing form field '{FIELD}' with the file to process")
    if upload.size == 0:
        raise ApiError(400, "the uploaded file is empty")
    return upload


async def _within(step: Awaitable[T], request: web.Request, idle_s: float) -> T:
    """``step``, or 408 once the client has sent nothing for ``idle_s`` (between 1 and 2
    times it): a slow or stalled upload costs its connection only, never a processing slot.
    Bytes are counted as they arrive, since a multipart read may wait for many of them."""
    task = asyncio.ensure_future(step)
    seen = request.content.total_bytes
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=idle_s)
            if done:
                return task.result()
            if request.content.total_bytes == seen:
                raise ApiError(408, f"the upload stalled: nothing arrived for {idle_s:g} s; send it again")
            seen = request.content.total_bytes
    finally:
        task.cancel()


async def _write_part(part: BodyPartReader, target: Path, max_bytes: int, request: web.Request,
                      idle_s: float) -> int:
    size = 0
    with target.open("wb") as out:
        while True:
            try:
                chunk = await _within(part.read_chunk(_CHUNK), request, idle_s)
            except _MALFORMED as exc:
                raise _malformed(exc) from None
            if not chunk:
                return size
            size += len(chunk)
            if size > max_bytes:
                raise too_large(max_bytes)
            out.write(chunk)
