"""The shared PostgreSQL database (psycopg 3): connections and schema migrations.

Each user of the database (the job store, the node's heartbeat, the LISTEN loop)
holds its own connection behind a lock, as the SQLite store does; a connection
that broke (database restart, network) is replaced on the next call.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg.rows import DictRow, dict_row

from server.cluster.schema import MIGRATIONS

log = logging.getLogger(__name__)

# pg_advisory_xact_lock key serialising migrations across nodes starting together.
MIGRATION_LOCK = 0x61627261  # "abra"
CONNECT_TIMEOUT_S = 10


class DatabaseUnavailable(RuntimeError):
    """The cluster's database cannot be reached at start-up (the message says where, without the password)."""


def connect(url: str) -> psycopg.Connection[DictRow]:
    """An autocommit connection returning rows as dicts; transactions are explicit."""
    return psycopg.Connection.connect(url, autocommit=True, row_factory=dict_row, connect_timeout=CONNECT_TIMEOUT_S,
                                      application_name="abrar")


def one(cursor: psycopg.Cursor[DictRow]) -> DictRow:
    """The row of a query that always returns one (COUNT, INSERT .. RETURNING)."""
    row = cursor.fetchone()
    if row is None:
        raise psycopg.DataError("the query returned no row")
    return row


def redacted(url: str) -> str:
    """The URL without its password, for logs and errors."""
    info = psycopg.conninfo.conninfo_to_dict(url)
    info.pop("password", None)
    return " ".join(f"{k}={v}" for k, v in info.items())


class Connection:
    """One lazily (re)opened connection, used by one thread at a time."""

    def __init__(self, url: str):
        self._url = url
        self._conn: psycopg.Connection[DictRow] | None = None
        self._lock = threading.RLock()

    @contextmanager
    def use(self) -> Iterator[psycopg.Connection[DictRow]]:
        with self._lock:
            if self._conn is None or self._conn.closed:
                self._conn = connect(self._url)
            try:
                yield self._conn
            except psycopg.OperationalError:
                # the connection is likely gone: drop it so the next call reconnects
                self._close()
                raise

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection[DictRow]]:
        with self.use() as conn, conn.transaction():
            yield conn

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg.Error:
                pass
            self._conn = None


def migrate(url: str, node_id: str, wait_s: float = 60.0) -> list[int]:
    """Bring the schema up to date; returns the versions this call applied.

    Every node runs this at start-up. A transaction-scoped advisory lock makes
    nodes starting together take turns: the first applies what is missing, the
    others then find nothing to do. Each migration is recorded with the node that
    applied it. The database may still be starting (compose, systemd): retry
    connecting for ``wait_s``.
    """
    deadline = time.monotonic() + wait_s
    while True:
        try:
            conn = connect(url)
            break
        except psycopg.OperationalError as exc:
            if time.monotonic() > deadline:
                raise DatabaseUnavailable(f"cannot reach the database ({redacted(url)}) after {wait_s:g} s: "
                                          f"{str(exc).strip()}; check ABRAR_DATABASE_URL") from None
            log.warning("database not reachable yet (%s); retrying", str(exc).strip().splitlines()[0])
            time.sleep(1.0)
    applied: list[int] = []
    with conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                     "applied_at TIMESTAMPTZ NOT NULL DEFAULT now(), applied_by TEXT NOT NULL)")
        row = conn.execute("SELECT COALESCE(MAX(version), 0) AS v FROM schema_migrations").fetchone()
        current = row["v"] if row else 0
        for version, sql in enumerate(MIGRATIONS, start=1):
            if version <= current:
                continue
            conn.execute(sql)
            conn.execute("INSERT INTO schema_migrations (version, applied_by) VALUES (%s, %s)", (version, node_id))
            applied.append(version)
    if applied:
        log.info("database schema migrated to version %d", applied[-1])
    return applied
