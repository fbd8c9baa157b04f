"""Several `abrar serve` nodes on one throwaway PostgreSQL database, sharing a data dir."""
from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import requests
from psycopg.rows import dict_row

from server_process import ServerProcess, start_server

T = 30  # seconds, per HTTP call
# Short cluster timings so failovers happen within a test's patience; set these env
# vars to the defaults (2, 8, 30) to measure failover as deployed.
HEARTBEAT_S = float(os.environ.get("ABRAR_TEST_HEARTBEAT_S", 0.5))
NODE_TIMEOUT_S = float(os.environ.get("ABRAR_TEST_NODE_TIMEOUT_S", 3.0))
JOB_FAILOVER_S = float(os.environ.get("ABRAR_TEST_JOB_FAILOVER_S", 4.0))


def node_args(database_url: str, node_id: str, *extra: str) -> list[str]:
    return ["--cluster-database-url", database_url, "--cluster-node-id", node_id,
            "--cluster-heartbeat-s", str(HEARTBEAT_S), "--cluster-node-timeout-s", str(NODE_TIMEOUT_S),
            "--cluster-job-failover-s", str(JOB_FAILOVER_S), "--jobs-workers", "1", "--model-threads", "1",
            "--model-backend", "torch", *extra]


def start_nodes(database_url: str, data_dir: Path, names: list[str], *extra: str) -> dict[str, ServerProcess]:
    """Start the nodes at the same time (all racing to migrate an empty database)."""
    with ThreadPoolExecutor(len(names)) as pool:
        futures = {name: pool.submit(start_server, data_dir, args=node_args(database_url, name, *extra),
                                     timeout=120) for name in names}
        nodes = {}
        try:
            for name, future in futures.items():
                nodes[name] = future.result()
        except BaseException:
            for f in futures.values():
                if f.done() and not f.exception():
                    f.result().kill()
            raise
    return nodes


def stop_nodes(nodes: dict[str, ServerProcess]) -> None:
    for node in nodes.values():
        node.kill()


def query(database_url: str, sql: str, *args) -> list[dict]:
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        return conn.execute(sql, args).fetchall()


def submit(url: str, clip: Path, **params) -> str:
    with clip.open("rb") as f:
        resp = requests.post(f"{url}/remove-bg-video", params={"background_type": "green", **params},
                             files={"file": (clip.name, f)}, timeout=T)
    assert resp.status_code == 202, resp.text
    return resp.json()["job_id"]


def job(url: str, job_id: str) -> dict:
    resp = requests.get(f"{url}/jobs/{job_id}", timeout=T)
    assert resp.status_code == 200, resp.text
    return resp.json()


def wait_until(what: str, check, timeout: float, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def overlapping_runs(database_url: str) -> list[dict]:
    """Pairs of runs of one job that overlapped in time (an open run counts as still going)."""
    return query(database_url, """
        SELECT a.job_id, a.id AS run_a, b.id AS run_b, a.node_id AS node_a, b.node_id AS node_b
        FROM job_runs a JOIN job_runs b ON a.job_id = b.job_id AND a.id < b.id
        WHERE tstzrange(a.started_at, COALESCE(a.ended_at, 'infinity')) &&
              tstzrange(b.started_at, COALESCE(b.ended_at, 'infinity'))""")
