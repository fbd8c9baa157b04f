"""What the real server process logs: never the API key, and no traceback for a client that leaves."""
from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request

import pytest

from server_process import running_server

pytestmark = pytest.mark.timeout(120)

KEY = "k3y-Zz9-never-logged"


def _get(url: str, headers: dict[str, str]) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_api_key_is_redacted_in_the_access_log(tmp_path):
    with running_server(tmp_path / "data", args=["--api-key", KEY]) as server:
        assert _get(f"{server.url}/jobs?limit=5&api_key={KEY}", {}) == 200
        assert _get(f"{server.url}/jobs?api_key={KEY}x", {}) == 401
        referer = f"{server.url}/?api_key={KEY}"
        assert _get(f"{server.url}/jobs/{'0' * 32}/result?api_key={KEY}", {"Referer": referer}) == 404
    log = server.log(tail=200_000)
    assert "GET /jobs?limit=5&api_key=*** HTTP/1.1" in log, log[-2000:]
    assert KEY not in log, [line for line in log.splitlines() if KEY in line]


def test_an_aborted_upload_is_info_without_a_traceback(tmp_path):
    with running_server(tmp_path / "data") as server:
        with socket.create_connection(("127.0.0.1", server.port)) as client:
            client.sendall(b"POST /remove-bg-video HTTP/1.1\r\nHost: x\r\n"
                           b"Content-Type: multipart/form-data; boundary=bb\r\nContent-Length: 10000000\r\n\r\n"
                           b'--bb\r\nContent-Disposition: form-data; name="file"; filename="a.mp4"\r\n\r\n'
                           + b"\0" * 300_000)
            time.sleep(0.3)
        deadline = time.monotonic() + 15
        while "closed the connection" not in server.log() and time.monotonic() < deadline:
            time.sleep(0.1)
        uploads = list((tmp_path / "data" / "uploads").iterdir())
    log = server.log(tail=200_000)
    assert "INFO server.errors: POST /remove-bg-video: the client closed the connection" in log, log[-3000:]
    assert "Traceback" not in log and not [line for line in log.splitlines() if " ERROR " in line], log[-3000:]
    assert uploads == []  # the partial upload is gone
