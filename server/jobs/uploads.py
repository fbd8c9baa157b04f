"""Multipart uploads streamed to disk in chunks, with a size limit; never held whole in memory."""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Collection, Mapping
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
# An option's value (a colour, a number) fits in far less.
_MAX_TEXT = 1024


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


@dataclass(frozen=True)
class Form:
    """A multipart body read by :func:`receive_form`: the files on disk and the text fields."""

    files: dict[str, Upload]
    fields: dict[str, str]


async def receive_file(request: web.Request, target: Path, max_bytes: int) -> Upload:
    """Read the one multipart field ``file`` into ``target``.

    415 if the body is not multipart/form-data, 413 past ``max_bytes``, 400 for a
    missing, empty or extra field. The partial file is removed on any error.
    """
    return (await receive_form(request, {FIELD: target}, max_bytes)).files[FIELD]


async def receive_form(request: web.Request, targets: Mapping[str, Path], max_bytes: int,
                       options: Collection[str] = ()) -> Form:
    """Read a multipart body: file fields named in ``targets`` (each written to its path;
    ``file`` required, the others optional) and short text fields named in ``options``.
    Errors as :func:`receive_file`; an unknown field is a 400 that says where options go.
    Every file written is removed on any error."""
    if request.content_type != "multipart/form-data":
        raise ApiError(415, f"send the file as multipart/form-data in a field named '{FIELD}' "
                            f"(got Content-Type {request.content_type or 'none'!r})")
    if request.content_length is not None and request.content_length > max_bytes + _FRAMING_SLACK:
        raise too_large(max_bytes)
    try:
        return await _receive(request, targets, max_bytes, options)
    except BaseException:
        for target in targets.values():
            target.unlink(missing_ok=True)
        raise


def _unexpected(name: str | None, targets: Mapping[str, Path], options: Collection[str]) -> ApiError:
    if not options:
        return ApiError(400, f"unexpected form field {name!r}: send exactly one field named '{FIELD}'")
    files = ", ".join(f"'{t}'" for t in targets)
    return ApiError(400, f"unknown form field {name!r}: files go in {files}; options go in form fields or "
                         f"query parameters named {', '.join(options)}", code="unknown_parameter")


async def _receive(request: web.Request, targets: Mapping[str, Path], max_bytes: int,
                   options: Collection[str]) -> Form:
    idle_s = context(request).config.read_timeout_s
    try:
        reader = await request.multipart()
    except _MALFORMED as exc:
        raise _malformed(exc) from None
    form = Form(files={}, fields={})
    while True:
        try:
            part = await _within(reader.next(), request, idle_s)
        except _MALFORMED as exc:
            raise _malformed(exc) from None
        if part is None:
            break
        name = getattr(part, "name", None)
        if not isinstance(part, BodyPartReader) or name is None:
            raise _unexpected(name, targets, options)
        if name in form.files or name in form.fields:
            raise ApiError(400, f"form field '{name}' given more than once: send exactly one field named "
                                f"'{name}'", code="invalid_parameter")
        if name in targets:
            size = await _write_part(part, targets[name], max_bytes, request, idle_s)
            if size == 0:
                raise ApiError(400, "the uploaded file is empty" if name == FIELD
                               else f"the file in '{name}' is empty")
            form.files[name] = Upload(path=targets[name], filename=part.filename or "upload", size=size)
        elif name in options:
            form.fields[name] = await _read_text(part, request, idle_s)
        else:
            raise _unexpected(name, targets, options)
    if FIELD not in form.files:
        raise ApiError(400, f"missing form field '{FIELD}' with the file to process")
    return form


async def _read_text(part: BodyPartReader, request: web.Request, idle_s: float) -> str:
    data = bytearray()
    while chunk := await _next_chunk(part, request, idle_s):
        data += chunk
        if len(data) > _MAX_TEXT:
            raise ApiError(400, f"form field '{part.name}' is longer than {_MAX_TEXT} bytes",
                           code="invalid_parameter")
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise ApiError(400, f"form field '{part.name}' is not UTF-8 text", code="invalid_parameter") from None


async def _next_chunk(part: BodyPartReader, request: web.Request, idle_s: float) -> bytes:
    """The part's next chunk (empty at its end), within the idle timeout."""
    try:
        return await _within(part.read_chunk(_CHUNK), request, idle_s)
    except _MALFORMED as exc:
        raise _malformed(exc) from None


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
        while chunk := await _next_chunk(part, request, idle_s):
            size += len(chunk)
            if size > max_bytes:
                raise too_large(max_bytes)
            out.write(chunk)
    return size
