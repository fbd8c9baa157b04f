"""The API key never reaches the server log: not from ?api_key=, a Referer, or anywhere else."""
from __future__ import annotations

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
