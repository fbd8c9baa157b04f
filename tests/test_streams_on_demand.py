"""RTSP streams matte on demand and record in segments of a set length.

A real GStreamer RTSP camera, the real app on 127.0.0.1 and a real aiortc viewer:
a stream nobody watches stays connected but never reaches the network, and holds no
share of live capacity; a viewer's offer brings matting back at the next camera frame,
and takes a share (503 when the server is full).
"""
from __future__ import annotations

import time

import pytest

from api_support import wait_for
from matting.video_io import read_alpha_frames
from server.config import ServerConfig
from server.live.config import LiveConfig
from server.streams.config import StreamsConfig
from server.streams.routes import STREAMS
from streams_support import (
    StreamApi,
    Viewer,
    clip_camera,
    start_app,
)

pytestmark = [pytest.mark.rtsp, pytest.mark.timeout(150)]


@pytest.fixture
def camera(tmp_path_factory, media):
    yield from clip_camera(tmp_path_factory, media)


def _config(tmp_path, live: LiveConfig | None = None, **streams) -> ServerConfig:
    return ServerConfig(data_dir=tmp_path / "data", recordings_dir=tmp_path / "rec", live=live or LiveConfig(),
                        streams=StreamsConfig(read_timeout_s=3, persist=False, **streams))


async def _admitted(http, base) -> int:
    async with http.get(f"{base}/streams") as resp:
        return (await resp.json())["capacity"]["admitted"]


async def test_stream_mattes_only_while_watched(camera, runtime, tmp_path):
    runtime.video_model()  # loaded up front: the resume bound is about scheduling, not a cold model
    server, http, base = await start_app(_config(tmp_path), runtime)
    viewer = None
    try:
        async with http.post(f"{base}/streams", json={"url": camera.url, "background": "green"}) as resp:
            created = await resp.json()
            assert resp.status == 201, created
        api = StreamApi(http, base, created["id"])
        pipeline = server.app[STREAMS].get(created["id"]).pipeline
        matted: list[float] = []  # when each frame entered the network
        original = pipeline.process
        pipeline.process = lambda frame, **kw: (matted.append(time.monotonic()), original(frame, **kw))[1]

        idle = await wait_for(api.until(lambda s: s["frames_in"] >= 45), 30, what="1.5 s of camera frames")
        assert idle["state"] == "live" and idle["matting"] is False
        assert matted == [] and idle["frames_out"] == 0 and idle["frames_idle"] > 0, idle
        assert pipeline._session is None, "the network was set up for a stream nobody watches"
        assert await _admitted(http, base) == 0, "an unwatched stream holds a share of live capacity"
        # a snapshot still works: RMBG on the newest camera frame
        async with http.post(f"{base}/streams/{created['id']}/snapshot") as resp:
            assert resp.status == 200 and resp.content_type == "image/png", await resp.text()

        viewer = Viewer(base, created["id"], audio=False)
        await viewer.connect(http)
        await wait_for(_async(lambda: len(viewer.frames) >= 5), 40, what="the viewer to receive 5 frames")
        resumed = matted[0] - viewer.offered_at
        first_frame = viewer.frames[0][0] - viewer.offered_at
        watched = await api.state()
        print(f"\non demand: {idle['frames_in']} camera frames, none matted, while unwatched; matting resumed "
              f"{resumed * 1000:.0f} ms after the viewer's offer, first frame on the viewer after "
              f"{first_frame:.2f} s")
        assert watched["matting"] is True and watched["frames_out"] >= 5
        assert await _admitted(http, base) == 1
        assert resumed < 1.0, f"matting resumed {resumed:.2f} s after the viewer joined"

        await viewer.close()
        viewer = None
        gone = await wait_for(api.until(lambda s: s["viewers"] == 0), 20, what="the server to drop the viewer")
        assert gone["matting"] is False
        count = len(matted)
        await wait_for(api.until(lambda s: s["frames_in"] >= gone["frames_in"] + 30), 20, what="1 s of frames")
        assert len(matted) <= count + 1, "frames were still matted after the last viewer left"
        assert await _admitted(http, base) == 0, "the share was not given back when the last viewer left"
    finally:
        if viewer is not None:
            await viewer.close()
        await http.close()
        await server.close()


async def test_a_full_server_refuses_a_viewer_of_an_idle_stream(camera, runtime, tmp_path):
    """The one share (a ceiling of 1) is held by a recording stream: an idle stream's viewer
    gets 503 at_capacity; once the recording stops, the viewer is taken."""
    server, http, base = await start_app(_config(tmp_path, live=LiveConfig(max_sessions=1)), runtime)
    viewer = None
    try:
        ids = []
        for record in (True, False):
            async with http.post(f"{base}/streams", json={"url": camera.url, "record": record}) as resp:
                created = await resp.json()
                assert resp.status == 201, created  # an idle stream is created even at capacity
                ids.append(created["id"])
        recorder, idle = (StreamApi(http, base, i) for i in ids)
        await wait_for(recorder.until(lambda s: s["frames_out"] >= 3), 60, what="the recording stream to matte")
        assert await _admitted(http, base) == 1

        offer = {"sdp": "v=0", "type": "offer"}  # refused before the SDP is looked at
        async with http.post(f"{base}/streams/{ids[1]}/offer", json=offer) as resp:
            refused = (await resp.json())["error"]
            assert resp.status == 503 and resp.headers["Retry-After"], refused
        assert refused["code"] == "at_capacity" and refused["capacity"]["admitted"] == 1
        assert (await idle.state())["matting"] is False

        async with http.post(f"{base}/streams/{ids[0]}/recording", json={"action": "stop"}) as resp:
            assert resp.status == 200, await resp.text()
        await wait_for(_async_admitted(http, base, 0), 20, what="the stopped recording to give its share back")
        viewer = Viewer(base, ids[1], audio=False)
        await viewer.connect(http)
        await wait_for(_async(lambda: len(viewer.frames) >= 3), 40, what="the viewer to receive 3 frames")
        assert await _admitted(http, base) == 1
    finally:
        if viewer is not None:
            await viewer.close()
        await http.close()
        await server.close()


def _async_admitted(http, base, count: int):
    async def predicate():
        return await _admitted(http, base) == count
    return predicate


async def test_always_mode_mattes_without_viewers(camera, runtime, tmp_path):
    server, http, base = await start_app(_config(tmp_path, matte="always"), runtime)
    try:
        async with http.post(f"{base}/streams", json={"url": camera.url}) as resp:
            created = await resp.json()
        api = StreamApi(http, base, created["id"])
        state = await wait_for(api.until(lambda s: s["frames_out"] >= 5), 60, what="5 matted frames")
        assert state["viewers"] == 0 and state["matting"] is True and state["frames_idle"] == 0
    finally:
        await http.close()
        await server.close()


async def test_recording_rotates_by_duration(camera, runtime, tmp_path):
    segment_s = 1.5
    server, http, base = await start_app(_config(tmp_path, segment_s=segment_s), runtime)
    try:
        async with http.post(f"{base}/streams", json={"url": camera.url, "record": True}) as resp:
            created = await resp.json()
            assert resp.status == 201, created
        api = StreamApi(http, base, created["id"])
        await wait_for(api.until(lambda s: len(s["recordings"]) >= 3), 60, interval=0.25,
                       what="three finished segments")
        async with http.delete(f"{base}/streams/{created['id']}") as resp:
            final = await resp.json()
        assert final["reconnects"] == 0, "segments must come from the duration, not from reconnects"
        names = [r["name"] for r in final["recordings"]]
        assert len(set(names)) == len(names) >= 4, names  # the last one is finalised on delete
        lengths = []
        for name in names:
            path = tmp_path / "rec" / name
            frames = list(read_alpha_frames(path))
            lengths.append(len(frames))
            assert frames and frames[0].shape == (288, 512, 4)
        print(f"\nsegments of {segment_s} s: {len(names)} files, frames {lengths}")
        # every full segment holds about segment_s of video (matting runs below 30 fps here)
        assert all(n >= 3 for n in lengths[:-1]), lengths
        assert not list((tmp_path / "rec").glob("*.part"))
    finally:
        await http.close()
        await server.close()


def _async(check):
    async def predicate():
        return check()
    return predicate
