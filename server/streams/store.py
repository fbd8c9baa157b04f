"""The stream list on disk (DATA_DIR/streams.json), so streams survive a server restart.

The file holds camera URLs with their credentials (the server needs them to
reconnect), so it is written owner-only and atomically.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

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
