"""Admission by capacity: 503 with the capacity once the target rate cannot be held, and
offers that never connect give their share back."""
from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection

from live_support import CLIP, live_server
from webrtc_client import ClipTrack, LiveClient, SilentTrack, load_clip

CONNECT_TIMEOUT_S = 2.0
# No CPU mattes a frame in 0.1 ms: the second stream can never hold this rate.
UNREACHABLE_FPS = 10_000.0


async def raw_offer(http: aiohttp.ClientSession, url: str) -> tuple[aiohttp.ClientResponse, dict, RTCPeerConnection]:
    """POST /offer from a peer that never takes the answer (it never connects)."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTrack(SilentTrack())
    await pc.setLocalDescription(await pc.createOffer())
    async with http.post(f"{url}/offer", json={"sdp": pc.localDescription.sdp, "type": "offer"}) as resp:
        return resp, await resp.json(), pc


async def capacity(http: aiohttp.ClientSession, url: str) -> dict:
    async with http.get(f"{url}/sessions") as resp:
        return (await resp.json())["capacity"]


@pytest.mark.timeout(180)
async def test_admission_by_capacity_and_pending_offers_free_their_share(runtime, media, tmp_path):
    async with live_server(runtime, tmp_path, target_fps=UNREACHABLE_FPS, connect_timeout_s=CONNECT_TIMEOUT_S) \
            as (_, url), aiohttp.ClientSession() as http:
        first = LiveClient(url, ClipTrack(load_clip(media / CLIP / "com.mkv", size=(256, 144))), keep_frames=False)
        sid = await first.connect(http)
        await first.wait_first_frame(timeout=90)
        deadline = time.monotonic() + 60
        while (await capacity(http, url))["frame_cost_ms"] is None:  # a cost measured yet (warm-up or frames)
            assert time.monotonic() < deadline, "no live frame cost measured"
            await asyncio.sleep(0.2)
        peers = []
        resp, body, pc = await raw_offer(http, url)
        peers.append(pc)
        assert resp.status == 503, body
        assert int(resp.headers["Retry-After"]) > 0
        refused = body["error"]
        assert refused["code"] == "at_capacity" and "capacity" in refused["message"]
        assert refused["capacity"]["capacity"] == 1 and refused["capacity"]["admitted"] == 1
        assert refused["capacity"]["headroom"] == 0 and refused["capacity"]["frame_cost_ms"] > 0.1
        async with http.get(f"{url}/metrics") as r:
            text = await r.text()
        assert "abrar_live_capacity 1.0" in text and "abrar_live_headroom 0.0" in text
        assert "abrar_live_sessions_rejected_total 1.0" in text

        async with http.delete(f"{url}/sessions/{sid}") as r:
            assert r.status == 204
        await first.close()
        resp, body, pc = await raw_offer(http, url)  # admitted, then never connects
        peers.append(pc)
        assert resp.status == 200, body
        pending_at = time.monotonic()
        resp, body, pc = await raw_offer(http, url)
        peers.append(pc)
        assert resp.status == 503, "a pending offer holds its share while it may still connect"
        while (await capacity(http, url))["admitted"]:
            assert time.monotonic() - pending_at < CONNECT_TIMEOUT_S + 3, "a pending offer kept its share"
            await asyncio.sleep(0.1)
        freed_after = time.monotonic() - pending_at
        resp, body, pc = await raw_offer(http, url)
        peers.append(pc)
        assert resp.status == 200, body
        for pc in peers:
            await pc.close()
    print(f"\nat capacity: {refused['capacity']}; a pending offer freed its share after {freed_after:.1f} s "
          f"(connect timeout {CONNECT_TIMEOUT_S} s)")
