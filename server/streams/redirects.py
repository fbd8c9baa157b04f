"""Camera redirects checked against the allow-list before FFmpeg opens a camera.

FFmpeg's RTSP demuxer follows 3xx answers by itself, to any host and port, and has
no option to stop it. So, when ``ABRAR_STREAMS_ALLOWED_HOSTS`` is set, we first ask
the camera ourselves (one DESCRIBE per hop) and refuse a redirect to a host off the
list. A camera that answers us and FFmpeg differently can still slip through; the
allow-list is meant for cameras the operator trusts.
"""
from __future__ import annotations

import socket
import ssl
from urllib.parse import urlsplit, urlunsplit

from server.streams.urls import HostRule, UrlError, parse_source_url

MAX_HOPS = 5
_MAX_HEAD = 16 * 1024


class RedirectRefused(Exception):
    """The camera redirects off the allow-list; the message is safe to show."""


def check_redirects(url: str, allowed: tuple[HostRule, ...], timeout: float) -> None:
    """Follow the camera's redirects (at most MAX_HOPS); RedirectRefused if one leaves the list."""
    for _ in range(MAX_HOPS):
        try:
            status, location = _describe(url, timeout)
        except OSError:
            return  # no answer to us: FFmpeg's own attempt reports why
        if not 300 <= status < 400:
            return
        try:
            url = parse_source_url(location or "", allowed).url
        except UrlError:
            raise RedirectRefused("the camera redirects to a host that is not on the allow-list "
                                  "of camera hosts; use the camera's final address") from None
    raise RedirectRefused(f"the camera redirects more than {MAX_HOPS} times")


def _describe(url: str, timeout: float) -> tuple[int, str | None]:
    """Send one RTSP DESCRIBE; the status code and Location header of the answer."""
    parts = urlsplit(url)
    source = parse_source_url(url)
    # the request line carries no credentials (as FFmpeg's does not)
    target = urlunsplit((parts.scheme, parts.netloc.rsplit("@", 1)[-1], parts.path or "/", parts.query, ""))
    request = (f"DESCRIBE {target} RTSP/1.0\r\nCSeq: 1\r\nAccept: application/sdp\r\n"
               "User-Agent: abrar\r\n\r\n").encode()
    with socket.create_connection((source.host, source.port), timeout=timeout) as raw:
        sock: socket.socket = raw
        if source.scheme == "rtsps":
            context = ssl.create_default_context()
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # cameras self-sign
            sock = context.wrap_socket(raw, server_hostname=source.host)
        sock.sendall(request)
        head = b""
        while b"\r\n\r\n" not in head and len(head) < _MAX_HEAD:
            chunk = sock.recv(4096)
            if not chunk:
                break
            head += chunk
    lines = head.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    fields = lines[0].split(" ", 2)
    if len(fields) < 2 or not fields[0].startswith("RTSP/") or not fields[1].isdigit():
        return 0, None
    location = next((line.split(":", 1)[1].strip() for line in lines[1:]
                     if line.lower().startswith("location:")), None)
    return int(fields[1]), location
