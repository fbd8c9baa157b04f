"""Readiness: are the models loaded and every worker alive? (``GET /readyz``)

``/healthz`` only says the process answers. ``/readyz`` says whether it can do its work:
503 while a model is still loading (warm start) or could not be loaded (the reason names
the file to put where), and 503 when a feature's worker has died (each feature registers
a check returning its problems).
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass

from matting.weights import WeightsError

# A check returns one line per problem (a dead worker, ...); none when all is well.
Check = Callable[[], list[str]]


@dataclass
class ModelState:
    name: str
    state: str = "waiting"         # waiting | loading | ready | missing | failed | lazy
    detail: str | None = None      # why it is missing or failed: which file to put where

    @property
    def ready(self) -> bool:
        return self.state in ("ready", "lazy")


class Readiness:
    """Model load states (written from loader threads) and feature checks."""

    def __init__(self) -> None:
        self._models: dict[str, ModelState] = {}
        self._checks: list[Check] = []
        self._lock = threading.Lock()

    def add_model(self, name: str, state: str = "waiting") -> None:
        with self._lock:
            self._models[name] = ModelState(name, state)

    def add_check(self, check: Check) -> None:
        self._checks.append(check)

    def load(self, name: str, loader: Callable[[], object]) -> None:
        """Run ``loader`` (in a worker thread), recording how it went under ``name``."""
        self._set(name, "loading")
        try:
            loader()
        except WeightsError as exc:
            self._set(name, "missing", str(exc))
        except Exception as exc:  # noqa: BLE001 - reported by /readyz and logged by the caller
            self._set(name, "failed", f"{type(exc).__name__}: {exc}")
            raise
        else:
            self._set(name, "ready")

    def _set(self, name: str, state: str, detail: str | None = None) -> None:
        with self._lock:
            self._models[name] = ModelState(name, state, detail)

    def report(self) -> tuple[bool, dict]:
        with self._lock:
            models = [ModelState(**asdict(m)) for m in self._models.values()]
        problems = [f"{m.name} {m.state}" + (f": {m.detail}" if m.detail else "") for m in models if not m.ready]
        for check in self._checks:
            problems.extend(check())
        ready = not problems
        return ready, {"status": "ready" if ready else "not_ready",
                       "models": {m.name: {k: v for k, v in asdict(m).items() if k != "name" and v is not None}
                                  for m in models},
                       "problems": problems}
