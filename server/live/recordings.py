"""Finished recordings on disk: list and serve by name, never outside the directory."""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

# Names the server itself gives: no separators, no leading dot, so no way out of the directory.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}\.webm")


@dataclass(frozen=True)
class RecordingInfo:
    name: str
    bytes: int
    modified: str   # ISO 8601, UTC
    url: str


def recording_url(name: str) -> str:
    return f"/recordings/{name}"


def list_recordings(directory: Path) -> list[RecordingInfo]:
    """Finalised recordings, newest first (files still being written end in .part)."""
    if not directory.is_dir():
        return []
    found = []
    for path in directory.iterdir():
        if find_recording(directory, path.name) is not None:  # links out of the folder are not listed
            st = path.stat()
            found.append((st.st_mtime, RecordingInfo(
                name=path.name, bytes=st.st_size,
                modified=datetime.fromtimestamp(st.st_mtime, timezone.utc).isoformat(timespec="seconds"),
                url=recording_url(path.name))))
    return [info for _, info in sorted(found, key=lambda x: x[0], reverse=True)]


def find_recording(directory: Path, name: str) -> Path | None:
    """The file called ``name`` in ``directory``, or None (bad name, missing, or a link out)."""
    if not _NAME.fullmatch(name):
        return None
    root = directory.resolve()
    path = (root / name).resolve()
    if path.parent != root or not path.is_file():
        return None
    return path


def as_json(infos: list[RecordingInfo]) -> list[dict]:
    return [asdict(i) for i in infos]
