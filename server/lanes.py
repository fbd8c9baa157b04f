"""Two lanes of work: live frames, and heavy work that must never hold them up.

Live WebRTC sessions and RTSP streams run in the live lane (``AppContext.inference``);
RMBG snapshots and image uploads, video jobs, background decoding and model loading run
in heavy-lane pools made here. On a CPU the heavy lane's threads run at a lower
scheduling priority (Linux niceness, per thread), and ONNX Runtime's intra-op threads
inherit it from the thread that creates the session, so a cut-out uses the cores the live
frames leave idle instead of taking turns with them. The heavy lane's ONNX Runtime
sessions also get fewer intra-op threads (``MattingRuntime.heavy_threads``).
"""
from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger(__name__)

# Niceness added to heavy-lane threads: at +10 the kernel gives a competing live thread
# about ten times the CPU share.
HEAVY_NICENESS = 10


def lower_priority(increment: int = HEAVY_NICENESS) -> None:
    """Lower the calling thread's priority (Linux: niceness is per thread). Best effort:
    where it is not supported the heavy lane still has its own threads."""
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + increment))
    except (AttributeError, OSError) as exc:  # not Linux, or a sandbox refusing it
        log.debug("heavy-lane thread keeps its priority: %s", exc)


def heavy_pool(workers: int, name: str) -> ThreadPoolExecutor:
    """A bounded pool for heavy work whose threads run below live frames' priority."""
    return ThreadPoolExecutor(max(1, workers), thread_name_prefix=name, initializer=lower_priority)


def thread_niceness() -> int:
    """The calling thread's niceness (for tests and logs)."""
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
