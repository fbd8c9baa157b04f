"""Video jobs on the real app (127.0.0.1, real RVM weights, real video with a real audio track)."""
from __future__ import annotations

import asyncio
import time

import av
import numpy as np
import pytest

from api_support import api_client, form, make_clip, wait_for
from matting.metrics import mad
from matting.video_io import read_alpha_frames

pytestmark = pytest.mark.timeout(300)

GREEN = np.array([0, 177, 64])


@pytest.fixture(scope="module")
def clips(media, tmp_path_factory):
    d = tmp_path_factory.mktemp("clips")
    return {
        "main": make_clip(media, d / "main.mp4", seconds=2, width=320, height=180, fps=15),
        "short": make_clip(media, d / "short.mp4", seconds=1, width=320, height=180, fps=10, start=3),
        "long": make_clip(media, d / "long.mp4", seconds=6, width=320, height=180, fps=10),
        "tiny": make_clip(media, d / "tiny.mp4", seconds=0.5, width=160, height=96, fps=10),
    }


async def _submit(client, clip, **params):
    resp = await client.post("/remove-bg-video", params=params, data=form(clip.read_bytes(), clip.name))
    assert resp.status == 202, await resp.text()
    body = await resp.json()
    assert resp.headers["Location"] == f"/jobs/{body['job_id']}" == body["status_url"]
    return body["job_id"]


async def _job(client, job_id):
    resp = await client.get(f"/jobs/{job_id}")
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def _until(client, job_id, *statuses, timeout=150.0):
    async def check():
        job = await _job(client, job_id)
        assert job["status"] != "failed", job["error"]
        return job if job["status"] in statuses else None
    return await wait_for(check, timeout, what=f"job {job_id} to be {'/'.join(statuses)}")


def _source_frames(path):
    with av.open(str(path)) as src:
        return [f.to_ndarray(format="rgb24") for f in src.decode(video=0)]


async def test_video_job_upload_to_download(runtime, clips, tmp_path):
    clip = clips["main"]
    async with api_client(runtime, tmp_path / "data") as client:
        job_id = await _submit(client, clip, background_type="transparent")
        seen, started = [], time.monotonic()
        while True:
            job = await _job(client, job_id)
            seen.append((job["status"], job["progress"], job["frames_done"]))
            if job["status"] in ("completed", "failed"):
                break
            assert time.monotonic() - started < 150, seen[-5:]
            await asyncio.sleep(0.1)
        assert job["status"] == "completed", job["error"]
        progress = [p for _, p, _ in seen]
        assert progress == sorted(progress), "progress went backwards"
        midway = sorted({p for s, p, _ in seen if s == "running" and 0 < p < 100})
        print(f"\nprogress observed: {midway}; final {job['frames_done']}/{job['frames_total']} frames "
              f"at {job['fps']} fps")
        assert midway, f"never saw progress between 0 and 100: {seen}"
        assert job["frames_done"] == job["frames_total"] == 30
        assert job["result_url"] == f"/jobs/{job_id}/result" and job["eta_s"] is None

        part = await client.get(job["result_url"], headers={"Range": "bytes=0-99"})
        assert part.status == 206 and len(await part.read()) == 100
        assert part.headers["Content-Range"].startswith("bytes 0-99/")
        resp = await client.get(job["result_url"])
        assert resp.status == 200 and resp.content_type == "video/webm"
        assert resp.headers["Content-Disposition"] == 'attachment; filename="main-transparent.webm"'
        out = tmp_path / "result.webm"
        out.write_bytes(await resp.read())
        assert int(part.headers["Content-Range"].split("/")[1]) == out.stat().st_size == job["result_bytes"]

        listing = await (await client.get("/jobs")).json()
        assert [j["id"] for j in listing["jobs"]] == [job_id] and listing["total"] == 1
        metrics = await (await client.get("/metrics")).text()
    assert 'abrar_jobs{state="completed"} 1.0' in metrics
    assert "abrar_job_frames_processed_total 30.0" in metrics
    assert 'abrar_upload_inference_seconds_count{kind="video_frame"} 30.0' in metrics

    alphas = [f[:, :, 3].astype(np.float32) / 255 for f in read_alpha_frames(out)]
    assert len(alphas) == 30
    session = runtime.new_session()
    core = [session.process(rgb).alpha for rgb in _source_frames(clip)[:10]]
    errs = [mad(a, c) for a, c in zip(alphas, core, strict=False)]
    person = np.mean([(a > 0.5).mean() for a in alphas])
    print(f"WebM alpha vs core RVM, first 10 frames: MAD {np.mean(errs):.2f} (x1e-3); person covers {person:.0%}")
    assert np.mean(errs) < 15, errs
    assert 0.05 < person < 0.8
    with av.open(str(out)) as result:
        assert result.streams.video[0].codec_context.name == "vp9"
        assert [s.codec_context.name for s in result.streams.audio] == ["opus"]
        audio_s = sum(f.samples for f in result.decode(audio=0)) / result.streams.audio[0].rate
    assert 1.8 < audio_s < 2.2, audio_s


async def test_green_mp4_cancel_list_and_delete(runtime, clips, tmp_path):
    async with api_client(runtime, tmp_path / "data", workers=1) as client:
        green = await _submit(client, clips["short"], background_type="green", crf="23")
        long = await _submit(client, clips["long"], background_type="transparent")
        queued = await _submit(client, clips["short"], background_type="blue", keep_audio="false")

        page = await (await client.get("/jobs", params={"limit": "2"})).json()
        assert [j["id"] for j in page["jobs"]] == [queued, long] and page["total"] == 3
        assert page["next"] == "/jobs?limit=2&offset=2"
        rest = await (await client.get(page["next"])).json()
        assert [j["id"] for j in rest["jobs"]] == [green] and rest["next"] is None

        resp = await client.delete(f"/jobs/{queued}")
        assert resp.status == 200 and (await resp.json())["status"] == "cancelled"

        await _until(client, green, "completed")
        running = await wait_for(lambda: _running_with_frames(client, long), 60, what="long job to start")
        resp = await client.delete(f"/jobs/{long}")
        assert resp.status == 202, await resp.text()
        cancelled = await _until(client, long, "cancelled")
        print(f"\ncancelled a running job at frame {cancelled['frames_done']} of {running['frames_total']}")
        assert cancelled["frames_done"] < cancelled["frames_total"]
        assert (await client.get(f"/jobs/{long}/result")).status == 409

        resp = await client.get(f"/jobs/{green}/result")
        assert resp.status == 200 and resp.content_type == "video/mp4"
        out = tmp_path / "green.mp4"
        out.write_bytes(await resp.read())

        data_jobs = tmp_path / "data" / "jobs"
        assert (data_jobs / green).is_dir()
        assert (await client.delete(f"/jobs/{green}")).status == 204
        assert (await client.get(f"/jobs/{green}")).status == 404
        assert not (data_jobs / green).exists()
        for job_id in (long, queued):
            assert (await client.delete(f"/jobs/{job_id}")).status == 204
        assert (await (await client.get("/jobs")).json())["total"] == 0

    with av.open(str(out)) as result:
        assert result.streams.video[0].codec_context.name == "h264"
        assert [s.codec_context.name for s in result.streams.audio] == ["aac"]
        frames = [f.to_ndarray(format="rgb24") for f in result.decode(video=0)]
    assert len(frames) == 10
    near_green = np.mean([(np.abs(f.astype(int) - GREEN).max(axis=2) < 40).mean() for f in frames])
    print(f"green MP4: {near_green:.0%} of pixels are the green background")
    assert 0.2 < near_green < 0.95


async def _running_with_frames(client, job_id):
    job = await _job(client, job_id)
    return job if job["status"] == "running" and job["frames_done"] > 0 else None


async def test_results_expire_after_ttl(runtime, clips, tmp_path):
    async with api_client(runtime, tmp_path / "data", result_ttl_s=1.5, cleanup_interval_s=0.2) as client:
        job_id = await _submit(client, clips["tiny"], background_type="white")
        job = await _until(client, job_id, "completed")
        assert job["expires_at"] is not None and job["expired"] is False
        assert (await client.get(f"/jobs/{job_id}/result")).status == 200

        async def expired():
            job = await _job(client, job_id)
            return job if job["expired"] else None
        job = await wait_for(expired, 15, what="the result to expire")
        assert job["result_url"] is None and job["status"] == "completed"
        assert not (tmp_path / "data" / "jobs" / job_id).exists()
        resp = await client.get(f"/jobs/{job_id}/result")
        assert resp.status == 410 and "expired" in (await resp.json())["error"]["message"]
