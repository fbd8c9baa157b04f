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

from concurrent.futures import ThreadPoolExecutor


def heavy_pool(workers: int, name: str) -> ThreadPoolExecutor:
    """A bounded pool of heavy-lane threads (never the live lane's)."""
    return ThreadPoolExecutor(max(1, workers), thread_name_prefix=name)
