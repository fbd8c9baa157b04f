"""Several nodes on one PostgreSQL database: concurrent start-up migrates once, jobs
submitted anywhere run exactly once, a killed node's job is finished by another."""
from __future__ import annotations

import itertools
import time

import av
import pytest
import requests

from api_support import make_clip
from cluster_support import (
    JOB_FAILOVER_S,
    T,
    job,
    overlapping_runs,
    query,
    start_nodes,
    stop_nodes,
    submit,
    wait_until,
)
from server.cluster.schema import MIGRATIONS

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

JOBS = 30


def _frames(data: bytes, path) -> int:
    path.write_bytes(data)
    with av.open(str(path)) as src:
        return sum(1 for _ in src.decode(video=0))


def test_jobs_across_three_nodes_run_exactly_once(postgres, media, tmp_path):
    db = postgres.create_database("jobs_three")
    clip = make_clip(media, tmp_path / "tiny.mp4", seconds=0.4, width=160, height=96, fps=10, tone=False)
    nodes = start_nodes(db, tmp_path / "data", ["n1", "n2", "n3"])
    try:
        migrations = query(db, "SELECT version, applied_by FROM schema_migrations")
        # three nodes raced on an empty database; one applied every migration, each once
        assert sorted(m["version"] for m in migrations) == list(range(1, len(MIGRATIONS) + 1)), migrations
        assert len({m["applied_by"] for m in migrations}) == 1, migrations
        listed = requests.get(f"{nodes['n2'].url}/nodes", timeout=T).json()
        assert listed["database"] == "postgresql"
        assert sorted(n["id"] for n in listed["nodes"] if n["alive"]) == ["n1", "n2", "n3"]

        urls = [n.url for n in nodes.values()]
        started = time.monotonic()
        submitted = {submit(url, clip): url for url, _ in zip(itertools.cycle(urls), range(JOBS))}

        def all_done():
            jobs = requests.get(f"{urls[0]}/jobs", params={"limit": 100}, timeout=T).json()["jobs"]
            assert not [j for j in jobs if j["status"] in ("failed", "cancelled")], jobs
            return len(jobs) == JOBS and all(j["status"] == "completed" for j in jobs)

        wait_until(f"{JOBS} jobs to complete", all_done, timeout=300, interval=0.5)
        elapsed = time.monotonic() - started

        runs = query(db, "SELECT job_id, node_id, outcome FROM job_runs")
        assert sorted(r["job_id"] for r in runs) == sorted(submitted), "each job ran exactly once"
        assert all(r["outcome"] == "completed" for r in runs), runs
        assert not overlapping_runs(db)
        per_node = {n: sum(r["node_id"] == n for r in runs) for n in nodes}
        print(f"\n{JOBS} jobs on 3 nodes in {elapsed:.1f} s; runs per node {per_node}")
        assert sum(1 for n in per_node.values() if n) >= 2, f"the queue was not shared: {per_node}"

        # Results download from any node (the data dir is shared), not only the one that ran the job.
        for i, job_id in enumerate(submitted):
            if i % 6:
                continue
            other = next(u for u in urls if u != submitted[job_id])
            resp = requests.get(f"{other}/jobs/{job_id}/result", timeout=T)
            assert resp.status_code == 200, resp.text
            assert _frames(resp.content, tmp_path / f"{job_id}.mp4") == 4
    finally:
        stop_nodes(nodes)


def test_killed_node_job_finished_by_another_and_cancel_crosses_nodes(postgres, media, tmp_path):
    db = postgres.create_database("jobs_failover")
    clip = make_clip(media, tmp_path / "long.mp4", seconds=4, width=320, height=180, fps=15, tone=False)
    nodes = start_nodes(db, tmp_path / "data", ["a", "b"])
    try:
        job_id = submit(nodes["a"].url, clip)
        running = wait_until("the job to run", lambda: (j := job(nodes["a"].url, job_id))["status"] == "running"
                             and j["frames_done"] >= 2 and j, timeout=120)
        owner = query(db, "SELECT node_id FROM jobs WHERE id = %s", job_id)[0]["node_id"]
        survivor = "b" if owner == "a" else "a"
        nodes[owner].kill()  # SIGKILL: no clean-up, its heartbeat just stops
        killed = time.monotonic()
        url = nodes[survivor].url

        def rerun():
            j = job(url, job_id)
            return j["status"] in ("running", "completed") and j["restarts"] == 1 and j

        wait_until("another node to take the job over", rerun, timeout=JOB_FAILOVER_S + 15)
        taken = time.monotonic() - killed
        done = wait_until("the re-run to complete", lambda: (j := job(url, job_id))["status"] in
                          ("completed", "failed") and j, timeout=180)
        finished = time.monotonic() - killed
        assert done["status"] == "completed", done
        print(f"\njob failover: killed {owner} at frame {running['frames_done']}; running again on {survivor} "
              f"after {taken:.1f} s (limit {JOB_FAILOVER_S:g} s + one heartbeat), completed {finished:.1f} s "
              "after the kill")
        runs = query(db, "SELECT node_id, outcome FROM job_runs WHERE job_id = %s ORDER BY id", job_id)
        assert [(r["node_id"], r["outcome"]) for r in runs] == [(owner, "node_lost"), (survivor, "completed")]
        assert not overlapping_runs(db)
        result = requests.get(f"{url}/jobs/{job_id}/result", timeout=T)
        assert result.status_code == 200
        assert _frames(result.content, tmp_path / "result.mp4") == 60

        # The dead node comes back: a DELETE on one node reaches a job running on the other.
        nodes[owner] = start_nodes(db, tmp_path / "data", [owner])[owner]
        second = submit(url, clip)
        wait_until("the second job to run", lambda: job(url, second)["status"] == "running", timeout=120)
        runner = query(db, "SELECT node_id FROM jobs WHERE id = %s", second)[0]["node_id"]
        elsewhere = nodes[survivor if runner == owner else owner].url
        resp = requests.delete(f"{elsewhere}/jobs/{second}", timeout=T)
        assert resp.status_code == 202, resp.text
        cancelled = wait_until("the cancel to reach the other node",
                               lambda: (j := job(url, second))["status"] != "running" and j, timeout=20)
        assert cancelled["status"] == "cancelled", cancelled
        assert query(db, "SELECT node_id, outcome FROM job_runs WHERE job_id = %s", second) == \
            [{"node_id": runner, "outcome": "cancelled"}]
    finally:
        stop_nodes(nodes)
