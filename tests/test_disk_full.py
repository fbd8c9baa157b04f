"""A full data disk (a real, small tmpfs): uploads get 507, the job fails saying why,
/healthz reports it, and the worker runs the next job once space is back."""
from __future__ import annotations

import errno
import subprocess

import pytest

from api_support import api_client, form, make_clip, wait_for

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def small_disk(tmp_path):
    """A 24 MiB tmpfs; skipped only where mounting is not permitted (not root)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(path):
    """Write zeros to ``path`` until the filesystem refuses (ENOSPC)."""
    block = b"\0" * (256 * 1024)
    with path.open("wb", buffering=0) as f:
        while True:
            try:
                f.write(block)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                break
        for size in (4096, 512, 1):  # the last crumbs too
            try:
                while True:
                    f.write(b"\0" * size)
            except OSError:
                pass


async def test_full_disk_fails_the_job_and_the_worker_survives(runtime, media, small_disk, tmp_path):
    clip = make_clip(media, tmp_path / "clip.mp4", seconds=8, width=640, height=360, fps=15, tone=False)
    short = make_clip(media, tmp_path / "short.mp4", seconds=0.5, width=160, height=96, fps=10, tone=False)
    data = small_disk / "data"
    async with api_client(runtime, data, min_free_mb=1.0) as client:
        resp = await client.post("/remove-bg-video", params={"background_type": "green", "format": "mp4"},
                                 data=form(clip.read_bytes(), clip.name))
        assert resp.status == 202, await resp.text()
        job_id = (await resp.json())["job_id"]

        async def running():
            job = await (await client.get(f"/jobs/{job_id}")).json()
            assert job["status"] in ("queued", "running"), job
            return job["status"] == "running" and job["frames_done"] > 0
        await wait_for(running, 120, what="the job to start")

        filler = data / "filler.bin"
        fill(filler)

        # While the disk is full: a new upload gets a clear 507, health says why.
        resp = await client.post("/remove-bg-video", data=form(short.read_bytes(), short.name))
        assert resp.status == 507, await resp.text()
        body = await resp.json()
        assert body["error"]["code"] == "disk_full" and "disk" in body["error"]["message"]
        health = await (await client.get("/healthz")).json()
        assert health["status"] != "ok" and any("disk" in p for p in health["problems"]), health

        # The running job stops; its record cannot be written yet, so the worker
        # says so and retries instead of dying with the job left 'running'.
        async def stuck():
            health = await (await client.get("/healthz")).json()
            return any("could not be recorded" in p for p in health["problems"])
        await wait_for(stuck, 90, what="the job to stop on the full disk")

        # Space comes back: the job is failed, saying why; health recovers.
        filler.unlink()

        async def failed():
            job = await (await client.get(f"/jobs/{job_id}")).json()
            return job if job["status"] == "failed" else None
        job = await wait_for(failed, 30, what="the job to fail")
        assert "disk is full" in job["error"], job
        health = await (await client.get("/healthz")).json()
        assert health == {**health, "status": "ok", "problems": []}, health

        # The same worker runs the next job.
        resp = await client.post("/remove-bg-video", params={"background_type": "green", "format": "mp4"},
                                 data=form(short.read_bytes(), short.name))
        assert resp.status == 202, await resp.text()
        second = (await resp.json())["job_id"]

        async def completed():
            job = await (await client.get(f"/jobs/{second}")).json()
            assert job["status"] != "failed", job
            return job["status"] == "completed"
        await wait_for(completed, 120, what="the next job to complete")


async def test_disk_filling_up_during_an_upload_is_507(runtime, small_disk):
    """Enough free space when the upload starts, not by its end: 507, the partial file removed."""
    data = small_disk / "data"
    big = bytes(range(256)) * (30 * 4096)  # 30 MiB, more than the whole 24 MiB disk
    async with api_client(runtime, data, min_free_mb=1.0) as client:
        for path in ("/remove-bg", "/remove-bg-video"):
            resp = await client.post(path, data=form(big, "big.png", content_type="image/png"))
            assert resp.status == 507, await resp.text()
            assert (await resp.json())["error"]["code"] == "disk_full"
            assert list((data / "uploads").iterdir()) == []
