"""Still cut-outs (RMBG, and RVM on a photo) in a process of their own, so that a cut-out
never holds up a live frame.

Threads are not enough for that: a cut-out thread shares the GIL with the thread matting
live frames, and when the machine is busy a low-priority thread holding the GIL is
descheduled for hundreds of milliseconds while the live thread waits for it (live
sessions froze for up to a second). In a child process the cut-out has its own GIL and
its own torch thread count, and its lower priority covers every thread it runs, so the
kernel gives the live threads the cores first. Images go over a pipe (a few MB, a few ms).

The child loads its models on first use (:meth:`CutoutProcess.load` does it ahead of time). If
it dies (out of memory, killed), the call in flight raises :class:`CutoutProcessDied` and
the next call starts a new child.
"""
from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any

import numpy as np

from matting.config import RuntimeConfig

if TYPE_CHECKING:  # matting.still imports torch, which the parent may not need yet
    from matting.still import StillMatte

log = logging.getLogger(__name__)

class CutoutProcessDied(RuntimeError):
    """The child stopped mid-call (out of memory, killed); the next call starts a new one."""


class CutoutProcess:
    """The parent's handle on one child process making still cut-outs. Thread-safe; calls block."""

    def __init__(self, config: RuntimeConfig, threads: int):
        # torch and ONNX Runtime in the child use ``threads`` threads, all below normal priority
        self._config = dataclasses.replace(config, threads=threads)
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        self.restarts = 0

    def _executor(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                # spawn, not fork: the parent runs threads (and maybe CUDA) that a fork would copy mid-flight
                self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                                 initializer=_child_init, initargs=(self._config, os.getpid()))
            return self._pool

    def _call(self, fn, *args: Any) -> Any:
        pool = self._executor()
        try:
            return pool.submit(fn, *args).result()
        except BrokenProcessPool:
            with self._lock:
                if self._pool is pool:
                    self._pool = None
                    self.restarts += 1
            log.error("the cut-out process died; the next cut-out starts a new one")
            raise CutoutProcessDied("the cut-out process stopped (out of memory?); "
                                    "it restarts on the next request") from None

    def load(self) -> None:
        """Start the child and load RMBG and RVM there (WeightsError if weights are missing)."""
        self._call(_child_load)

    def still_matte(self, rgb: np.ndarray, model: str = "auto") -> StillMatte:
        """:meth:`matting.runtime.MattingRuntime.still_matte`, computed in the child."""
        return self._call(_child_still_matte, rgb, model)

    def shutdown(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


# -- in the child ----------------------------------------------------------------------

# The child's runtime; process-wide state of the child process, which exists to hold it.
_CHILD: dict[str, Any] = {}


def _child_init(config: RuntimeConfig, parent_pid: int) -> None:
    from matting.heavy_child import start_heavy_child
    from matting.runtime import MattingRuntime

    start_heavy_child(parent_pid)
    _CHILD["runtime"] = MattingRuntime(config)


def _child_load() -> None:
    _CHILD["runtime"].image_model()
    _CHILD["runtime"].still_video_model()


def _child_still_matte(rgb: np.ndarray, model: str) -> StillMatte:
    return _CHILD["runtime"].still_matte(rgb, model)
