"""RTSP cameras across nodes: each stream row has one owner, a live node.

A node owns the streams it created and those it took over; ownership changes
only in a transaction that locks the row (SKIP LOCKED, so nodes racing for the
streams of a dead one split them instead of waiting on each other). On each
heartbeat a node takes over streams whose owner went silent for
``node_timeout_s`` (or left cleanly), up to its own capacity, and stops any
stream it runs that is no longer its own (deleted, or taken over while this
node was cut off). Requests for a stream that reach another node are redirected
to the owner (server.streams.routes).
"""
from __future__ import annotations

import logging
from concurrent.futures import Future

from server.cluster.database import Connection
from server.cluster.node import ClusterNode
from server.streams.manager import StreamManager
from server.streams.store import Entry, Owner

log = logging.getLogger(__name__)

_ORPHANED = ("(s.owner IS NULL OR n.id IS NULL OR n.heartbeat_at < now() - make_interval(secs => %(timeout)s))")


def _entry(row: dict) -> Entry:
    return Entry(id=row["id"], url=row["url"], background=row["background"], record=row["record"],
                 created_at=row["created_at"])


class PgStreamRecords:
    """The stream list in PostgreSQL (server.streams.store.StreamRecords)."""

    def __init__(self, node: ClusterNode):
        self._node = node
        self._db = Connection(node.database_url)

    def load(self, capacity: int) -> list[Entry]:
        return self.sync([], capacity)[0]

    def save(self, entries: list[Entry]) -> Future[None]:
        # On the node's thread, after any sync queued before it: a sync never sees a
        # stream running here whose row is not written yet.
        future = self._node.submit(self._save, entries)
        future.add_done_callback(_log_failure)
        return future

    def _save(self, entries: list[Entry]) -> None:
        me = self._node.id
        with self._db.transaction() as conn:
            for e in entries:
                # a row another node took over stays theirs
                conn.execute(
                    "INSERT INTO streams (id, url, background, record, created_at, owner, owned_since) "
                    "VALUES (%s, %s, %s, %s, %s, %s, now()) ON CONFLICT (id) DO UPDATE SET url = EXCLUDED.url, "
                    "background = EXCLUDED.background, record = EXCLUDED.record WHERE streams.owner = EXCLUDED.owner",
                    (e.id, e.url, e.background, e.record, e.created_at, me))
            conn.execute("DELETE FROM streams WHERE owner = %s AND NOT (id = ANY(%s))", (me, [e.id for e in entries]))

    def sync(self, local: list[str], capacity: int) -> tuple[list[Entry], list[str]]:
        """(streams to start here: this node's and orphans taken over, streams to stop here)."""
        me = self._node.id
        params = {"me": me, "local": local, "timeout": self._node.config.node_timeout_s, "n": max(capacity, 0)}
        with self._db.transaction() as conn:
            mine = conn.execute("SELECT * FROM streams WHERE owner = %(me)s AND NOT (id = ANY(%(local)s))",
                                params).fetchall()
            params["n"] = max(capacity - len(mine), 0)
            taken = conn.execute(
                "UPDATE streams SET owner = %(me)s, owned_since = now(), takeovers = takeovers + 1 "
                "WHERE id IN (SELECT s.id FROM streams s LEFT JOIN nodes n ON n.id = s.owner "
                f"WHERE {_ORPHANED} AND NOT (s.id = ANY(%(local)s)) ORDER BY s.created_at LIMIT %(n)s "
                "FOR UPDATE OF s SKIP LOCKED) RETURNING *", params).fetchall()
            still = {r["id"] for r in conn.execute(
                "SELECT id FROM streams WHERE owner = %(me)s AND id = ANY(%(local)s)", params).fetchall()}
        for row in taken:
            log.warning("stream %s: taken over by this node (its owner stopped heart-beating)", row["id"])
        return [_entry(r) for r in [*mine, *taken]], [sid for sid in local if sid not in still]

    def owner(self, stream_id: str) -> Owner | None:
        with self._db.use() as conn:
            row = conn.execute(
                "SELECT s.owner, n.url, (n.heartbeat_at >= now() - make_interval(secs => %s)) AS alive "
                "FROM streams s LEFT JOIN nodes n ON n.id = s.owner WHERE s.id = %s",
                (self._node.config.node_timeout_s, stream_id)).fetchone()
        if row is None:
            return None
        return Owner(node_id=row["owner"], url=row["url"], alive=bool(row["alive"]))

    def release_all(self) -> None:
        self._node.submit(self._release_all).add_done_callback(_log_failure)

    def _release_all(self) -> None:
        with self._db.use() as conn:
            conn.execute("UPDATE streams SET owner = NULL WHERE owner = %s", (self._node.id,))

    def close(self) -> None:
        self._db.close()


def follow_streams(node: ClusterNode, manager: StreamManager) -> None:
    """Keep the streams in the database and run this node's share of them."""
    records = PgStreamRecords(node)
    manager.records = records

    async def tick() -> None:
        local = [s.id for s in manager.all()]
        adopt, drop = await node.call(records.sync, local, manager.config.max_streams - len(local))
        for stream_id in drop:
            await manager.release(stream_id)
        for entry in adopt:
            await manager.adopt(entry)

    node.on_beat(tick)
    node.on_leave(records.close)


def _log_failure(future: Future) -> None:
    exc = future.exception()
    if exc is not None:
        log.error("stream list not saved to the database: %s", exc)
