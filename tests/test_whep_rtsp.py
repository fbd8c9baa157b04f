"""WHEP playback of an RTSP camera: a WHEP viewer and a /streams/{id}/offer viewer share
the stream's one inference and both see the matted picture."""
from __future__ import annotations

import asyncio
import dataclasses

import numpy as np
import pytest

from live_support import colour_share, load_gt_clip, regions, wait_for
from streams_support import RtspCamera, Viewer, make_rtsp_clip, require_rtsp_server, start_app
from webrtc_http_support import WhepViewer, nearest_index

GREEN = (0, 255, 0)

pytestmark = [pytest.mark.rtsp, pytest.mark.slow, pytest.mark.timeout(300)]


async def test_whep_viewer_shares_an_rtsp_stream(runtime, media, tmp_path):
    from server.config import ServerConfig
    from server.streams.config import StreamsConfig

    require_rtsp_server()
    camera = RtspCamera(make_rtsp_clip(media, tmp_path / "clip.mp4", loops=10))
    camera.start()
    config = ServerConfig(data_dir=tmp_path / "data", recordings_dir=tmp_path / "rec",
                          streams=dataclasses.replace(StreamsConfig(), persist=False))
    server, http, base = await start_app(config, runtime)
    clip = load_gt_clip(media)
    viewers = []
    try:
        async with http.post(f"{base}/streams", json={"url": camera.url, "background": "#00ff00"}) as resp:
            stream_id = (await resp.json())["id"]
        whep, plain = WhepViewer(base, stream_id, audio=True), Viewer(base, stream_id, audio=False)
        viewers = [whep, plain]
        for viewer in viewers:
            await viewer.connect(http)
        await wait_for(lambda: all(len(v.frames) >= 8 for v in viewers), timeout=120)
        async with http.get(f"{base}/streams/{stream_id}") as resp:
            stream = await resp.json()
        assert stream["viewers"] == 2
        assert stream["frames_out"] <= stream["frames_in"]  # one inference, whoever watches

        bg_green = []
        for _, rgb in whep.frames[-6:]:
            bg, _ = regions(clip.alphas[nearest_index(clip, rgb, GREEN)])
            bg_green.append(colour_share(rgb, bg, GREEN))
        assert np.median(bg_green) > 0.8, bg_green
        assert whep.audio_frames > 0, "the camera's audio did not reach the WHEP viewer"

        async with http.delete(base + whep.resource) as resp:
            assert resp.status == 200

        async def one_left() -> bool:
            async with http.get(f"{base}/streams/{stream_id}") as resp:
                return (await resp.json())["viewers"] == 1

        for _ in range(50):
            if await one_left():
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail("the WHEP viewer was not removed from the stream")
        count = len(plain.frames)
        await wait_for(lambda: len(plain.frames) > count + 3, timeout=30)  # the other viewer plays on
    finally:
        for viewer in viewers:
            await viewer.close()
        await http.close()
        await server.close()
        camera.kill()
