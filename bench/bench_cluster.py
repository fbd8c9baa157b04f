"""Video-job throughput with 1 vs N `abrar serve` nodes sharing one PostgreSQL database.

Each round starts the nodes on a fresh database and a shared data dir, submits the
same jobs round-robin to them, and times until every job is completed. Each node
runs one job at a time with ``--threads`` model threads (default: every core, as a
node on its own machine would). A throwaway PostgreSQL cluster is started
(tests/postgres_support.py, Debian's `postgresql` package). Prints JSON.

    python bench/bench_cluster.py --nodes 1 2 --jobs 12 --seconds 2
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))  # the test helpers start nodes and PostgreSQL

import requests  # noqa: E402

from api_support import make_clip  # noqa: E402
from cluster_support import query, start_nodes, stop_nodes, submit  # noqa: E402
from postgres_support import PostgresServer  # noqa: E402


def run_round(database_url: str, nodes: int, clip: Path, jobs: int, threads: int, work: Path) -> dict:
    servers = start_nodes(database_url, work / f"data-{nodes}", [f"n{i + 1}" for i in range(nodes)],
                          "--model-threads", str(threads))
    try:
        urls = [s.url for s in servers.values()]
        load_before = os.getloadavg()[0]
        started = time.monotonic()
        for i in range(jobs):
            submit(urls[i % len(urls)], clip)
        while True:
            listed = requests.get(f"{urls[0]}/jobs", params={"limit": 100}, timeout=30).json()["jobs"]
            if any(j["status"] in ("failed", "cancelled") for j in listed):
                raise RuntimeError(f"a job did not complete: {listed}")
            if len(listed) == jobs and all(j["status"] == "completed" for j in listed):
                break
            time.sleep(0.2)
        elapsed = time.monotonic() - started
        runs = query(database_url, "SELECT node_id, COUNT(*) AS n FROM job_runs GROUP BY node_id ORDER BY node_id")
        return {"nodes": nodes, "jobs": jobs, "seconds": round(elapsed, 2),
                "jobs_per_minute": round(60 * jobs / elapsed, 2), "runs_per_node": {r["node_id"]: r["n"] for r in runs},
                "load_1min_before": round(load_before, 2), "load_1min_after": round(os.getloadavg()[0], 2)}
    finally:
        stop_nodes(servers)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--jobs", type=int, default=12)
    parser.add_argument("--seconds", type=float, default=2.0, help="clip length (320x180, 15 fps)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="model threads per node")
    parser.add_argument("--media", type=Path, default=REPO.parent / "shared" / "media")
    args = parser.parse_args()
    os.environ.setdefault("ABRAR_MODELS_DIR", str(REPO.parent / "shared" / "models"))
    os.environ.setdefault("ABRAR_DOWNLOAD", "false")

    postgres = PostgresServer()
    with tempfile.TemporaryDirectory(prefix="abrar-bench-cluster-") as tmp:
        work = Path(tmp)
        clip = make_clip(args.media, work / "clip.mp4", seconds=args.seconds, width=320, height=180, fps=15,
                         tone=False)
        rounds = []
        postgres.start()
        try:
            for n in args.nodes:
                rounds.append(run_round(postgres.create_database(f"bench_{n}"), n, clip, args.jobs, args.threads,
                                        work))
        finally:
            postgres.stop()
    print(json.dumps({"bench": "cluster_jobs", "machine": platform.processor() or platform.machine(),
                      "cpus": os.cpu_count(), "clip": f"320x180, {args.seconds:g} s at 15 fps, no audio",
                      "node_settings": f"1 job worker, {args.threads} model threads, torch backend",
                      "rounds": rounds}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
