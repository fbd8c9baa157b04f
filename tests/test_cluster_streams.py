"""Cameras and live sessions across nodes: one owner per camera, takeover when it is
killed, viewers redirected to the owner, lists gathered from every node."""
from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
import requests

from cluster_support import NODE_TIMEOUT_S, T, query, start_nodes, stop_nodes, wait_until
from streams_support import Viewer, clip_camera
from webrtc_client import LiveClient, SilentTrack

pytestmark = [pytest.mark.rtsp, pytest.mark.slow, pytest.mark.timeout(300)]

# A target rate any node keeps: these tests are about ownership and failover, and admission
# (tested on its own) must not refuse a camera because a live session shares the node.
STREAM_ARGS = ["--streams-read-timeout-s", "3", "--streams-open-timeout-s", "3",
               "--streams-reconnect-min-s", "0.25", "--streams-reconnect-max-s", "1", "--live-target-fps", "1"]
TAKEOVER_LIMIT_S = 15.0


@pytest.fixture
def camera(tmp_path_factory, media):
    yield from clip_camera(tmp_path_factory, media)


async def _first_frame(viewer: Viewer, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while not viewer.frames:
        if time.monotonic() > deadline:
            raise AssertionError(f"no frame within {timeout:.0f} s")
        await asyncio.sleep(0.05)
    return viewer.frames[0][0]


async def test_camera_moves_to_another_node_when_its_owner_is_killed(postgres, camera, tmp_path):
    db = postgres.create_database("streams_takeover")
    nodes = start_nodes(db, tmp_path / "data", ["a", "b"], *STREAM_ARGS,
                        "--recordings-dir", str(tmp_path / "rec"))
    redirects: list[str] = []
    trace = aiohttp.TraceConfig()

    async def on_redirect(session, context, params):
        redirects.append(str(params.url))
    trace.on_request_redirect.append(on_redirect)
    http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=T), trace_configs=[trace])
    viewers: list[Viewer] = []
    live: LiveClient | None = None
    try:
        resp = requests.post(f"{nodes['a'].url}/streams", json={"url": camera.url, "record": True}, timeout=T)
        assert resp.status_code == 201, resp.text
        sid = resp.json()["id"]
        assert query(db, "SELECT owner FROM streams") == [{"owner": "a"}]  # saved before the 201

        # A live session on b; both lists gathered from either node name the node serving each item.
        live = LiveClient(nodes["b"].url, SilentTrack())
        await live.connect(http)
        listed = requests.get(f"{nodes['a'].url}/sessions", timeout=T).json()["sessions"]
        assert [(s["id"], s["node"]) for s in listed] == [(live.session_id, "b")]
        listed = requests.get(f"{nodes['b'].url}/streams", timeout=T).json()["streams"]
        assert [(s["id"], s["node"]) for s in listed] == [(sid, "a")]

        # A non-owner answers with a 307 to the owner, but forwards a viewer's offer to it (so the
        # client needs no redirect); media then flows between the viewer and the owner.
        moved = requests.get(f"{nodes['b'].url}/streams/{sid}", allow_redirects=False, timeout=T)
        assert moved.status_code == 307 and moved.headers["Location"] == f"{nodes['a'].url}/streams/{sid}"
        first = Viewer(nodes["b"].url, sid, audio=False)
        viewers.append(first)
        await first.connect(http)
        await _first_frame(first, 60)
        assert not redirects, redirects
        assert requests.get(f"{nodes['a'].url}/streams/{sid}", timeout=T).json()["viewers"] == 1

        nodes["a"].kill()  # SIGKILL: its heartbeat, its RTSP session and the viewer's peer all vanish
        killed = time.monotonic()

        def taken_over():
            r = requests.get(f"{nodes['b'].url}/streams/{sid}", allow_redirects=False, timeout=T)
            return r.status_code == 200 and r.json()
        state = wait_until("b to take the stream over", taken_over, timeout=TAKEOVER_LIMIT_S)
        owned = time.monotonic() - killed
        second = Viewer(nodes["b"].url, sid, audio=False)
        viewers.append(second)
        await second.connect(http)
        first_frame = await _first_frame(second, TAKEOVER_LIMIT_S - (time.monotonic() - killed))
        seen = first_frame - killed
        print(f"\ncamera failover: owner killed; b owned the stream after {owned:.1f} s "
              f"(node timeout {NODE_TIMEOUT_S:g} s), a new viewer had frames {seen:.1f} s after the kill")
        assert seen < TAKEOVER_LIMIT_S
        assert state["node"] == "b" and state["record"] is True
        row = query(db, "SELECT owner, takeovers FROM streams WHERE id = %s", sid)[0]
        assert row == {"owner": "b", "takeovers": 1}
        recording = wait_until("b to record the stream", lambda: requests.get(
            f"{nodes['b'].url}/streams/{sid}", timeout=T).json()["recording"], timeout=15)
        assert recording

        assert requests.delete(f"{nodes['b'].url}/streams/{sid}", timeout=T).status_code == 200
        assert not query(db, "SELECT id FROM streams")

        # A clean shutdown hands the node's cameras over at once, not after a timeout.
        resp = requests.post(f"{nodes['b'].url}/streams", json={"url": camera.url}, timeout=T)
        assert resp.status_code == 201, resp.text
        assert nodes["b"].terminate() == 0
        assert query(db, "SELECT owner FROM streams") == [{"owner": None}]
        assert not query(db, "SELECT id FROM nodes WHERE id = 'b'")
    finally:
        for viewer in viewers:
            await viewer.close()
        if live is not None:
            await live.close()
        await http.close()
        stop_nodes(nodes)
