"""Camera URL checks, credential redaction, and hostile URLs refused before anything is read."""
from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import threading

import av
import pytest

from api_support import wait_for
from server.config import ServerConfig
from server.streams.config import StreamsConfig
from server.streams.ingest import (
    PROTOCOL_WHITELIST,
    backoff_delay,
    jittered,
    open_options,
    open_source,
)
from server.streams.urls import (
    UrlError,
    parse_allow_list,
    parse_source_url,
    redact,
    redact_text,
)
from streams_support import free_port, start_app

pytestmark = pytest.mark.timeout(60)


# -- pure functions ---------------------------------------------------------------

@pytest.mark.parametrize("url, host, port", [
    ("rtsp://cam.local/stream1", "cam.local", 554),
    ("rtsps://cam.local:8322/s", "cam.local", 8322),
    ("RTSP://Cam.LOCAL:8554/x?channel=1", "cam.local", 8554),
    ("rtsp://user:p%40ss@10.0.0.7:554/h264", "10.0.0.7", 554),
    ("rtsp://[fd00::1]:8554/live", "fd00::1", 8554),
    ("rtsps://cam.local", "cam.local", 322),
])
def test_accepts_rtsp_urls(url, host, port):
    src = parse_source_url(url)
    assert (src.host, src.port) == (host, port)
    assert src.url.startswith(src.scheme + "://")  # FFmpeg wants a lower-case scheme


@pytest.mark.parametrize("url, why", [
    ("file:///etc/passwd", "only rtsp:// and rtsps://"),
    ("concat:/etc/passwd|/etc/shadow", "only rtsp:// and rtsps://"),
    ("http://127.0.0.1/x", "only rtsp:// and rtsps://"),
    ("subfile,,start,0,end,100,,:/etc/passwd", "only rtsp:// and rtsps://"),
    ("/etc/passwd", "only rtsp:// and rtsps://"),
    ("rtsp://", "no host"),
    ("rtsp:///stream", "no host"),
    ("rtsp:/cam.local/x", "must look like"),
    ("rtsp://cam.local:99999/x", "no valid host"),
    ("rtsp://cam.local:abc/x", "no valid host"),
    ("rtsp://cam local/x", "whitespace"),
    ("rtsp://cam.local/x\nfile:///etc/passwd", "whitespace"),
    ("rtsp://evil.com\\@cam.local/x", "backslash"),
    ("rtsp://a@b@cam.local/x", "more than one '@'"),
    ("rtsp://cam_local!/x", "no valid host"),
    ("rtsp://[zz::1]/x", "malformed"),
    ("rtsp://cam.local/x#frag", "fragment"),
    ("", "non-empty string"),
    (42, "non-empty string"),
    ("rtsp://" + "a" * 3000, "longer than"),
])
def test_rejects_hostile_or_malformed_urls(url, why):
    with pytest.raises(UrlError, match=why):
        parse_source_url(url)


def test_allow_list():
    rules = parse_allow_list(" cam1.lan , 10.0.0.5:8554, 192.168.1.0/24, [fd00::1] ,")
    assert parse_source_url("rtsp://CAM1.lan/x", rules).host == "cam1.lan"
    assert parse_source_url("rtsp://10.0.0.5:8554/x", rules).port == 8554
    assert parse_source_url("rtsp://192.168.1.77/x", rules).host == "192.168.1.77"
    assert parse_source_url("rtsp://[fd00::1]:554/x", rules).host == "fd00::1"
    for url in ("rtsp://cam2.lan/x", "rtsp://10.0.0.5/x", "rtsp://192.168.2.1/x",
                "rtsp://cam1.lan.evil.com/x", "rtsp://cam1.lan@evil.com/x"):
        with pytest.raises(UrlError, match="allow-list"):
            parse_source_url(url, rules)
    # a network rule matches IP literals only; names are not resolved (no DNS games)
    with pytest.raises(UrlError, match="allow-list"):
        parse_source_url("rtsp://localhost/x", parse_allow_list("127.0.0.0/8"))
    for bad in ("10.0.0.0/33", "cam:notaport", "a b"):
        with pytest.raises(ValueError):
            parse_allow_list(bad)


def test_redaction():
    assert redact("rtsp://admin:hunter2@cam.local:554/s?ch=1") == "rtsp://***@cam.local:554/s?ch=1"
    assert redact("rtsp://admin@cam.local/s") == "rtsp://***@cam.local/s"
    assert redact("rtsp://cam.local/s?user=admin&password=hunter2&ch=2") == \
        "rtsp://cam.local/s?user=***&password=***&ch=2"
    assert redact("rtsp://cam.local/s") == "rtsp://cam.local/s"
    url = "rtsp://admin:hunter2@cam.local/s"
    message = redact_text(f"Connection refused: '{url}' and rtsp://x:y@other/z", url)
    assert "hunter2" not in message and ":y@" not in message
    assert parse_source_url(url).redacted == "rtsp://***@cam.local/s"


def test_reconnects_probe_often_early_then_back_off_with_jitter():
    # every 0.5 s during the first 30 s of an outage, then growing with it, capped
    assert [backoff_delay(t, 0.5, 30.0, 30.0) for t in (0.0, 10.0, 29.9)] == [0.5, 0.5, 0.5]
    assert [backoff_delay(t, 0.5, 30.0, 30.0) for t in (30.0, 34.0, 50.0, 90.0, 1000.0)] == \
        [0.5, 2.0, 10.0, 30.0, 30.0]
    rng = random.Random(1)
    delays = [jittered(2.0, rng) for _ in range(200)]
    assert all(1.5 <= d <= 2.0 for d in delays) and len(set(delays)) == 200


def test_ffmpeg_cannot_open_other_protocols_even_if_validation_were_bypassed(tmp_path):
    """Defence in depth: the opener itself refuses file:, concat:, http: and friends."""
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    config = StreamsConfig(open_timeout_s=2, read_timeout_s=2)
    assert open_options(config)["protocol_whitelist"] == PROTOCOL_WHITELIST == "rtsp,rtp,udp,tcp,tls"
    assert open_options(config)["rtsp_transport"] == "tcp"
    with _Listener() as http:
        for url in (f"file://{secret}", str(secret), f"concat:{secret}|{secret}",
                    f"http://127.0.0.1:{http.port}/x", f"subfile,,start,0,end,5,,:{secret}"):
            with pytest.raises(av.FFmpegError):
                open_source(url, config).close()
        assert http.connections == 0


# -- through the API ---------------------------------------------------------------

class _Listener:
    """A TCP port that counts who connects: proof that a refused URL was never fetched."""

    def __enter__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()
        return self

    def _accept(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


def _config(tmp_path, **streams) -> ServerConfig:
    defaults = {"open_timeout_s": 2, "read_timeout_s": 2, "reconnect_min_s": 0.1, "reconnect_max_s": 0.4}
    return ServerConfig(data_dir=tmp_path / "data", recordings_dir=tmp_path / "rec",
                        streams=StreamsConfig(**{**defaults, **streams}))


async def test_api_refuses_hostile_urls_and_reads_nothing(tmp_path, runtime):
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    server, http, base = await start_app(_config(tmp_path, allowed_hosts="10.0.0.0/8, cam.lan"), runtime)
    try:
        with _Listener() as trap:
            hostile = [
                f"file://{secret}", "file:///etc/passwd", f"concat:{secret}|/etc/passwd",
                f"http://127.0.0.1:{trap.port}/x", f"tcp://127.0.0.1:{trap.port}", "rtsp://", "rtsp:///x",
                "not a url", "rtsp://cam.lan:0/x",
            ]
            not_allowed = [
                f"rtsp://127.0.0.1:{trap.port}/x",
                f"rtsp://cam.lan@127.0.0.1:{trap.port}/x",    # allow-listed name as a user name
            ]
            for url, status, code in [(u, 400, "bad_url") for u in hostile] + \
                                     [(u, 403, "host_not_allowed") for u in not_allowed]:
                async with http.post(f"{base}/streams", json={"url": url}) as resp:
                    body = await resp.json()
                    assert resp.status == status, (url, body)
                    assert body["error"]["code"] == code and body["error"]["message"], body
            for payload, code in (({}, "bad_request"), ({"url": 5}, "bad_url"),
                                  ({"url": "rtsp://cam.lan/x", "background": "image:/etc/passwd"}, "bad_background"),
                                  ({"url": "rtsp://cam.lan/x", "background": "nope"}, "bad_background"),
                                  ({"url": "rtsp://cam.lan/x", "record": "yes"}, "bad_request"),
                                  ({"url": "rtsp://cam.lan/x", "extra": 1}, "bad_request")):
                async with http.post(f"{base}/streams", json=payload) as resp:
                    body = await resp.json()
                    assert resp.status == 400 and body["error"]["code"] == code, (payload, body)
            async with http.post(f"{base}/streams", data="{not json") as resp:
                assert resp.status == 400
            await asyncio.sleep(0.5)
            assert trap.connections == 0
        async with http.get(f"{base}/streams") as resp:
            assert (await resp.json())["streams"] == []
        async with http.get(f"{base}/streams/nope") as resp:
            assert resp.status == 404 and (await resp.json())["error"]["code"] == "not_found"
    finally:
        await http.close()
        await server.close()


async def test_unreachable_camera_is_kept_and_retried_with_its_error(tmp_path, runtime, caplog):
    """Decision: a camera that is down at creation is accepted and retried (it may come up
    later), and its state says so; ``require_online`` turns that into a 422."""
    caplog.set_level(logging.INFO)
    closed = free_port()
    url = f"rtsp://admin:hunter2@127.0.0.1:{closed}/x?password=swordfish"
    server, http, base = await start_app(_config(tmp_path), runtime)
    try:
        async with http.post(f"{base}/streams", json={"url": url, "record": True}) as resp:
            created = await resp.json()
            assert resp.status == 201, created
        assert created["url"] == f"rtsp://***@127.0.0.1:{closed}/x?password=***"

        async def failing():
            async with http.get(f"{base}/streams/{created['id']}") as r:
                s = await r.json()
            return s if s["reconnect_attempt"] >= 3 else None

        state = await wait_for(failing, 20, what="three failed connection attempts")
        print(f"\nunreachable camera: {state['state']}, attempt {state['reconnect_attempt']}, "
              f"error {state['last_error']}")
        assert state["state"] == "reconnecting"
        assert state["last_error"]["message"] == "unreachable: no RTSP camera answered"  # coarse, not the socket error
        assert state["next_retry_at"] is not None
        assert state["frames_in"] == 0 and state["reconnects"] == 0 and state["recordings"] == []

        async with http.post(f"{base}/streams/{created['id']}/snapshot") as resp:
            assert resp.status == 409 and (await resp.json())["error"]["code"] == "no_frame"
        async with http.get(f"{base}/metrics") as resp:
            metrics = await resp.text()
        assert f'abrar_stream_state{{state="reconnecting",stream="{created["id"]}"}} 1.0' in metrics
        async with http.get(f"{base}/streams") as resp:
            listing = await resp.text()

        async with http.post(f"{base}/streams", json={"url": url, "require_online": True}) as resp:
            refused = await resp.json()
            assert resp.status == 422 and refused["error"]["code"] == "source_unreachable", refused
        async with http.get(f"{base}/streams") as resp:
            assert len((await resp.json())["streams"]) == 1  # the refused one was not kept

        # The saved list needs the real URL to reconnect after a restart: owner-only file.
        saved = tmp_path / "data" / "streams.json"
        assert "hunter2" in saved.read_text() and (os.stat(saved).st_mode & 0o777) == 0o600

        async with http.delete(f"{base}/streams/{created['id']}") as resp:
            assert resp.status == 200
        for text in (str(created), str(state), listing, metrics, str(refused), caplog.text):
            assert "hunter2" not in text and "swordfish" not in text
    finally:
        await http.close()
        await server.close()


async def test_stream_limit(tmp_path, runtime):
    server, http, base = await start_app(_config(tmp_path, max_streams=1, persist=False), runtime)
    try:
        url = f"rtsp://127.0.0.1:{free_port()}/x"
        async with http.post(f"{base}/streams", json={"url": url}) as resp:
            assert resp.status == 201
        async with http.post(f"{base}/streams", json={"url": url}) as resp:
            assert resp.status == 503 and (await resp.json())["error"]["code"] == "too_many_streams"
    finally:
        await http.close()
        await server.close()


async def test_openapi_lists_the_stream_api(tmp_path, runtime):
    server, http, base = await start_app(_config(tmp_path, persist=False), runtime)
    try:
        async with http.get(f"{base}/openapi.json") as resp:
            spec = await resp.json()
        for path, method in (("/streams", "post"), ("/streams", "get"), ("/streams/{id}", "get"),
                             ("/streams/{id}", "delete"), ("/streams/{id}/offer", "post"),
                             ("/streams/{id}/snapshot", "post"), ("/streams/{id}/recording", "post"),
                             ("/streams/{id}/background", "post")):
            assert method in spec["paths"][path], (path, method)
        for name in ("Stream", "StreamCreate", "StreamList", "StreamOffer", "StreamAnswer", "BackgroundSpec"):
            assert name in spec["components"]["schemas"]
    finally:
        await http.close()
        await server.close()
