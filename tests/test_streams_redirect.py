"""Camera redirects and stream errors: an allowed camera answering 302 cannot send FFmpeg
to a host off ABRAR_STREAMS_ALLOWED_HOSTS, and errors do not tell ports apart.
A tiny asyncio RTSP responder on 127.0.0.1 plays the camera; 127.0.0.2 is off the list."""
from __future__ import annotations

import asyncio

import pytest

from server.streams.config import StreamsConfig
from server.streams.ingest import describe_error, open_source
from server_process import free_port

pytestmark = pytest.mark.timeout(60)

CONFIG = StreamsConfig(allowed_hosts="127.0.0.1", open_timeout_s=3.0, read_timeout_s=3.0)


class Listener:
    """A TCP server that answers every RTSP request with ``reply`` (None: says nothing)."""

    def __init__(self, host: str, reply: str | None):
        self.host, self.reply = host, reply
        self.connections = 0
        self.port = free_port()
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Listener:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        return self

    async def __aexit__(self, *exc) -> None:
        assert self._server is not None
        self._server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if self.reply is None:
                    continue
                cseq = next((line.split(b":", 1)[1].strip().decode() for line in head.split(b"\r\n")
                             if line.lower().startswith(b"cseq:")), "1")
                writer.write(self.reply.format(cseq=cseq).encode())
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def _redirect_to(url: str) -> str:
    return "RTSP/1.0 302 Moved Temporarily\r\nCSeq: {cseq}\r\nLocation: " + url + "\r\nContent-Length: 0\r\n\r\n"


async def _open_error(url: str, config: StreamsConfig = CONFIG) -> str:
    try:
        container = await asyncio.to_thread(open_source, url, config)
    except Exception as exc:  # noqa: BLE001 - the error text is what is under test
        return describe_error(exc, url)
    container.close()
    raise AssertionError(f"{url} opened")


async def test_redirect_off_the_allow_list_is_refused():
    async with Listener("127.0.0.2", None) as hidden:
        async with Listener("127.0.0.1", _redirect_to(f"rtsp://127.0.0.2:{hidden.port}/secret")) as camera:
            error = await _open_error(f"rtsp://127.0.0.1:{camera.port}/cam")
            assert camera.connections >= 1
            assert hidden.connections == 0, "FFmpeg followed the redirect off the allow-list"
            assert "redirect" in error and "allow-list" in error, error
            assert "127.0.0.2" not in error and str(hidden.port) not in error, error


async def test_redirect_is_followed_within_the_allow_list_only_when_allowed():
    async with Listener("127.0.0.1", "RTSP/1.0 404 Not Found\r\nCSeq: {cseq}\r\n\r\n") as target:
        async with Listener("127.0.0.1", _redirect_to(f"rtsp://127.0.0.1:{target.port}/x")) as camera:
            error = await _open_error(f"rtsp://127.0.0.1:{camera.port}/cam")
            assert target.connections >= 1, error  # allowed host: FFmpeg goes on to it


async def test_errors_are_coarse_not_socket_errors():
    closed = f"rtsp://127.0.0.1:{free_port()}/cam"
    async with Listener("127.0.0.1", "SSH-2.0-OpenSSH_9.2\r\n\r\n") as ssh:
        errors = [await _open_error(closed), await _open_error(f"rtsp://127.0.0.1:{ssh.port}/cam")]
    assert errors == ["unreachable: no RTSP camera answered", "not an RTSP server"], errors
