"""This server as one node of a cluster sharing a PostgreSQL database.

The node keeps a row in ``nodes`` fresh (heartbeat, capacity, load) and, on each
beat, runs the features' hooks: take over the work of nodes that went silent,
drop work taken from this one. A second connection LISTENs for NOTIFY messages
(a job queued, a cancel) so other nodes' requests reach this one at once, not
at the next beat.
"""
from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from server.cluster.config import ClusterConfig
from server.cluster.database import Connection, connect

log = logging.getLogger(__name__)

Tick = Callable[[], Awaitable[None]]
Status = Callable[[], tuple[dict[str, int], dict[str, int]]]  # (capacity, load) of this node
_LISTEN_WAKE_S = 1.0


def default_identity(config: ClusterConfig, host: str, port: int) -> tuple[str, str]:
    """(node id, URL) of this node: the configured ones, else derived from where it listens."""
    name = socket.gethostname()
    reachable = name if host in ("", "0.0.0.0", "::") else host
    url = config.node_url.rstrip("/") or f"http://{reachable}:{port}"
    return config.node_id or f"{name}:{port}", url


class ClusterNode:
    def __init__(self, config: ClusterConfig, node_id: str, url: str, status: Status):
        assert config.database_url
        self.config = config
        self.id = node_id
        self.url = url
        self.database_url = config.database_url
        self._status = status
        self._db = Connection(config.database_url)
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="cluster-db")
        self._ticks: list[Tick] = []
        self._channels: dict[str, Callable[[str], None]] = {}
        self._on_leave: list[Callable[[], None]] = []
        self._task: asyncio.Task | None = None
        self._listener: threading.Thread | None = None
        self._stopping = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- wiring (before start) --------------------------------------------------

    def on_beat(self, tick: Tick) -> None:
        """Run ``tick`` after every heartbeat (it runs its own database calls through ``call``)."""
        self._ticks.append(tick)

    def on_notify(self, channel: str, handler: Callable[[str], None]) -> None:
        """Call ``handler(payload)`` on the event loop for each NOTIFY on ``channel``."""
        self._channels[channel] = handler

    def on_leave(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the node's thread when it leaves (close a feature's connection)."""
        self._on_leave.append(fn)

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a blocking database call on the node's own thread (calls run one at a time, in order)."""
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        """Queue a database call on the node's thread without waiting for it."""
        return self._thread.submit(fn, *args)

    # -- life ---------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self.call(self._beat, True)
        self._task = asyncio.create_task(self._run(), name="cluster-heartbeat")
        if self._channels:
            self._listener = threading.Thread(target=self._listen, name="cluster-listen", daemon=True)
            self._listener.start()
        log.info("node %s (%s) joined the cluster", self.id, self.url)

    async def stop_beating(self) -> None:
        """Server shutdown begins: take on no more work."""
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def leave(self) -> None:
        """Leave cleanly (after the features put their work back): nobody waits for a timeout."""
        await self.stop_beating()
        try:
            await self.call(self._leave)
        except psycopg.Error as exc:
            log.warning("could not remove node %s from the database: %s", self.id, exc)
        for fn in self._on_leave:
            await self.call(fn)
        if self._listener is not None:
            await asyncio.to_thread(self._listener.join, 2 * _LISTEN_WAKE_S)
        self._thread.shutdown(wait=True)
        self._db.close()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.config.heartbeat_s)
            try:
                await self.call(self._beat)
            except psycopg.Error as exc:  # the database is away: keep trying, work goes on meanwhile
                log.warning("heartbeat failed: %s", str(exc).strip().splitlines()[0] if str(exc) else exc)
                continue
            for tick in self._ticks:
                try:
                    await tick()
                except Exception:  # noqa: BLE001 - one failing hook must not stop the heartbeat
                    log.exception("cluster hook %s failed", getattr(tick, "__qualname__", tick))

    # -- database (node thread) --------------------------------------------------

    def _beat(self, starting: bool = False) -> None:
        capacity, load = self._status()
        restarted = ", started_at = now()" if starting else ""  # the same node id after a restart
        with self._db.use() as conn:
            conn.execute(
                "INSERT INTO nodes (id, url, capacity, load) VALUES (%s, %s, %s, %s) ON CONFLICT (id) DO UPDATE "
                "SET url = EXCLUDED.url, heartbeat_at = now(), capacity = EXCLUDED.capacity, "
                f"load = EXCLUDED.load{restarted}", (self.id, self.url, Jsonb(capacity), Jsonb(load)))

    def _leave(self) -> None:
        with self._db.use() as conn:
            conn.execute("DELETE FROM nodes WHERE id = %s", (self.id,))

    def nodes(self) -> list[dict[str, Any]]:
        """Every node that has heart-beaten, alive or not, with its age by the database clock."""
        with self._db.use() as conn:
            rows = conn.execute(
                "SELECT id, url, started_at, heartbeat_at, capacity, load, "
                "EXTRACT(EPOCH FROM now() - heartbeat_at)::float AS age_s FROM nodes ORDER BY id").fetchall()
        return [{"id": r["id"], "url": r["url"], "started_at": _iso(r["started_at"]),
                 "last_heartbeat": _iso(r["heartbeat_at"]), "heartbeat_age_s": round(max(r["age_s"], 0.0), 2),
                 "alive": r["age_s"] < self.config.node_timeout_s, "self": r["id"] == self.id,
                 "capacity": r["capacity"], "load": r["load"]} for r in rows]

    def alive_urls(self) -> dict[str, str]:
        """id -> URL of the nodes alive now (this one included)."""
        with self._db.use() as conn:
            rows = conn.execute("SELECT id, url FROM nodes WHERE heartbeat_at >= now() - make_interval(secs => %s)",
                                (self.config.node_timeout_s,)).fetchall()
        return {r["id"]: r["url"] for r in rows}

    # -- LISTEN (own thread, own connection) --------------------------------------

    def _listen(self) -> None:
        while not self._stopping.is_set():
            try:
                with connect(self.database_url) as conn:
                    for channel in self._channels:
                        conn.execute(f"LISTEN {channel}")
                    while not self._stopping.is_set():
                        for note in conn.notifies(timeout=_LISTEN_WAKE_S):
                            self._dispatch(note.channel, note.payload)
            except psycopg.Error as exc:
                if self._stopping.is_set():
                    return
                log.warning("LISTEN connection lost (%s); reconnecting", exc)
                self._stopping.wait(1.0)

    def _dispatch(self, channel: str, payload: str) -> None:
        handler = self._channels.get(channel)
        if handler is not None and self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(handler, payload)


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.astimezone(timezone.utc).isoformat(timespec="milliseconds")
