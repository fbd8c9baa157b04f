"""Live sessions end to end: a real aiortc peer on 127.0.0.1 sends a real clip and checks
what comes back against the clip's ground-truth alpha."""
from __future__ import annotations

import asyncio
import io
import time

import aiohttp
import numpy as np
import pytest
from PIL import Image

from conftest import load_alpha, load_rgb
from live_support import (
    colour_share,
    expected,
    first_index,
    live_api_fuzzer,
    live_server,
    load_gt_clip,
    percentile,
    regions,
    wait_for,
)
from matting.metrics import mad
from webrtc_client import ClipTrack, LiveClient, SilentTrack, ToneTrack, round_trip_ms

GREEN = (0, 255, 0)
BLUE = (0, 0, 255)
CHECKER_MID = (230, 230, 230)  # the checkerboard's 255/204 cells are both within 30 of this

pytestmark = pytest.mark.timeout(180)


def lowpass_error(got: np.ndarray, want: np.ndarray, mask: np.ndarray) -> float:
    """Mean abs difference in ``mask`` after a 5x5 blur: what the person looks like, not the
    codec's block noise (two VP8 passes at the bitrate aiortc picks under CPU load)."""
    import cv2

    blur = [cv2.blur(x.astype(np.float32), (5, 5)) for x in (got, want)]
    return float(np.abs(blur[0][mask] - blur[1][mask]).mean())


def _clip_index(client: LiveClient, k0: int, n: int, j: int) -> int:
    return (k0 + round(client.received[j].pts / 3000)) % n


async def test_returned_video_is_matted_over_the_chosen_background(runtime, media, tmp_path):
    clip = load_gt_clip(media)
    n = len(clip.frames)
    async with live_server(runtime, tmp_path) as (_, url), aiohttp.ClientSession() as http:
        client = LiveClient(url, ClipTrack(clip.frames), ToneTrack(), background="#00ff00")
        sid = await client.connect(http)
        await client.wait_first_frame(timeout=60)
        started = time.monotonic()
        await asyncio.sleep(8)
        green_frames = len(client.received)
        elapsed = time.monotonic() - started

        k0, agree = first_index(client, clip, GREEN)
        bg_green, person_err, person_green = [], [], []
        for j in range(green_frames):
            i = _clip_index(client, k0, n, j)
            rgb = client.received[j].rgb
            bg, person = regions(clip.alphas[i])
            bg_green.append(colour_share(rgb, bg, GREEN))
            person_green.append(colour_share(rgb, person, GREEN))
            person_err.append(lowpass_error(rgb, clip.frames[i], person))
        rtt = [ms for _, ms in round_trip_ms(client, k0)]
        ideal_err = np.mean([np.abs(client.received[j].rgb - expected(clip, _clip_index(client, k0, n, j), GREEN))
                             .mean() for j in range(green_frames)])
        print(f"\nlive e2e 512x288 on {runtime.device}: {green_frames} frames returned in {elapsed:.1f} s "
              f"({(green_frames - 1) / elapsed:.2f} fps), frames matched to the clip: {agree:.0%}")
        print(f"round trip ms: p50 {percentile(rtt, 50):.0f}, p95 {percentile(rtt, 95):.0f} (n={len(rtt)})")
        print(f"background green share: median {np.median(bg_green):.3f}; person region: error "
              f"{np.median(person_err):.1f}/255 (max {max(person_err):.1f}), "
              f"green share {np.median(person_green):.4f}; "
              f"whole frame vs the ideal composite: {ideal_err:.1f}/255")

        assert green_frames >= 5
        assert agree >= 0.7, "returned frames do not line up with the frames sent"
        assert np.median(bg_green) >= 0.9, "the background did not turn green"
        assert np.median(person_green) <= 0.02, "the person was replaced by the background"
        assert np.median(person_err) <= 20, "the person region is not kept"
        assert client.audio_frames > 20, "audio was not passed through"

        # Live switch over HTTP.
        async with http.post(f"{url}/sessions/{sid}/background", json={"background": "#0000ff"}) as resp:
            assert resp.status == 200, await resp.text()

        def newest_share(color, tol=40):
            j = len(client.received) - 1
            bg, _ = regions(clip.alphas[_clip_index(client, k0, n, j)])
            return colour_share(client.received[j].rgb, bg, color, tol)

        await wait_for(lambda: newest_share(BLUE) >= 0.9, timeout=30)

        # Live switch over the data channel: transparent is shown on a checkerboard.
        await client.wait_channel_open()
        client.send({"type": "background", "background": "transparent"})
        await wait_for(lambda: newest_share(CHECKER_MID, tol=30) >= 0.9, timeout=30)
        client.send({"type": "background", "background": "image:/etc/passwd"})
        await wait_for(lambda: any(m.get("type") == "error" for m in client.messages), timeout=10)
        assert any(m == {"type": "background", "background": "transparent"} for m in client.messages)
        assert any(m.get("type") == "stats" and m.get("frames", 0) > 0 for m in client.messages)

        async with http.get(f"{url}/sessions") as resp:
            listed = (await resp.json())["sessions"]
        assert [s["id"] for s in listed] == [sid]
        assert listed[0]["background"] == "transparent" and listed[0]["stats"]["width"] == 512
        async with http.get(f"{url}/metrics") as resp:
            text = await resp.text()
        assert "abrar_live_sessions 1.0" in text
        assert f'abrar_live_session_fps{{session="{sid}"}}' in text
        async with http.delete(f"{url}/sessions/{sid}") as resp:
            assert resp.status == 204
        async with http.get(f"{url}/sessions/{sid}") as resp:
            assert resp.status == 404
        await client.close()


SNAPSHOT_IMAGE = "comp_p3m_00a7a27c_architecture"
SNAPSHOT_SIZE = (960, 640)  # a webcam-like landscape frame, sent full size
RED = (255, 0, 0)


def _png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


async def test_snapshot_is_a_full_resolution_rmbg_cutout(runtime, media, tmp_path):
    import cv2

    rgb = cv2.resize(load_rgb(media / "images" / f"{SNAPSHOT_IMAGE}.jpg"), SNAPSHOT_SIZE, interpolation=cv2.INTER_AREA)
    gt = cv2.resize(load_alpha(media / "alpha" / f"{SNAPSHOT_IMAGE}.png"), SNAPSHOT_SIZE, interpolation=cv2.INTER_AREA)
    async with live_server(runtime, tmp_path) as (_, url), aiohttp.ClientSession() as http:
        client = LiveClient(url, ClipTrack([rgb]), background="#00ff00")
        sid = await client.connect(http)
        await client.wait_first_frame(timeout=90)
        await asyncio.sleep(1.0)  # a few frames in: the codec has refined the still image
        t = time.monotonic()
        async with http.post(f"{url}/sessions/{sid}/snapshot") as resp:
            assert resp.status == 200, await resp.text()
            assert resp.content_type == "image/png"
            png = await resp.read()
        took = time.monotonic() - t
        with Image.open(io.BytesIO(png)) as im:
            assert im.mode == "RGBA" and im.size == SNAPSHOT_SIZE, (im.mode, im.size)
            snap = np.asarray(im)
        snap_mad = mad(snap[:, :, 3].astype(np.float32) / 255.0, gt)
        colour_err = float(np.abs(snap[:, :, :3].astype(np.float32) - rgb)[gt > 0.99].mean())
        print(f"\nsnapshot {SNAPSHOT_SIZE[0]}x{SNAPSHOT_SIZE[1]} in {took:.1f} s: alpha MAD x1e3 {snap_mad:.2f}; "
              f"colour error in the person {colour_err:.1f}/255")
        # Measured 2.5-2.6 (RMBG on this frame without the codec in between: 2.14);
        # a constant alpha scores hundreds on this photo.
        assert snap_mad <= 6, "snapshot alpha is far from the ground truth"
        assert colour_err <= 12

        # An uploaded image becomes the background of the live stream.
        red = np.zeros((90, 160, 3), np.uint8)
        red[:] = RED
        form = aiohttp.FormData()
        form.add_field("image", _png(red), filename="red.png", content_type="image/png")
        async with http.post(f"{url}/sessions/{sid}/background", data=form) as resp:
            assert resp.status == 200, await resp.text()
            assert (await resp.json())["background"] == "image"
        bg, _ = regions(gt)
        await wait_for(lambda: colour_share(client.received[-1].rgb, bg, RED) >= 0.9, timeout=30)
        await client.close()


async def _error(resp, status: int) -> dict:
    body = await resp.json()
    assert resp.status == status, body
    assert set(body["error"]) >= {"code", "message"}, body
    return body["error"]


async def test_bad_requests_get_clear_json_errors(runtime, tmp_path):
    async with live_server(runtime, tmp_path, max_background_bytes=2000) as (_, url), \
            aiohttp.ClientSession() as http:
        offer = f"{url}/offer"
        async with http.post(offer, data="not json", headers={"Content-Type": "application/json"}) as r:
            await _error(r, 400)
        async with http.post(offer, json={"type": "offer"}) as r:
            await _error(r, 400)
        async with http.post(offer, json={"sdp": "v=0 garbage", "type": "offer"}) as r:
            assert (await _error(r, 400))["code"] == "bad_offer"
        async with http.post(offer, json={"sdp": "x", "type": "offer", "background": "image:/etc/passwd"}) as r:
            assert "upload" in (await _error(r, 400))["message"]
        async with http.post(offer, json={"sdp": "x", "type": "offer", "background": "blur:999"}) as r:
            await _error(r, 400)

        # An offer with audio only has nothing to matte.
        from aiortc import RTCConfiguration, RTCPeerConnection

        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.addTrack(ToneTrack())
        await pc.setLocalDescription(await pc.createOffer())
        async with http.post(offer, json={"sdp": pc.localDescription.sdp, "type": "offer"}) as r:
            assert "video" in (await _error(r, 400))["message"]
        await pc.close()
        async with http.get(f"{url}/sessions") as r:
            assert (await r.json())["sessions"] == []

        client = LiveClient(url, SilentTrack())
        sid = await client.connect(http)
        base = f"{url}/sessions/{sid}"
        async with http.post(f"{base}/snapshot") as r:
            assert (await _error(r, 409))["code"] == "no_frame"
        async with http.post(f"{base}/recording", json={"action": "stop"}) as r:
            await _error(r, 409)
        async with http.post(f"{base}/recording", json={"action": "pause"}) as r:
            await _error(r, 400)
        async with http.post(f"{base}/background", json={"background": "plaid"}) as r:
            assert "unknown background" in (await _error(r, 400))["message"]
        form = aiohttp.FormData()
        form.add_field("image", b"not an image at all", filename="x.png", content_type="image/png")
        async with http.post(f"{base}/background", data=form) as r:
            await _error(r, 400)
        form = aiohttp.FormData()
        form.add_field("image", _png(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)),
                       filename="big.png", content_type="image/png")
        async with http.post(f"{base}/background", data=form) as r:
            await _error(r, 413)
        form = aiohttp.FormData()
        form.add_field("other", "x")
        async with http.post(f"{base}/background", data=form) as r:
            await _error(r, 400)
        async with http.post(f"{url}/sessions/nope/snapshot") as r:
            await _error(r, 404)
        async with http.delete(f"{url}/sessions/nope") as r:
            await _error(r, 404)
        await client.close()

        # Recordings: only files in the directory, by their own name.
        outside = tmp_path / "secret.webm"
        outside.write_bytes(b"secret")
        rec_dir = tmp_path / "recordings"
        rec_dir.mkdir(exist_ok=True)
        (rec_dir / "link.webm").symlink_to(outside)
        (rec_dir / "ok.webm").write_bytes(b"webm bytes")
        (rec_dir / "live-x.webm.part").write_bytes(b"half written")
        async with http.get(f"{url}/recordings") as r:
            names = [x["name"] for x in (await r.json())["recordings"]]
        assert "ok.webm" in names and not any(n.endswith(".part") for n in names)
        for bad in ("..%2Fsecret.webm", "%2E%2E%2Fsecret.webm", "link.webm", "live-x.webm.part", ".hidden.webm"):
            async with http.get(f"{url}/recordings/{bad}") as r:
                await _error(r, 404)
        async with http.get(f"{url}/recordings/ok.webm") as r:
            assert r.status == 200 and await r.read() == b"webm bytes"

        async with http.get(f"{url}/openapi.json") as r:
            paths = (await r.json())["paths"]
        for path in ("/offer", "/sessions", "/sessions/{id}", "/sessions/{id}/background",
                     "/sessions/{id}/recording", "/sessions/{id}/snapshot", "/recordings", "/recordings/{name}"):
            assert path in paths, path


async def test_api_key_guards_live_routes_but_not_the_page(runtime, tmp_path):
    async with live_server(runtime, tmp_path, api_key="s3cret") as (_, url), aiohttp.ClientSession() as http:
        async with http.post(f"{url}/offer", json={"sdp": "x", "type": "offer"}) as r:
            await _error(r, 401)
        async with http.get(f"{url}/recordings") as r:
            await _error(r, 401)
        async with http.get(f"{url}/recordings", headers={"X-API-Key": "s3cret"}) as r:
            assert r.status == 200
        for page in ("/", "/static/app.js", "/static/style.css"):
            async with http.get(f"{url}{page}") as r:
                assert r.status == 200, page
        client = LiveClient(url, SilentTrack(), headers={"X-API-Key": "s3cret"})
        sid = await client.connect(http)
        assert sid
        await client.close()


LIVE_OPERATIONS = [
    ("POST", "/offer"), ("GET", "/sessions"), ("GET", "/sessions/{id}"), ("DELETE", "/sessions/{id}"),
    ("POST", "/sessions/{id}/background"), ("POST", "/sessions/{id}/recording"),
    ("POST", "/sessions/{id}/snapshot"), ("GET", "/recordings"), ("GET", "/recordings/{name}"),
]
BODY_OPERATIONS = ("/offer", "/sessions/{id}/background", "/sessions/{id}/recording")


async def test_fuzzed_requests_get_4xx_not_5xx_and_match_the_spec(runtime, tmp_path):
    """Schemathesis, from the served spec, against random and one real session."""
    from schemathesis import GenerationMode

    # Admission is not under test here (test_live_admission): a target rate any machine
    # keeps leaves room for every fuzzed offer beside the real session.
    async with live_server(runtime, tmp_path, target_fps=0.01) as (_, url), aiohttp.ClientSession() as http:
        client = LiveClient(url, SilentTrack())
        sid = await client.connect(http)
        fuzz = await live_api_fuzzer(http, url)

        for method, path in LIVE_OPERATIONS:
            await asyncio.to_thread(fuzz, method, path, GenerationMode.POSITIVE)
            if path in BODY_OPERATIONS:  # elsewhere only string path parameters: nothing invalid to make
                await asyncio.to_thread(fuzz, method, path, GenerationMode.NEGATIVE)
        for path in ("/sessions/{id}", "/sessions/{id}/background", "/sessions/{id}/recording"):
            method = "GET" if path == "/sessions/{id}" else "POST"
            await asyncio.to_thread(fuzz, method, path, GenerationMode.POSITIVE, path_parameters={"id": sid})
        async with http.get(f"{url}/sessions/{sid}") as resp:
            assert resp.status == 200, "the real session did not survive the fuzzing"
        await client.close()
