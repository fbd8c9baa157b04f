"""Matte a video file in a child process (server video jobs).

A job decodes, mattes, composites and encodes in several Python threads; in the server's
own process they would share the GIL with the thread matting live frames, and at a lower
priority they would hold it while descheduled (a live frame then waits for the whole
job's turn). A child has its own GIL, its own torch thread count and a lower priority for
everything it runs, and a crash in a codec takes down the job, not the server.

The child reports progress over a pipe and stops when the parent's cancel event is set.
Starting it costs a torch import and an RVM load (a few seconds), small beside a job.
"""
from __future__ import annotations

import dataclasses
import multiprocessing
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from matting.config import RuntimeConfig
from matting.heavy_child import lower_priority
from matting.video_file import VideoCancelled, VideoLimits, VideoOptions, VideoProgress

_POLL_S = 0.1


class VideoProcessError(RuntimeError):
    """The child failed for a reason that is not the input's fault, or died."""


def matte_video_file_in_process(config: RuntimeConfig, threads: int, src: Path, dst: Path, options: VideoOptions, *,
                                limits: VideoLimits | None = None,
                                progress: Callable[[VideoProgress], None] | None = None,
                                cancel: threading.Event | None = None) -> None:
    """Like :func:`matting.video_file.matte_video_file` with a session from ``config``'s
    runtime, run in a child with ``threads`` threads. Raises ValueError (with the
    user-facing text) for bad input, VideoCancelled when cancelled, OSError (with its errno,
    so a full disk is told apart) for a failed read or write, VideoProcessError else."""
    ctx = multiprocessing.get_context("spawn")  # not fork: the parent's threads would be copied mid-flight
    receive, send = ctx.Pipe(duplex=False)
    stop = ctx.Event()
    config = dataclasses.replace(config, threads=threads)
    child = ctx.Process(target=_child_main,
                        args=(config, str(src), str(dst), options, limits or VideoLimits(), send, stop, os.getpid()),
                        name="video-job", daemon=True)
    child.start()
    if child.pid:  # set once started; 0 would lower this process instead
        lower_priority(child.pid)
    send.close()
    try:
        while True:
            if cancel is not None and cancel.is_set():
                stop.set()
            if not receive.poll(_POLL_S):
                if not child.is_alive() and not receive.poll():
                    raise VideoProcessError(f"the video-job process exited with code {child.exitcode}")
                continue
            try:
                kind, payload = receive.recv()
            except EOFError:
                raise VideoProcessError(f"the video-job process exited with code {child.exitcode}") from None
            if kind == "progress" and progress is not None:
                progress(payload)
            elif kind == "done":
                return
            elif kind == "cancelled":
                raise VideoCancelled("cancelled")
            elif kind == "invalid":
                raise ValueError(payload)
            elif kind == "oserror":
                raise OSError(*payload)
            elif kind == "error":
                raise VideoProcessError(payload)
    finally:
        stop.set()
        child.join(10)
        if child.is_alive():
            child.kill()
            child.join()
        receive.close()


def _child_main(config: RuntimeConfig, src: str, dst: str, options: VideoOptions, limits: VideoLimits,
                send: Any, stop: Any, parent_pid: int) -> None:
    from matting.heavy_child import start_heavy_child

    start_heavy_child(parent_pid)
    try:
        from matting.runtime import MattingRuntime
        from matting.video_file import matte_video_file

        session = MattingRuntime(config).new_session(downsample_ratio=options.downsample_ratio)
        matte_video_file(src, dst, session, options, progress=lambda p: send.send(("progress", p)), cancel=stop,
                         limits=limits)
        send.send(("done", None))
    except VideoCancelled:
        send.send(("cancelled", None))
    except ValueError as exc:  # bad input: VideoInputError and option errors carry user-facing text
        send.send(("invalid", str(exc)))
    except OSError as exc:  # the parent tells a full disk apart by its errno
        send.send(("oserror", (exc.errno, exc.strerror or str(exc))))
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which fails the job
        send.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        send.close()
