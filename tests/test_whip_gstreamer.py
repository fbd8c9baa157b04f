"""A real third-party WHIP publisher: Debian's simple-whip-client (GStreamer webrtcbin)
sends a still photo of a person as live VP8 to /whip of a real `abrar serve`. The
session mattes it (stats, and an RMBG snapshot compared with the ground-truth alpha),
records it, and the client's own DELETE on exit ends the session and finalises the file.
The client trickles ICE by default: its PATCH gets 405 and it connects all the same.
All of it runs in a network namespace the test creates (tests/netns_support.py)."""
from __future__ import annotations

import json
import re
import signal
import time
import urllib.request
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from conftest import load_alpha
from gst_whip import build_stub, require_whip_client, whip_client
from netns_support import in_private_network
from server_process import running_server
from webrtc_client import load_clip

CLIP = "temporal/p3m_00a7a27c_porch_512x288"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def _get(url: str, method: str = "GET", body: bytes | None = None, timeout: float = 120):
    request = urllib.request.Request(url, method=method, data=body,
                                     headers={"Content-Type": "application/json"} if body else {})
    with urllib.request.urlopen(request, timeout=timeout) as resp:
        return resp.status, resp.read()


def _wait(predicate, timeout: float, what: str, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"{what} not within {timeout:.0f} s")


def _sessions(url: str) -> list[dict]:
    return json.loads(_get(f"{url}/sessions")[1])["sessions"]


def test_simple_whip_client_publishes_a_matted_recorded_session(media, tmp_path):
    require_whip_client()
    stub = build_stub(tmp_path / "stub")
    photo = tmp_path / "person.png"
    Image.fromarray(load_clip(media / CLIP / "com.mkv")[0]).save(photo)
    truth = load_alpha(media / CLIP / "pha" / "0000.png")
    pipeline = (f"filesrc location={photo} ! pngdec ! imagefreeze is-live=true ! videoconvert ! "
                "video/x-raw,format=I420,framerate=15/1 ! vp8enc deadline=1 ! rtpvp8pay pt=96 ! "
                "queue ! application/x-rtp,media=video,encoding-name=VP8,payload=96")
    # libnice will not pair with 127.0.0.1, so server, client and our HTTP calls all run in a
    # namespace of the test's own where the only other address is a private one
    recording = in_private_network(lambda address: _publish(address, tmp_path, pipeline, stub, truth))
    with av.open(str(tmp_path / "rec" / recording)) as container:
        assert sum(1 for _ in container.decode(video=0)) >= 5


def _publish(address: str, tmp_path: Path, pipeline: str, stub: Path, truth: np.ndarray) -> str:
    """Publish, matte, snapshot, record and DELETE; the finished recording's name."""
    with running_server(tmp_path / "data", args=["--recordings-dir", str(tmp_path / "rec")],
                        env={"ABRAR_ICE_ADDRESSES": address}) as server:
        client = whip_client(f"{server.url}/whip?background=green", pipeline, stub, tmp_path / "whip.log")
        try:
            session = _wait(lambda: next((s for s in _sessions(server.url) if s["stats"]["frames"] >= 3), None),
                            90, "matted frames from simple-whip-client")
            sid = session["id"]
            assert session["background"] == "green"
            assert (session["stats"]["width"], session["stats"]["height"]) == (512, 288)
            status, body = _get(f"{server.url}/sessions/{sid}/recording", "POST", b'{"action": "start"}')
            recording = json.loads(body)["name"]
            _wait(lambda: next(s for s in _sessions(server.url) if s["id"] == sid)["stats"]["frames"]
                  >= session["stats"]["frames"] + 10, 90, "10 more matted frames")

            status, png = _get(f"{server.url}/sessions/{sid}/snapshot", "POST")
            snapshot = tmp_path / "snapshot.png"
            snapshot.write_bytes(png)
            with Image.open(snapshot) as im:
                assert im.mode == "RGBA" and im.size == (512, 288)
                alpha = np.asarray(im)[:, :, 3].astype(np.float32) / 255.0
            assert float(np.abs(alpha - truth).mean()) < 0.08  # RMBG on a VP8 copy of the photo

            client.send_signal(signal.SIGINT)  # the client DELETEs its resource as it leaves
            client.wait(timeout=30)
            _wait(lambda: not _sessions(server.url), 30, "the session to end")
        finally:
            if client.poll() is None:
                client.kill()
                client.wait(timeout=10)
        log = (tmp_path / "whip.log").read_text(errors="replace")
        assert "DTLS connected" in log, log[-2000:]
        access = server.log(50000)
        assert re.search(rf'"PATCH /whip/{sid}[^"]*" 405', access), "the client's trickle PATCH was not refused"
        assert re.search(rf'"DELETE /whip/{sid}[^"]*" 200', access), "the client did not DELETE its session"
        listed = json.loads(_get(f"{server.url}/recordings")[1])["recordings"]
        assert recording in [r["name"] for r in listed]
    return recording
