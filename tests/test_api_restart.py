"""Jobs survive the server process dying: kill -9 mid-queue, start again on the same data dir."""
from __future__ import annotations

import hashlib
import time
from pathlib import Path

import av
import pytest
import requests

from api_support import make_clip
from server.jobs.store import Job, JobStore
from server_process import start_server

pytestmark = pytest.mark.timeout(300)

ARGS = ["--jobs-workers", "1"]
T = 30  # seconds, per HTTP call


def _submit(url, clip, background):
    with clip.open("rb") as f:
        resp = requests.post(f"{url}/remove-bg-video", params={"background_type": background},
                             files={"file": (clip.name, f)}, timeout=T)
    assert resp.status_code == 202, resp.text
    return resp.json()["job_id"]


def _job(url, job_id):
    resp = requests.get(f"{url}/jobs/{job_id}", timeout=T)
    assert resp.status_code == 200, resp.text
    return resp.json()


def _wait(url, what, predicate, timeout=150.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = {j["id"]: j for j in requests.get(f"{url}/jobs", params={"limit": 100}, timeout=T).json()["jobs"]}
        failed = [j for j in jobs.values() if j["status"] == "failed"]
        assert not failed, failed
        if predicate(jobs):
            return jobs
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _download(url, job_id) -> bytes:
    resp = requests.get(f"{url}/jobs/{job_id}/result", timeout=T)
    assert resp.status_code == 200, resp.text
    return resp.content


def _frames(data: bytes, tmp_path) -> int:
    path = tmp_path / f"{hashlib.sha1(data).hexdigest()}.bin"
    path.write_bytes(data)
    with av.open(str(path)) as src:
        return sum(1 for _ in src.decode(video=0))


def _running(job_id, min_frames=2):
    return lambda jobs: jobs[job_id]["status"] == "running" and jobs[job_id]["frames_done"] >= min_frames


def _children(pid: int) -> list[int]:
    """The processes ``pid`` started (the RMBG and video-job children)."""
    return [int(child) for task in Path(f"/proc/{pid}/task").iterdir()
            for child in (task / "children").read_text().split()]


def _running_process(pid: int) -> bool:
    try:  # a zombie has finished; only its parent's wait is missing
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_kill_mid_queue_then_restart(media, tmp_path):
    # 20 and 40 frames: the jobs the test must catch mid-run (B, D) get the longer clip.
    short = make_clip(media, tmp_path / "short.mp4", seconds=2, width=320, height=180, fps=10)
    long = make_clip(media, tmp_path / "long.mp4", seconds=4, width=320, height=180, fps=10)
    frames = {}
    data = tmp_path / "data"

    server = start_server(data, args=ARGS)
    try:
        a, b, c = (_submit(server.url, clip, bg) for clip, bg in
                   ((short, "transparent"), (long, "green"), (short, "white")))
        frames.update({a: 20, b: 40, c: 20})
        _wait(server.url, "A done and B under way",
              lambda jobs: jobs[a]["status"] == "completed" and _running(b)(jobs))
        result_a = _download(server.url, a)
        children = _children(server.proc.pid)
        assert children, "B runs in a child process"
        server.kill()  # SIGKILL: no shutdown handler runs
    finally:
        server.kill()
    print(f"\nkilled the server with A completed, B running, C queued ({server.log_path})")
    deadline = time.monotonic() + 10
    while any(_running_process(c) for c in children):  # an orphaned job would write B's result again
        assert time.monotonic() < deadline, "a child process outlived the killed server"
        time.sleep(0.2)

    server = start_server(data, args=ARGS)
    try:
        after = {j: _job(server.url, j) for j in (a, b, c)}
        assert after[a]["status"] == "completed" and _download(server.url, a) == result_a
        assert after[b]["status"] in ("queued", "running") and after[b]["restarts"] == 1
        assert after[c]["status"] in ("queued", "running") and after[c]["restarts"] == 0
        jobs = _wait(server.url, "B and C to complete after the restart",
                     lambda jobs: all(jobs[j]["status"] == "completed" for j in (b, c)))
        assert len(jobs) == 3
        for j in (b, c):
            assert jobs[j]["frames_done"] == frames[j]
            assert _frames(_download(server.url, j), tmp_path) == frames[j]

        d = _submit(server.url, long, "blue")
        _wait(server.url, "D under way", _running(d))
        assert server.terminate() == 0  # clean stop: D goes back to the queue, not counted as a crash
    finally:
        server.kill()

    server = start_server(data, args=ARGS)
    try:
        assert _job(server.url, d)["restarts"] == 0
        jobs = _wait(server.url, "D to complete", lambda jobs: jobs[d]["status"] == "completed")
        assert [j["status"] for j in jobs.values()] == ["completed"] * 4
        assert _frames(_download(server.url, d), tmp_path) == 40
        print(f"all 4 jobs completed; B restarted {jobs[b]['restarts']} time(s)")
    finally:
        server.terminate()
    leftovers = sorted(p.name for p in (data / "jobs").glob("*/*"))
    assert leftovers == sorted(["result.webm", "result.mp4", "result.mp4", "result.mp4"]), leftovers


def _queued_job(job_id: str, interruptions: int = 0) -> Job:
    return Job(id=job_id, status="queued", created_at=time.time(), filename="x.mp4", input_name="input",
               options={"format": "webm"}, media={}, interruptions=interruptions)


@pytest.mark.parametrize("policy", ["requeue", "fail"])
def test_restart_policy_and_crash_loop_guard(tmp_path, policy):
    """Which jobs a restart re-queues and which it fails, with the error the client sees."""
    store = JobStore(tmp_path / "jobs.sqlite3")
    store.add(_queued_job("a" * 32), max_queued=10)
    store.add(_queued_job("b" * 32, interruptions=2), max_queued=10)
    store.add(_queued_job("c" * 32), max_queued=10)
    assert store.claim_next().id == "a" * 32 and store.claim_next().id == "b" * 32
    store.close()

    store = JobStore(tmp_path / "jobs.sqlite3")  # as a new process would
    recovered = {r.job_id[0]: r.status for r in store.recover(policy, max_interruptions=3, expires_at=None)}
    expected_a = "queued" if policy == "requeue" else "failed"
    assert recovered == {"a": expected_a, "b": "failed"}  # b was interrupted for the third time
    assert store.get("b" * 32).error == ("the server stopped while this job was running (3 times); "
                                         "submit the video again")
    assert store.get("a" * 32).interruptions == 1
    assert store.get("c" * 32).status == "queued"
    counts = store.counts()
    expected = (2, 1, 0) if policy == "requeue" else (1, 2, 0)
    assert (counts["queued"], counts["failed"], counts["running"]) == expected
    if policy == "fail":
        assert store.get("a" * 32).error == "the server stopped while this job was running; submit the video again"
