"""Where job files live under the data dir; ids are checked before any path is built."""
from __future__ import annotations

import re
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from server.disk import DISK_FULL_MESSAGE, free_bytes
from server.errors import ApiError

_ID = re.compile(r"[0-9a-f]{32}")
ID_PATTERN = "^[0-9a-f]{32}$"


def new_id() -> str:
    return uuid.uuid4().hex


def check_id(job_id: str) -> str:
    """The id itself if well-formed; anything else (``..%2f..`` included) is a 400."""
    if not _ID.fullmatch(job_id):
        raise ApiError(400, "invalid job id: expected 32 lowercase hex characters", code="invalid_job_id")
    return job_id


@dataclass(frozen=True)
class JobFiles:
    """``<data>/jobs/<id>/`` per job, ``<data>/uploads/`` for uploads still arriving."""

    data_dir: Path
    # Below this much free space the disk counts as full: uploads are refused.
    min_free_bytes: int = 0

    @property
    def jobs_dir(self) -> Path:
        return self.data_dir / "jobs"

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"

    def prepare(self) -> None:
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        self.uploads_dir.mkdir(parents=True, exist_ok=True)

    def job_dir(self, job_id: str) -> Path:
        return self.jobs_dir / check_id(job_id)

    def file(self, job_id: str, name: str) -> Path:
        # Stored names are ours ("input", "result.webm"), never the client's.
        if "/" in name or name.startswith("."):
            raise ValueError(f"bad stored file name {name!r}")
        return self.job_dir(job_id) / name

    def disk_full(self) -> bool:
        return free_bytes(self.data_dir) < max(1, self.min_free_bytes)

    def new_upload(self) -> Path:
        """Where the next upload goes; 507 while the disk is full."""
        if self.disk_full():
            raise ApiError(507, DISK_FULL_MESSAGE)
        return self.uploads_dir / f"{uuid.uuid4().hex}.part"

    def adopt(self, job_id: str, upload: Path, name: str) -> Path:
        """Move a finished upload into the job's directory."""
        self.job_dir(job_id).mkdir(parents=True, exist_ok=True)
        target = self.file(job_id, name)
        upload.replace(target)
        return target

    def remove_job(self, job_id: str) -> None:
        shutil.rmtree(self.job_dir(job_id), ignore_errors=True)

    def remove_outputs(self, job_id: str, keep: str) -> None:
        """Delete everything in the job's directory but ``keep`` (half-written results)."""
        d = self.job_dir(job_id)
        if d.is_dir():
            for path in d.iterdir():
                if path.name != keep:
                    path.unlink(missing_ok=True)

    def remove_file(self, job_id: str, name: str | None) -> None:
        if name:
            self.file(job_id, name).unlink(missing_ok=True)

    def sweep(self, known_ids: set[str], min_age_s: float) -> int:
        """Delete job directories with no record and abandoned uploads older than ``min_age_s``.

        The age check spares a submission in flight (its directory exists a moment
        before its record); at start-up nothing is in flight and 0 is right.
        """
        cutoff = time.time() - min_age_s
        removed = 0
        for path in [*self.jobs_dir.iterdir(), *self.uploads_dir.iterdir()]:
            if path.name in known_ids or path.stat().st_mtime > cutoff:
                continue
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed += 1
        return removed
