"""Settings for server.live (env vars and `abrar serve` flags)."""
from __future__ import annotations

from dataclasses import dataclass

from server.settings import setting


@dataclass(frozen=True)
class LiveConfig:
    pass
