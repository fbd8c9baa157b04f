"""Telling a full disk apart from other failures, so it can be reported as such (507)."""
from __future__ import annotations

import errno
import shutil
import sqlite3
from pathlib import Path

DISK_FULL_MESSAGE = "the server's disk is full; retry once space has been freed"


def is_disk_full(exc: BaseException) -> bool:
    """True for ENOSPC/EDQUOT from a write, and SQLite's "database or disk is full"."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return isinstance(exc, sqlite3.OperationalError) and "full" in str(exc)


def free_bytes(path: Path) -> int:
    """Free space on the filesystem holding ``path`` (0 if it cannot be read)."""
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return 0
