"""Video limits hold for every decoded frame and packet, not only for what the container
declares: size switches, squeezed timestamps and long audio (crafted with PyAV/FFmpeg)."""
from __future__ import annotations

import av
import pytest

from api_support import api_client, form, wait_for
from conftest import load_rgb
from hostile_media import long_audio_video, size_switch_video, squeezed_video

pytestmark = pytest.mark.timeout(240)

LIMITS = {"max_video_pixels": 128 * 128, "max_video_seconds": 5.0, "max_video_fps": 4.0}  # 20 frames


@pytest.fixture(scope="module")
def photo(media):
    return load_rgb(media / "images" / "p3m_0a78cf02.png")


async def _finished(client, path, **params):
    resp = await client.post("/remove-bg-video", params=params, data=form(path.read_bytes(), path.name))
    assert resp.status == 202, await resp.text()
    job_id = (await resp.json())["job_id"]

    async def done():
        job = await (await client.get(f"/jobs/{job_id}")).json()
        return job if job["status"] in ("completed", "failed", "cancelled") else None
    return await wait_for(done, 120, what=f"job {job_id} to finish")


async def test_frames_past_the_limits_fail_the_job(runtime, photo, tmp_path):
    grows = size_switch_video(tmp_path / "grows.mkv", photo, (64, 64), (256, 256))
    squeezed = squeezed_video(tmp_path / "squeezed.nut", photo, 40, container="nut")
    long_audio = long_audio_video(tmp_path / "audio.mp4", video_s=1, audio_s=20)
    async with api_client(runtime, tmp_path / "data", **LIMITS) as client:
        job = await _finished(client, grows)
        assert job["status"] == "failed" and "frame 4 is 256x256" in job["error"], job
        assert job["frames_done"] <= 3, job

        job = await _finished(client, squeezed)
        assert job["status"] == "failed" and "more than 20 frames" in job["error"], job

        job = await _finished(client, long_audio)
        assert job["status"] == "failed" and "audio goes on past 5 s" in job["error"], job

        # Declared in the container: refused at once.
        declared = squeezed_video(tmp_path / "squeezed.mp4", photo, 40)
        resp = await client.post("/remove-bg-video", data=form(declared.read_bytes(), declared.name))
        assert resp.status == 413 and "40 frames" in (await resp.json())["error"]["message"]


async def test_a_size_change_within_the_limit_keeps_the_first_size(runtime, photo, tmp_path):
    shifts = size_switch_video(tmp_path / "shifts.mkv", photo, (64, 64), (96, 112))
    async with api_client(runtime, tmp_path / "data", **LIMITS) as client:
        job = await _finished(client, shifts, background_type="green", format="mp4")
        assert job["status"] == "completed", job
        result = await (await client.get(job["result_url"])).read()
    out = tmp_path / "out.mp4"
    out.write_bytes(result)
    with av.open(str(out)) as src:
        sizes = [(f.width, f.height) for f in src.decode(video=0)]
    assert sizes == [(64, 64)] * 6, sizes
