"""The PostgreSQL stores without servers: concurrent migrations, claims under contention,
a cut-off node's late writes, cancels, stream ownership."""
from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from cluster_support import overlapping_runs, query
from server.cluster.config import ClusterConfig
from server.cluster.database import migrate
from server.cluster.jobs_store import PgJobStore
from server.cluster.node import ClusterNode
from server.cluster.schema import MIGRATIONS
from server.cluster.streams import PgStreamRecords
from server.jobs.store import Job
from server.streams.store import Entry

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def db(postgres, request):
    url = postgres.create_database(f"store_{request.node.name[:40]}")
    migrate(url, "setup")
    return url


def _job(created_at: float | None = None) -> Job:
    return Job(id=uuid.uuid4().hex, status="queued", created_at=created_at or time.time(), filename="clip.mp4",
               input_name="input", options={"format": "webm"}, media={"frames": 10})


def _beat(url: str, node_id: str, age_s: float = 0.0) -> None:
    query(url, "INSERT INTO nodes (id, url, heartbeat_at) VALUES (%s, 'http://x', now() - make_interval(secs => %s)) "
               "ON CONFLICT (id) DO UPDATE SET heartbeat_at = EXCLUDED.heartbeat_at RETURNING id", node_id, age_s)


def test_concurrent_migrations_apply_once(postgres):
    url = postgres.create_database("store_migrations")
    with ThreadPoolExecutor(6) as pool:
        applied = list(pool.map(lambda i: migrate(url, f"n{i}"), range(6)))
    # one node applied every migration, the five others none
    assert sorted(len(a) for a in applied) == [0, 0, 0, 0, 0, len(MIGRATIONS)], applied
    assert len(query(url, "SELECT * FROM schema_migrations")) == len(MIGRATIONS)


def test_each_job_is_claimed_by_one_node(db):
    stores = [PgJobStore(db, f"n{i}") for i in range(4)]
    for i in range(40):
        assert stores[i % 4].add(_job(time.time() + i * 1e-3), max_queued=100)

    def drain(store: PgJobStore) -> list[str]:
        claimed = []
        while (job := store.claim_next()) is not None:
            claimed.append(job.id)
            assert store.finish(job.id, "completed", expires_at=None)
        return claimed

    with ThreadPoolExecutor(4) as pool:
        claimed = [j for part in pool.map(drain, stores) for j in part]
    assert len(claimed) == len(set(claimed)) == 40
    assert query(db, "SELECT COUNT(*) AS n FROM job_runs WHERE outcome = 'completed'")[0]["n"] == 40
    assert not overlapping_runs(db)


def test_queue_limit_holds_across_nodes(db):
    stores = [PgJobStore(db, f"n{i}") for i in range(3)]
    with ThreadPoolExecutor(3) as pool:
        added = list(pool.map(lambda i: stores[i % 3].add(_job(), max_queued=5), range(12)))
    assert sum(added) == 5


def test_a_cut_off_node_loses_its_job_and_its_late_writes_change_nothing(db):
    one, two = PgJobStore(db, "one"), PgJobStore(db, "two")
    job = _job()
    one.add(job, max_queued=10)
    assert one.claim_next().id == job.id
    _beat(db, "one", age_s=60)  # one stopped heart-beating a minute ago
    _beat(db, "two")
    cleaned = []
    taken = two.take_over_dead(30, "requeue", 3, None, lambda j, status: cleaned.append((j.id, status)))
    assert [(t.job_id, t.node_id, t.status) for t in taken] == [(job.id, "one", "queued")]
    assert cleaned == [(job.id, "queued")]
    assert two.claim_next().id == job.id

    one.progress(job.id, 9, 10, 1.0, 0.1)  # one comes back and carries on: fenced off
    assert one.not_ours([job.id]) == ([job.id], [])
    assert not one.finish(job.id, "completed", expires_at=None, result_name="result.webm")
    assert two.get(job.id).frames_done == 0 and two.get(job.id).interruptions == 1
    assert two.finish(job.id, "completed", expires_at=None, result_name="result.webm")
    runs = query(db, "SELECT node_id, outcome FROM job_runs ORDER BY id")
    assert [(r["node_id"], r["outcome"]) for r in runs] == [("one", "node_lost"), ("two", "completed")]
    assert not overlapping_runs(db)


def test_third_interruption_fails_the_job(db):
    stores = [PgJobStore(db, f"n{i}") for i in range(4)]
    job = _job()
    stores[0].add(job, max_queued=10)
    for i in range(3):
        assert stores[i].claim_next().id == job.id
        _beat(db, f"n{i}", age_s=60)
        _beat(db, "n3")
        taken = stores[3].take_over_dead(30, "requeue", 3, None, lambda j, s: None)
        assert [t.status for t in taken] == (["queued"] if i < 2 else ["failed"])
    failed = stores[3].get(job.id)
    assert failed.status == "failed" and failed.interruptions == 3 and "3 times" in failed.error


def test_cancel_from_another_node_is_flagged_for_the_runner(db):
    runner, other = PgJobStore(db, "runner"), PgJobStore(db, "other")
    job = _job()
    other.add(job, max_queued=10)
    runner.claim_next()
    other.request_cancel(job.id)
    assert runner.not_ours([job.id]) == ([], [job.id])
    assert runner.finish(job.id, "cancelled", expires_at=None, error="cancelled by a DELETE request")


def test_streams_of_a_silent_node_are_split_among_the_live_ones(db):
    cfg = ClusterConfig(database_url=db, heartbeat_s=0.5, node_timeout_s=3)

    def records(node_id: str) -> PgStreamRecords:
        node = ClusterNode(cfg, node_id, f"http://{node_id}", status=lambda: ({}, {}))
        return PgStreamRecords(node)

    dead, a, b = records("dead"), records("a"), records("b")
    dead._save([Entry(id=f"s{i}", url=f"rtsp://cam{i}/", background="green", record=False, created_at=i)
                for i in range(5)])
    _beat(db, "dead", age_s=10)
    _beat(db, "a")
    _beat(db, "b")
    assert a.owner("s0").node_id == "dead" and not a.owner("s0").alive
    start_a, stop_a = a.sync([], capacity=3)
    start_b, stop_b = b.sync([], capacity=3)
    assert len(start_a) == 3 and len(start_b) == 2 and not stop_a and not stop_b
    assert {e.id for e in start_a} | {e.id for e in start_b} == {f"s{i}" for i in range(5)}
    # the dead node comes back: what it ran is no longer its own, and its saves change nothing
    assert dead.sync(["s0", "s1"], capacity=4)[1] == ["s0", "s1"]
    dead._save([Entry(id="s0", url="rtsp://other/", background="blue", record=True, created_at=0)])
    assert query(db, "SELECT url, owner FROM streams WHERE id = 's0'")[0]["owner"] in ("a", "b")
    assert query(db, "SELECT url FROM streams WHERE id = 's0'")[0]["url"] == "rtsp://cam0/"


async def test_single_node_without_postgres_lists_itself(runtime, tmp_path):
    from api_support import api_client

    async with api_client(runtime, tmp_path / "data") as client:
        resp = await client.get("/nodes")
        body = await resp.json()
        metrics = await (await client.get("/metrics")).text()
    assert resp.status == 200 and body["database"] == "sqlite"
    [node] = body["nodes"]
    assert node["alive"] and node["self"] and node["load"] == {"jobs_running": 0, "live_sessions": 0, "streams": 0}
    assert node["capacity"]["job_workers"] == 1
    assert f'abrar_node_info{{database="sqlite",node="{node["id"]}"}} 1.0' in metrics


def test_cluster_settings_are_checked():
    with pytest.raises(ValueError, match="PostgreSQL URL"):
        ClusterConfig(database_url="mysql://db/abrar")
    with pytest.raises(ValueError, match="two heartbeats"):
        ClusterConfig(heartbeat_s=5, node_timeout_s=8)
