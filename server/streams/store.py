"""Where the stream list is kept, so streams survive a restart: ``StreamRecords``.

A single node keeps it on disk (DATA_DIR/streams.json, ``FileRecords``); the file
holds camera URLs with their credentials (the server needs them to reconnect),
so it is written owner-only and atomically. Nodes of a cluster keep it in
PostgreSQL (server.cluster.streams), where each stream also has an owner.
"""
from __future__ import annotations

import json
import logging
import os
from concurrent.futures import Future
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

FILE_NAME = "streams.json"
VERSION = 1


@dataclass(frozen=True)
class Entry:
    id: str
    url: str
    background: str
    record: bool
    created_at: float


class StreamRecords(Protocol):
    def load(self, capacity: int) -> list[Entry]:
        """The streams this node should run at start-up (at most ``capacity``)."""

    def save(self, entries: list[Entry]) -> Future[None] | None:
        """``entries`` are all the streams this node runs now; a Future when saving goes on elsewhere."""

    def owner(self, stream_id: str) -> Owner | None:
        """Which node runs a stream this node does not have; None if no such stream."""

    def release_all(self) -> None:
        """Shutdown: keep the list, but let other nodes take this node's streams now."""


@dataclass(frozen=True)
class Owner:
    node_id: str | None   # None: the stream waits for a node to take it over
    url: str | None
    alive: bool


@dataclass
class FileRecords:
    """One node's list in a JSON file: every stream is this node's."""

    path: Path

    def load(self, capacity: int) -> list[Entry]:
        return load(self.path)

    def save(self, entries: list[Entry]) -> None:
        try:
            save(self.path, entries)
        except OSError as exc:
            log.error("cannot save the stream list to %s: %s", self.path, exc)
        return None

    def owner(self, stream_id: str) -> Owner | None:
        return None

    def release_all(self) -> None:
        """The file stays as it is for the next start."""


def load(path: Path) -> list[Entry]:
    """Saved entries; a missing file is an empty list, an unreadable one is set aside."""
    try:
        data = json.loads(path.read_text())
        return [Entry(id=str(e["id"]), url=str(e["url"]), background=str(e["background"]),
                      record=bool(e["record"]), created_at=float(e["created_at"])) for e in data["streams"]]
    except FileNotFoundError:
        return []
    except (OSError, ValueError, KeyError, TypeError) as exc:
        aside = path.with_name(path.name + ".bad")
        log.error("cannot read the stream list %s (%s); moved it to %s and starting with none", path, exc, aside)
        try:
            path.replace(aside)
        except OSError:
            pass
        return []


def save(path: Path, entries: list[Entry]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # also when a stale .tmp with other permissions was left behind
    with os.fdopen(fd, "w") as f:
        json.dump({"version": VERSION, "streams": [asdict(e) for e in entries]}, f, indent=1)
    os.replace(tmp, path)
