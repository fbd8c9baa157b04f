"""Two lanes of work: live frames, and heavy work that must never hold them up.

The live lane is ``AppContext.inference``: the threads matting live WebRTC sessions and
RTSP streams, nothing else. Heavy work runs elsewhere:

- still cut-outs (snapshots, ``POST /remove-bg``) in a child process (matting.cutout_process) and
  video jobs in one child process each (matting.video_process), at a lower priority and
  with ``ABRAR_HEAVY_THREADS`` torch / ONNX Runtime threads (default: all cores but one),
  so that live frames keep a core and never wait for their GIL;
- image decoding and encoding around them, and background images, in heavy-lane threads
  made here. These run at normal priority on purpose: a low-priority thread that holds the
  GIL when the kernel preempts it would stall the live thread until it runs again (on a
  busy machine, up to a second); their work is short and mostly outside the GIL.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import cv2

# Live-lane threads on a CPU: two streams' frames side by side gave two 640x480 sessions
# 1.45x the frames of one thread on two cores (bench/README.md); a lone stream's frames
# run one after another whatever the count.
CPU_LIVE_WORKERS = 2


def live_workers(configured: int, batch_max: int, device_type: str) -> int:
    """Live-lane threads: as configured, else one per batch slot where frames are batched
    (a batch fills only when that many frames are in flight at once) or on a GPU, else
    CPU_LIVE_WORKERS (at most one per core)."""
    if configured:
        return configured
    if device_type == "cuda" or batch_max > 1:
        return batch_max
    return max(1, min(CPU_LIVE_WORKERS, os.cpu_count() or 1))


def serial_opencv() -> None:
    """OpenCV without its own thread pool, process-wide. The live lane's threads already
    run streams side by side, and OpenCV splitting one 640x480 composite over its pool
    spent 3.1-3.2 ms of CPU for 1.8-1.9 ms of wall time, against 2.3-2.4 ms of both on one
    thread (bench/README.md): CPU that the other streams' networks need."""
    cv2.setNumThreads(1)


def heavy_pool(workers: int, name: str) -> ThreadPoolExecutor:
    """A bounded pool of heavy-lane threads (never the live lane's)."""
    return ThreadPoolExecutor(max(1, workers), thread_name_prefix=name)
