"""Job records in PostgreSQL, shared by every node: the same contract as the SQLite
store (server.jobs.store.JobRecords), plus what several nodes need.

- A node claims the oldest queued job with ``FOR UPDATE SKIP LOCKED``, so two
  nodes never take the same one, and each claim opens a row in ``job_runs``
  (node, start, end, outcome): the history of who ran what, and when.
- Writes from a run (progress, finish, requeue) are fenced by the run's id: once
  a job was taken from a node that went silent, its late writes change nothing.
- A node that stops heart-beating for ``job_failover_s`` loses its running jobs:
  any live node re-queues them (or fails them after the third interruption),
  exactly as a restart does on a single node.
- Cancels are a flag on the job plus a NOTIFY, so the node running it hears at once.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from psycopg.types.json import Jsonb

from server.cluster.database import Connection, one
from server.jobs.store import FINISHED, STATUSES, Job, Recovered, interrupted_error

log = logging.getLogger(__name__)

CHANNEL = "abrar_jobs"  # NOTIFY payloads: "queued" or "cancel <job id>"
# pg_advisory_xact_lock key making "count queued, then insert" atomic across nodes.
_QUEUE_LOCK = 0x6A6F6273  # "jobs"
_FIELDS = tuple(Job.__dataclass_fields__)
_JSON_FIELDS = ("options", "media", "callback")
_RESET = "started_at = NULL, frames_done = 0, fps = NULL, eta_s = NULL, node_id = NULL, run_id = NULL"


def _value(job: Job, name: str) -> Any:
    value = getattr(job, name)
    return Jsonb(value) if name in _JSON_FIELDS and value is not None else value


def _job(row: dict[str, Any]) -> Job:
    return Job(**{name: row[name] for name in _FIELDS})


@dataclass(frozen=True)
class Takeover:
    """A running job found on a node that stopped heart-beating."""

    job_id: str
    node_id: str
    status: str  # queued (will run again) or failed


@dataclass
class PgJobStore:
    url: str
    node_id: str
    on_change: Callable[[dict[str, int]], None] | None = None
    shared = True
    # run id of each job this process is running (the fence of its writes)
    _runs: dict[str, int] = field(default_factory=dict, init=False, repr=False)
    _runs_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        self._db = Connection(self.url)

    def close(self) -> None:
        self._db.close()

    # -- reads -------------------------------------------------------------------

    def get(self, job_id: str) -> Job | None:
        with self._db.use() as conn:
            row = conn.execute("SELECT * FROM jobs WHERE id = %s", (job_id,)).fetchone()
        return _job(row) if row else None

    def page(self, limit: int, offset: int, status: str | None = None) -> tuple[list[Job], int]:
        where, args = ("WHERE status = %s", (status,)) if status else ("", ())
        with self._db.use() as conn:
            total = one(conn.execute(f"SELECT COUNT(*) AS n FROM jobs {where}", args))["n"]
            rows = conn.execute(f"SELECT * FROM jobs {where} ORDER BY created_at DESC, seq DESC LIMIT %s OFFSET %s",
                                (*args, limit, offset)).fetchall()
        return [_job(r) for r in rows], total

    def counts(self) -> dict[str, int]:
        with self._db.use() as conn:
            rows = conn.execute("SELECT status, COUNT(*) AS n FROM jobs GROUP BY status").fetchall()
        found = {r["status"]: r["n"] for r in rows}
        return {s: found.get(s, 0) for s in STATUSES}

    def ids(self) -> set[str]:
        with self._db.use() as conn:
            return {r["id"] for r in conn.execute("SELECT id FROM jobs")}

    def pending_callbacks(self) -> list[str]:
        with self._db.use() as conn:
            rows = conn.execute("SELECT id FROM jobs WHERE callback->>'state' = 'pending' "
                                "AND status IN ('completed', 'failed', 'cancelled')").fetchall()
        return [r["id"] for r in rows]

    def node_of(self, job_id: str) -> str | None:
        with self._db.use() as conn:
            row = conn.execute("SELECT node_id FROM jobs WHERE id = %s", (job_id,)).fetchone()
        return row["node_id"] if row else None

    # -- writes ------------------------------------------------------------------

    def add(self, job: Job, max_queued: int) -> bool:
        with self._db.transaction() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_QUEUE_LOCK,))
            queued = one(conn.execute("SELECT COUNT(*) AS n FROM jobs WHERE status = 'queued'"))["n"]
            if queued >= max_queued:
                return False
            values = [_value(job, f) for f in _FIELDS]
            conn.execute(f"INSERT INTO jobs ({', '.join(_FIELDS)}) VALUES ({', '.join(['%s'] * len(_FIELDS))})",
                         values)
            conn.execute("SELECT pg_notify(%s, 'queued')", (CHANNEL,))
        self._changed()
        return True

    def claim_next(self) -> Job | None:
        with self._db.transaction() as conn:
            row = conn.execute("SELECT id FROM jobs WHERE status = 'queued' ORDER BY created_at, seq LIMIT 1 "
                               "FOR UPDATE SKIP LOCKED").fetchone()
            if row is None:
                return None
            run = one(conn.execute("INSERT INTO job_runs (job_id, node_id) VALUES (%s, %s) RETURNING id",
                                   (row["id"], self.node_id)))["id"]
            job = one(conn.execute(
                "UPDATE jobs SET status = 'running', started_at = %s, frames_done = 0, fps = NULL, eta_s = NULL, "
                "node_id = %s, run_id = %s, cancel_requested = false WHERE id = %s RETURNING *",
                (time.time(), self.node_id, run, row["id"])))
        with self._runs_lock:
            self._runs[job["id"]] = run
        self._changed()
        return _job(job)

    def progress(self, job_id: str, frames_done: int, frames_total: int | None,
                 fps: float | None, eta_s: float | None) -> None:
        with self._db.use() as conn:
            conn.execute("UPDATE jobs SET frames_done = %s, frames_total = COALESCE(%s, frames_total), fps = %s, "
                         "eta_s = %s WHERE id = %s AND status = 'running' AND run_id = %s",
                         (frames_done, frames_total, fps, eta_s, job_id, self._run(job_id)))

    def finish(self, job_id: str, status: str, *, expires_at: float | None, error: str | None = None,
               result_name: str | None = None, result_bytes: int | None = None,
               frames_done: int | None = None) -> bool:
        assert status in FINISHED
        run = self._run(job_id)
        with self._db.transaction() as conn:
            cur = conn.execute(
                "UPDATE jobs SET status = %s, finished_at = %s, expires_at = %s, error = %s, result_name = %s, "
                "result_bytes = %s, frames_done = COALESCE(%s, frames_done), eta_s = NULL "
                "WHERE id = %s AND status = 'running' AND run_id = %s",
                (status, time.time(), expires_at, error, result_name, result_bytes, frames_done, job_id, run))
            done = bool(cur.rowcount)
            self._end_run(conn, run, status if done else "superseded")
        self._forget(job_id)
        if done:
            self._changed()
        return done

    def set_callback(self, job_id: str, callback: dict[str, Any]) -> None:
        with self._db.transaction() as conn:
            conn.execute("UPDATE jobs SET callback = %s WHERE id = %s", (Jsonb(callback), job_id))

    def cancel_queued(self, job_id: str, expires_at: float | None) -> bool:
        with self._db.use() as conn:
            cur = conn.execute(
                "UPDATE jobs SET status = 'cancelled', finished_at = %s, expires_at = %s, "
                "error = 'cancelled before it started' WHERE id = %s AND status = 'queued'",
                (time.time(), expires_at, job_id))
        if cur.rowcount:
            self._changed()
        return bool(cur.rowcount)

    def request_cancel(self, job_id: str) -> None:
        """Flag a running job cancelled and tell its node (which may be another one)."""
        with self._db.transaction() as conn:
            cur = conn.execute("UPDATE jobs SET cancel_requested = true WHERE id = %s AND status = 'running'",
                               (job_id,))
            if cur.rowcount:
                conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, f"cancel {job_id}"))

    def requeue(self, job_id: str) -> None:
        run = self._run(job_id)
        with self._db.transaction() as conn:
            conn.execute(f"UPDATE jobs SET status = 'queued', {_RESET} "
                         "WHERE id = %s AND status = 'running' AND run_id = %s", (job_id, run))
            self._end_run(conn, run, "requeued")
            conn.execute("SELECT pg_notify(%s, 'queued')", (CHANNEL,))
        self._forget(job_id)
        self._changed()

    def recover(self, policy: str, max_interruptions: int, expires_at: float | None) -> list[Recovered]:
        """Jobs this node (same node id) left running when it was killed; other nodes' are theirs."""
        with self._db.transaction() as conn:
            rows = conn.execute("SELECT id, interruptions, run_id FROM jobs WHERE status = 'running' "
                                "AND node_id = %s ORDER BY created_at FOR UPDATE", (self.node_id,)).fetchall()
            out = [Recovered(r["id"], self._interrupted(conn, r, policy, max_interruptions, expires_at, "restart"))
                   for r in rows]
        if out:
            self._changed()
        return out

    def take_over_dead(self, failover_s: float, policy: str, max_interruptions: int, expires_at: float | None,
                       cleanup: Callable[[Job, str], None]) -> list[Takeover]:
        """Re-queue (or fail) the running jobs of nodes silent for ``failover_s``.

        Row locks (SKIP LOCKED) let several live nodes do this at once without
        touching the same job twice; ``cleanup(job, status)`` runs before the
        commit, while the job cannot be claimed yet, to delete its half-written output.
        """
        with self._db.transaction() as conn:
            rows = conn.execute(
                "SELECT j.id, j.interruptions, j.run_id, j.node_id FROM jobs j LEFT JOIN nodes n ON n.id = j.node_id "
                "WHERE j.status = 'running' AND j.node_id <> %s "
                "AND (n.id IS NULL OR n.heartbeat_at < now() - make_interval(secs => %s)) "
                "ORDER BY j.created_at FOR UPDATE OF j SKIP LOCKED", (self.node_id, failover_s)).fetchall()
            out = []
            for r in rows:
                status = self._interrupted(conn, r, policy, max_interruptions, expires_at, "node_lost")
                job = one(conn.execute("SELECT * FROM jobs WHERE id = %s", (r["id"],)))
                cleanup(_job(job), status)
                out.append(Takeover(r["id"], r["node_id"], status))
            if any(t.status == "queued" for t in out):
                conn.execute("SELECT pg_notify(%s, 'queued')", (CHANNEL,))
        if out:
            self._changed()
        return out

    def not_ours(self, job_ids: list[str]) -> tuple[list[str], list[str]]:
        """Of jobs running here: those no longer ours (taken over) and those asked to cancel."""
        with self._runs_lock:
            runs = {j: self._runs[j] for j in job_ids if j in self._runs}
        if not runs:
            return [], []
        with self._db.use() as conn:
            rows = conn.execute("SELECT id, status, run_id, cancel_requested FROM jobs WHERE id = ANY(%s)",
                                (list(runs),)).fetchall()
        found = {r["id"]: r for r in rows}
        lost = [j for j, run in runs.items()
                if j not in found or found[j]["status"] != "running" or found[j]["run_id"] != run]
        cancel = [j for j in runs if j not in lost and found[j]["cancel_requested"]]
        return lost, cancel

    def fail_queued(self, job_id: str, error: str, expires_at: float | None) -> None:
        with self._db.use() as conn:
            conn.execute("UPDATE jobs SET status = 'failed', finished_at = %s, expires_at = %s, error = %s "
                         "WHERE id = %s AND status = 'queued'", (time.time(), expires_at, error, job_id))
        self._changed()

    def delete(self, job_id: str) -> bool:
        with self._db.use() as conn:
            cur = conn.execute("DELETE FROM jobs WHERE id = %s", (job_id,))
        if cur.rowcount:
            self._changed()
        return bool(cur.rowcount)

    def expire_due(self, now: float) -> list[Job]:
        with self._db.transaction() as conn:
            rows = conn.execute(
                "UPDATE jobs SET expired = true WHERE id IN (SELECT id FROM jobs WHERE NOT expired "
                "AND expires_at IS NOT NULL AND expires_at <= %s FOR UPDATE SKIP LOCKED) RETURNING *",
                (now,)).fetchall()
        return [replace(_job(r), expired=True) for r in rows]

    # -- helpers -----------------------------------------------------------------

    def _interrupted(self, conn, row: dict[str, Any], policy: str, max_interruptions: int,
                     expires_at: float | None, outcome: str) -> str:
        """Count one interruption of a running job: back to the queue, or failed at the limit."""
        n = row["interruptions"] + 1
        if policy == "requeue" and n < max_interruptions:
            conn.execute(f"UPDATE jobs SET status = 'queued', interruptions = %s, {_RESET} WHERE id = %s",
                         (n, row["id"]))
            status = "queued"
        else:
            conn.execute("UPDATE jobs SET status = 'failed', interruptions = %s, finished_at = %s, expires_at = %s, "
                         "error = %s, eta_s = NULL WHERE id = %s",
                         (n, time.time(), expires_at, interrupted_error(n), row["id"]))
            status = "failed"
        if row["run_id"] is not None:
            self._end_run(conn, row["run_id"], outcome)
        return status

    @staticmethod
    def _end_run(conn, run: int | None, outcome: str) -> None:
        conn.execute("UPDATE job_runs SET ended_at = clock_timestamp(), outcome = %s "
                     "WHERE id = %s AND ended_at IS NULL", (outcome, run))

    def _run(self, job_id: str) -> int | None:
        with self._runs_lock:
            return self._runs.get(job_id)

    def _forget(self, job_id: str) -> None:
        with self._runs_lock:
            self._runs.pop(job_id, None)

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change(self.counts())
