"""WHIP ingest and WHEP playback with aiortc peers on 127.0.0.1: a publisher's clip is
matted as a live session and watched by WHEP viewers; the RFC 9725 edge cases answer
as the RFC says."""
from __future__ import annotations

import asyncio
import dataclasses

import numpy as np
import pytest

from live_support import colour_share, live_api_fuzzer, load_gt_clip, regions, wait_for, wait_more_frames
from streams_support import start_app
from webrtc_http_support import SDP, Refused, WhepViewer, WhipPublisher, nearest_index, post_offer

GREEN = (0, 255, 0)

pytestmark = pytest.mark.timeout(240)


def _config(tmp_path, **overrides):
    from server.config import ServerConfig
    from server.live.config import LiveConfig
    from server.webrtc_http.config import WebRtcHttpConfig

    live = dataclasses.replace(LiveConfig(), **overrides.pop("live", {}))
    webrtc = dataclasses.replace(WebRtcHttpConfig(), **overrides.pop("webrtc", {}))
    return ServerConfig(data_dir=tmp_path / "data", recordings_dir=tmp_path / "recordings", live=live,
                        webrtc=webrtc, **overrides)


async def test_whip_publisher_is_matted_and_watched_by_whep_viewers(runtime, media, tmp_path):
    clip = load_gt_clip(media)
    runtime.video_model()
    server, http, base = await start_app(_config(tmp_path), runtime)
    publisher = WhipPublisher(base, clip.frames)
    viewers = [WhepViewer(base, "", audio=False) for _ in range(2)]
    try:
        session_id = await publisher.publish(http, "/whip?background=%2300ff00")
        assert publisher.resource == f"/whip/{session_id}"
        assert publisher.headers["ETag"]
        # Nobody receives the publisher's session, yet it mattes (recording and snapshots need it).
        await wait_more_frames(http, base, session_id, 5, timeout=90)
        for viewer in viewers:
            viewer.stream_id = session_id
            await viewer.connect(http)
        await wait_for(lambda: all(len(v.frames) >= 8 for v in viewers), timeout=90)
        async with http.get(f"{base}/sessions/{session_id}") as resp:
            session = await resp.json()
        assert session["viewers"] == 2 and session["background"] == "#00ff00"
        # One inference for both viewers: the session never mattes more frames than were sent.
        assert session["stats"]["frames"] <= len(publisher.track.sent)

        for viewer in viewers:
            bg_green, person_green = [], []
            for _, rgb in viewer.frames[-6:]:
                bg, person = regions(clip.alphas[nearest_index(clip, rgb, GREEN)])
                bg_green.append(colour_share(rgb, bg, GREEN))
                person_green.append(colour_share(rgb, person, GREEN))
            assert np.median(bg_green) > 0.8, bg_green      # the clip's background is gone
            assert np.median(person_green) < 0.1, person_green  # the person is kept

        async with http.post(f"{base}/sessions/{session_id}/snapshot") as resp:
            assert resp.status == 200 and resp.content_type == "image/png"

        # WHEP DELETE ends one viewer only (under its own source); a second DELETE finds nothing.
        assert viewers[0].resource.startswith(f"/whep/{session_id}/")
        async with http.delete(base + viewers[0].resource.replace(session_id, "another")) as resp:
            assert resp.status == 404
        async with http.delete(base + viewers[0].resource) as resp:
            assert resp.status == 200
        async with http.delete(base + viewers[0].resource) as resp:
            assert resp.status == 404
        async with http.get(f"{base}/sessions/{session_id}") as resp:
            assert (await resp.json())["viewers"] == 1

        # WHIP DELETE ends the session, and with it its viewers.
        async with http.delete(base + publisher.resource) as resp:
            assert resp.status == 200
        async with http.delete(base + publisher.resource) as resp:
            assert resp.status == 404
        async with http.get(f"{base}/sessions/{session_id}") as resp:
            assert resp.status == 404
        await wait_for(lambda: viewers[1].pc.connectionState == "closed", timeout=15)
    finally:
        for viewer in viewers:
            await viewer.close()
        await publisher.close()
        await http.close()
        await server.close()


async def test_whip_and_whep_edge_cases_answer_as_the_rfc_says(runtime, media, tmp_path):
    clip = load_gt_clip(media)
    ice = {"ice_servers": "stun:stun.example.net:3478,turn:turn.example.net:3478?transport=udp",
           "ice_username": "user", "ice_credential": "pass"}
    config = _config(tmp_path, api_key="k3y", live={"max_sessions": 1}, webrtc=ice)
    server, http, base = await start_app(config, runtime)
    auth = {"Authorization": "Bearer k3y"}
    first, second, third = (WhipPublisher(base, clip.frames) for _ in range(3))
    try:
        # auth: missing or wrong bearer -> 401 with a challenge; the preflight needs none
        for headers in ({}, {"Authorization": "Bearer nope"}):
            with pytest.raises(Refused) as refused:
                await post_offer(http, f"{base}/whip", "v=0\r\n", headers)
            assert refused.value.status == 401 and "Bearer" in refused.value.headers["WWW-Authenticate"]
        async with http.options(f"{base}/whip") as resp:
            assert resp.status == 204 and resp.headers["Accept-Post"] == SDP
        # wrong content type -> 415; not SDP -> 400 JSON errors
        async with http.post(f"{base}/whip", json={"sdp": "v=0", "type": "offer"}, headers=auth) as resp:
            assert resp.status == 415 and (await resp.json())["error"]["code"] == "unsupported_media_type"
        for junk in ("hello", "v=0\r\nm=video 9 RTP/AVP 96\r\n", "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\n"):
            with pytest.raises(Refused) as refused:
                await post_offer(http, f"{base}/whip", junk, auth)
            assert refused.value.status == 400, refused.value.body

        session_id = await first.publish(http, headers=auth)
        links = first.headers.getall("Link")
        assert '<stun:stun.example.net:3478>; rel="ice-server"' in links
        assert any(link.startswith("<turn:turn.example.net:3478?transport=udp>") and 'username="user"' in link
                   and 'credential="pass"' in link for link in links)
        # admission is /offer's: at the limit -> 503 with Retry-After
        with pytest.raises(Refused) as refused:
            await second.publish(http, headers=auth)
        assert refused.value.status == 503 and int(refused.value.headers["Retry-After"]) > 0

        resource = base + first.resource
        async with http.patch(resource, data=b"a=end-of-candidates\r\n",
                              headers={**auth, "Content-Type": "application/trickle-ice-sdpfrag"}) as resp:
            assert resp.status == 405 and "PATCH" not in resp.headers["Allow"]
        async with http.post(f"{base}/whep/nope", data=b"v=0\r\n", headers={**auth, "Content-Type": SDP}) as r:
            assert r.status == 404
        async with http.delete(f"{base}/whip/nope", headers=auth) as resp:
            assert resp.status == 404
        async with http.delete(resource) as resp:
            assert resp.status == 401
        async with http.delete(resource, headers=auth) as resp:
            assert resp.status == 200
        async with http.delete(resource, headers=auth) as resp:
            assert resp.status == 404
        async with http.get(f"{base}/sessions/{session_id}", headers={"X-API-Key": "k3y"}) as resp:
            assert resp.status == 404
        # the slot is free again
        await asyncio.wait_for(third.publish(http, headers=auth), timeout=60)
    finally:
        for publisher in (first, second, third):
            await publisher.close()
        await http.close()
        await server.close()


async def test_fuzzed_whip_whep_requests_get_4xx_not_5xx_and_match_the_spec(runtime, tmp_path):
    """Schemathesis from the served spec against the WHIP/WHEP endpoints and a real WHIP session."""
    import schemathesis
    from schemathesis import GenerationMode

    from webrtc_client import SilentTrack

    schemathesis.serializer.alias(SDP, "text/plain")  # an SDP body is text
    server, http, base = await start_app(_config(tmp_path), runtime)
    publisher = WhipPublisher(base, [])
    publisher.track = SilentTrack()
    try:
        session_id = await publisher.publish(http)
        fuzz = await live_api_fuzzer(http, base)

        # Positive only: the bodies are free text and the parameters strings, so nothing is
        # schema-invalid to make; the explicit edge cases are tested above.
        for method, path in (("POST", "/whip"), ("POST", "/whep/{id}"), ("PATCH", "/whip/{id}"),
                             ("DELETE", "/whep/{id}/{viewer}")):
            await asyncio.to_thread(fuzz, method, path, GenerationMode.POSITIVE)
        await asyncio.to_thread(fuzz, "POST", "/whep/{id}", GenerationMode.POSITIVE, path_parameters={"id": session_id})
        async with http.get(f"{base}/sessions/{session_id}") as resp:
            assert resp.status == 200, "the real session did not survive the fuzzing"
    finally:
        await publisher.close()
        await http.close()
        await server.close()
