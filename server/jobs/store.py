"""Job records in SQLite (stdlib sqlite3, WAL): the source of truth that survives restarts.

Methods are synchronous and thread-safe (one connection behind a lock); the event
loop calls them through a one-thread executor, worker threads call them directly.
WAL with synchronous=NORMAL keeps every committed change across a killed process.
"""
from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

STATUSES = ("queued", "running", "completed", "failed", "cancelled")
FINISHED = ("completed", "failed", "cancelled")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    filename TEXT NOT NULL,
    input_name TEXT NOT NULL,
    options TEXT NOT NULL,
    media TEXT NOT NULL,
    started_at REAL,
    finished_at REAL,
    expires_at REAL,
    expired INTEGER NOT NULL DEFAULT 0,
    result_name TEXT,
    result_bytes INTEGER,
    frames_done INTEGER NOT NULL DEFAULT 0,
    frames_total INTEGER,
    fps REAL,
    eta_s REAL,
    error TEXT,
    interruptions INTEGER NOT NULL DEFAULT 0,
    callback TEXT
);
CREATE INDEX IF NOT EXISTS jobs_status_created ON jobs (status, created_at);
CREATE INDEX IF NOT EXISTS jobs_created ON jobs (created_at);
"""


@dataclass(frozen=True)
class Job:
    id: str
    status: str
    created_at: float
    filename: str             # the client's name for the upload (display only, never a path)
    input_name: str           # file name inside the job's directory
    options: dict[str, Any]
    media: dict[str, Any]     # what probing the upload found
    started_at: float | None = None
    finished_at: float | None = None
    expires_at: float | None = None
    expired: bool = False
    result_name: str | None = None
    result_bytes: int | None = None
    frames_done: int = 0
    frames_total: int | None = None
    fps: float | None = None
    eta_s: float | None = None
    error: str | None = None
    interruptions: int = 0
    # The webhook: {"url", "state": pending|delivered|failed, "attempts": [...]}; see server.jobs.webhooks.
    callback: dict[str, Any] | None = None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


_COLUMNS = [f for f in Job.__dataclass_fields__]
_JSON_COLUMNS = ("options", "media", "callback")


def _to_row(job: Job) -> tuple:
    values = []
    for name in _COLUMNS:
        v = getattr(job, name)
        values.append(json.dumps(v) if name in _JSON_COLUMNS else int(v) if isinstance(v, bool) else v)
    return tuple(values)


def _from_row(row: sqlite3.Row) -> Job:
    data = dict(zip(row.keys(), row, strict=False))
    for name in _JSON_COLUMNS:
        data[name] = None if data[name] is None else json.loads(data[name])
    data["expired"] = bool(data["expired"])
    return Job(**data)


@dataclass(frozen=True)
class Recovered:
    """What start-up did with a job the previous process left running."""

    job_id: str
    status: str  # queued (will run again) or failed


def interrupted_error(times: int) -> str:
    """The error of a job failed because it was interrupted ``times`` times."""
    return ("the server stopped while this job was running" + (f" ({times} times)" if times > 1 else "")
            + "; submit the video again")


class JobRecords(Protocol):
    """What the upload API needs from a job store: SQLite here (one node), or
    PostgreSQL (server.cluster.jobs_store, several nodes sharing the queue)."""

    # True when other processes use the same records (several nodes): start-up
    # must then leave alone what looks abandoned but may be another node's.
    shared: bool

    def close(self) -> None: ...
    def get(self, job_id: str) -> Job | None: ...
    def page(self, limit: int, offset: int, status: str | None = None) -> tuple[list[Job], int]: ...
    def counts(self) -> dict[str, int]: ...
    def ids(self) -> set[str]: ...
    def add(self, job: Job, max_queued: int) -> bool: ...
    def claim_next(self) -> Job | None: ...
    def progress(self, job_id: str, frames_done: int, frames_total: int | None,
                 fps: float | None, eta_s: float | None) -> None: ...
    def finish(self, job_id: str, status: str, *, expires_at: float | None, error: str | None = None,
               result_name: str | None = None, result_bytes: int | None = None,
               frames_done: int | None = None) -> bool: ...
    def cancel_queued(self, job_id: str, expires_at: float | None) -> bool: ...
    def pending_callbacks(self) -> list[str]: ...
    def set_callback(self, job_id: str, callback: dict[str, Any]) -> None: ...
    def request_cancel(self, job_id: str) -> None: ...
    def requeue(self, job_id: str) -> None: ...
    def recover(self, policy: str, max_interruptions: int, expires_at: float | None) -> list[Recovered]: ...
    def fail_queued(self, job_id: str, error: str, expires_at: float | None) -> None: ...
    def delete(self, job_id: str) -> bool: ...
    def expire_due(self, now: float) -> list[Job]: ...


@dataclass
class JobStore:
    """The SQLite job store of a single node."""

    path: Path
    # Called with the per-status counts after every change of status (feeds a gauge).
    on_change: Callable[[dict[str, int]], None] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    shared = False

    def __post_init__(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(jobs)")}
        if "callback" not in columns:  # a database from before webhooks
            self._db.execute("ALTER TABLE jobs ADD COLUMN callback TEXT")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- reads -------------------------------------------------------------------

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _from_row(row) if row else None

    def page(self, limit: int, offset: int, status: str | None = None) -> tuple[list[Job], int]:
        """Newest first; ``status`` filters."""
        where, args = ("WHERE status = ?", (status,)) if status else ("", ())
        with self._lock:
            total = self._db.execute(f"SELECT COUNT(*) FROM jobs {where}", args).fetchone()[0]
            rows = self._db.execute(
                f"SELECT * FROM jobs {where} ORDER BY created_at DESC, rowid DESC LIMIT ? OFFSET ?",
                (*args, limit, offset)).fetchall()
        return [_from_row(r) for r in rows], total

    def counts(self) -> dict[str, int]:
        with self._lock:
            return self._counts()

    def _counts(self) -> dict[str, int]:
        rows = self._db.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall()
        found = {status: n for status, n in rows}
        return {s: found.get(s, 0) for s in STATUSES}

    def pending_callbacks(self) -> list[str]:
        """Finished jobs whose webhook is still to be delivered (e.g. across a restart)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, callback FROM jobs WHERE callback IS NOT NULL AND status IN (?, ?, ?)",
                FINISHED).fetchall()
        return [job_id for job_id, callback in rows if json.loads(callback).get("state") == "pending"]

    def ids(self) -> set[str]:
        with self._lock:
            return {r[0] for r in self._db.execute("SELECT id FROM jobs")}

    # -- writes ------------------------------------------------------------------

    def add(self, job: Job, max_queued: int) -> bool:
        """Insert a queued job unless ``max_queued`` jobs already wait; False when full."""
        with self._lock, self._transaction():
            queued = self._db.execute("SELECT COUNT(*) FROM jobs WHERE status = 'queued'").fetchone()[0]
            if queued >= max_queued:
                return False
            marks = ", ".join("?" for _ in _COLUMNS)
            self._db.execute(f"INSERT INTO jobs ({', '.join(_COLUMNS)}) VALUES ({marks})", _to_row(job))
            self._changed()
        return True

    def claim_next(self) -> Job | None:
        """Mark the oldest queued job running and return it."""
        with self._lock, self._transaction():
            row = self._db.execute(
                "SELECT id FROM jobs WHERE status = 'queued' ORDER BY created_at, rowid LIMIT 1").fetchone()
            if row is None:
                return None
            self._db.execute(
                "UPDATE jobs SET status = 'running', started_at = ?, frames_done = 0, fps = NULL, eta_s = NULL "
                "WHERE id = ?", (time.time(), row[0]))
            self._changed()
            job = self._db.execute("SELECT * FROM jobs WHERE id = ?", (row[0],)).fetchone()
        return _from_row(job)

    def progress(self, job_id: str, frames_done: int, frames_total: int | None,
                 fps: float | None, eta_s: float | None) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE jobs SET frames_done = ?, frames_total = COALESCE(?, frames_total), fps = ?, eta_s = ? "
                "WHERE id = ? AND status = 'running'", (frames_done, frames_total, fps, eta_s, job_id))

    def finish(self, job_id: str, status: str, *, expires_at: float | None, error: str | None = None,
               result_name: str | None = None, result_bytes: int | None = None,
               frames_done: int | None = None) -> bool:
        """Move a running job to a finished status; False if it was not running."""
        assert status in FINISHED
        with self._lock, self._transaction():
            cur = self._db.execute(
                "UPDATE jobs SET status = ?, finished_at = ?, expires_at = ?, error = ?, result_name = ?, "
                "result_bytes = ?, frames_done = COALESCE(?, frames_done), eta_s = NULL "
                "WHERE id = ? AND status = 'running'",
                (status, time.time(), expires_at, error, result_name, result_bytes, frames_done, job_id))
            if cur.rowcount:
                self._changed()
        return bool(cur.rowcount)

    def set_callback(self, job_id: str, callback: dict[str, Any]) -> None:
        with self._lock:
            self._db.execute("UPDATE jobs SET callback = ? WHERE id = ?", (json.dumps(callback), job_id))

    def cancel_queued(self, job_id: str, expires_at: float | None) -> bool:
        with self._lock, self._transaction():
            cur = self._db.execute(
                "UPDATE jobs SET status = 'cancelled', finished_at = ?, expires_at = ?, "
                "error = 'cancelled before it started' WHERE id = ? AND status = 'queued'",
                (time.time(), expires_at, job_id))
            if cur.rowcount:
                self._changed()
        return bool(cur.rowcount)

    def request_cancel(self, job_id: str) -> None:
        """Nothing to record: with one process, JobRunner.cancel reaches every running job."""

    def requeue(self, job_id: str) -> None:
        """Put a running job back in the queue (the server is shutting down cleanly)."""
        with self._lock, self._transaction():
            self._db.execute(
                "UPDATE jobs SET status = 'queued', started_at = NULL, frames_done = 0, fps = NULL, eta_s = NULL "
                "WHERE id = ? AND status = 'running'", (job_id,))
            self._changed()

    def recover(self, policy: str, max_interruptions: int, expires_at: float | None) -> list[Recovered]:
        """Resolve jobs a killed process left 'running': run them again or fail them.

        RVM's recurrent state and a half-written output cannot be resumed, so a
        re-queued job starts again from its first frame. A job interrupted
        ``max_interruptions`` times is failed, so a job that kills the server
        cannot keep killing it.
        """
        out: list[Recovered] = []
        with self._lock, self._transaction():
            rows = self._db.execute(
                "SELECT id, interruptions FROM jobs WHERE status = 'running' ORDER BY created_at").fetchall()
            for job_id, interruptions in rows:
                n = interruptions + 1
                if policy == "requeue" and n < max_interruptions:
                    self._db.execute(
                        "UPDATE jobs SET status = 'queued', interruptions = ?, started_at = NULL, frames_done = 0, "
                        "fps = NULL, eta_s = NULL WHERE id = ?", (n, job_id))
                    out.append(Recovered(job_id, "queued"))
                else:
                    why = interrupted_error(n)
                    self._db.execute(
                        "UPDATE jobs SET status = 'failed', interruptions = ?, finished_at = ?, expires_at = ?, "
                        "error = ?, eta_s = NULL WHERE id = ?", (n, time.time(), expires_at, why, job_id))
                    out.append(Recovered(job_id, "failed"))
            if rows:
                self._changed()
        return out

    def fail_queued(self, job_id: str, error: str, expires_at: float | None) -> None:
        with self._lock, self._transaction():
            self._db.execute(
                "UPDATE jobs SET status = 'failed', finished_at = ?, expires_at = ?, error = ? "
                "WHERE id = ? AND status = 'queued'", (time.time(), expires_at, error, job_id))
            self._changed()

    def delete(self, job_id: str) -> bool:
        with self._lock, self._transaction():
            cur = self._db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
            if cur.rowcount:
                self._changed()
        return bool(cur.rowcount)

    def expire_due(self, now: float) -> list[Job]:
        """Mark finished jobs past their expiry as expired and return them (their files go)."""
        with self._lock, self._transaction():
            rows = self._db.execute(
                "SELECT * FROM jobs WHERE expired = 0 AND expires_at IS NOT NULL AND expires_at <= ?",
                (now,)).fetchall()
            self._db.executemany("UPDATE jobs SET expired = 1 WHERE id = ?", [(r["id"],) for r in rows])
        return [replace(_from_row(r), expired=True) for r in rows]

    # -- helpers -----------------------------------------------------------------

    def _transaction(self):
        return _Transaction(self._db)

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change(self._counts())


class _Transaction:
    """BEGIN IMMEDIATE .. COMMIT (or ROLLBACK on error), for autocommit connections."""

    def __init__(self, db: sqlite3.Connection):
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, exc, tb) -> None:
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")
