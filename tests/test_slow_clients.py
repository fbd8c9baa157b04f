"""Slow and stalled clients over raw sockets: they cost a connection, never an image slot,
and silent ones are cut off after ABRAR_READ_TIMEOUT_S."""
from __future__ import annotations

import asyncio
import time

import pytest

from api_support import api_client, form

pytestmark = pytest.mark.timeout(180)

BOUNDARY = "slowclientboundary"
TIMEOUT_S = 2.0


def _request_head(port: int, length: int) -> bytes:
    return (f"POST /remove-bg HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
            f"Content-Length: {length}\r\n\r\n"
            f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n"
            "Content-Type: image/png\r\n\r\n\x89PNG").encode("latin-1")


async def _drip(port: int, stop: asyncio.Event) -> None:
    """An upload that never ends: one byte a second, well inside the idle timeout."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(_request_head(port, 10_000_000))
        await writer.drain()
        while not stop.is_set():
            writer.write(b"\0")
            await writer.drain()
            await asyncio.sleep(TIMEOUT_S / 2)
    finally:
        writer.close()


async def _silent_for(port: int, data: bytes) -> tuple[bytes, float, float]:
    """Send ``data``, then nothing: what the server answers, when its answer came,
    and when it closed the connection (seconds after sending)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    start = time.monotonic()
    writer.write(data)
    await writer.drain()
    answer, answered = b"", None
    try:
        while chunk := await asyncio.wait_for(reader.read(65536), 40):
            answer += chunk
            answered = answered or time.monotonic() - start
    finally:
        writer.close()
    closed = time.monotonic() - start
    return answer, answered if answered is not None else closed, closed


async def test_slow_uploads_do_not_take_image_slots(runtime, media, tmp_path):
    photo = (media / "images" / "p3m_0a78cf02.png").read_bytes()
    async with api_client(runtime, tmp_path / "data", server={"read_timeout_s": TIMEOUT_S},
                          image_workers=1, image_queue_size=1) as client:
        port = client.server.port
        stop = asyncio.Event()
        drips = [asyncio.create_task(_drip(port, stop)) for _ in range(9)]
        try:
            await asyncio.sleep(TIMEOUT_S)  # all nine are sending
            # Nine uploads in flight, two slots (one worker, one queued): a complete image still gets in.
            resp = await client.post("/remove-bg", data=form(photo, "p.png", content_type="image/png"))
            assert resp.status == 200, await resp.text()
            assert not any(d.done() for d in drips), [d.exception() for d in drips if d.done()]
        finally:
            stop.set()
            await asyncio.gather(*drips, return_exceptions=True)

        # A body that stops arriving: 408 JSON after 1-2 idle periods; the connection
        # closes after aiohttp's lingering read (10 s) at most.
        answer, answered, closed = await _silent_for(port, _request_head(port, 1_000_000))
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert b'"code": "request_timeout"' in answer, answer
        assert answered < 2 * TIMEOUT_S + 5 and closed < 2 * TIMEOUT_S + 20, (answered, closed)
        # Headers that stop arriving: the connection is closed, nothing answered.
        answer, _, closed = await _silent_for(port, b"POST /remove-bg HTTP/1.1\r\nHost: x\r\n")
        assert answer == b"" and closed < TIMEOUT_S + 8, (answer, closed)
