"""One VP9-alpha WebM being written, fed from any thread, finalised exactly once.

Every writer call runs in order on the recorder's own thread, so encoding never
blocks the event loop or the shared inference pool, and audio and video writes
never interleave inside the muxer.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import av
import numpy as np

from matting.video_io import AlphaWebmWriter

log = logging.getLogger(__name__)

PARTIAL_SUFFIX = ".part"


class Recorder:
    """Writes to ``<path>.part`` and renames to ``path`` once finalised, so a
    half-written file is never listed or served."""

    # Frames queued for the encoder beyond this are dropped: a slow encoder must
    # not grow memory or delay finalisation without bound.
    MAX_BACKLOG = 30

    def __init__(self, path: Path, width: int, height: int, *, fps: float = 30.0, audio: bool = True):
        self.path = path
        self.width = width
        self.height = height
        self._dropped = 0
        self._partial = path.with_name(path.name + PARTIAL_SUFFIX)
        self._thread = ThreadPoolExecutor(1, thread_name_prefix=f"rec-{path.stem}")
        self._lock = threading.Lock()
        self._closed = False
        self._backlog = 0
        self._writer: AlphaWebmWriter | None = None
        self._final: Future[Path] | None = None
        self.started_at = time.monotonic()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._submit(self._open, fps, audio)

    def _open(self, fps: float, audio: bool) -> None:
        try:
            self._writer = AlphaWebmWriter(self._partial, self.width, self.height,
                                           fps=fps, audio=audio, realtime=True)
        except Exception:  # noqa: BLE001 - reported again, to the caller, by close()
            log.exception("recording %s could not be opened", self.path.name)

    def _submit(self, fn, *args) -> Future | None:
        with self._lock:
            if self._closed:
                return None
            return self._thread.submit(fn, *args)

    def elapsed(self, at: float) -> float:
        """Seconds from the start of the recording to ``at`` (``time.monotonic()``)."""
        return max(0.0, at - self.started_at)

    def write_video(self, rgba: np.ndarray, at: float) -> None:
        """Queue one RGBA frame received at ``at`` (``time.monotonic()``)."""
        t = self.elapsed(at)
        with self._lock:
            if self._closed:
                return
            if self._backlog >= self.MAX_BACKLOG:
                self._dropped += 1
                return
            self._backlog += 1
            self._thread.submit(self._write_video, rgba, t)

    def _write_video(self, rgba: np.ndarray, t: float) -> None:
        try:
            if self._writer is None:  # failed to open: logged once, reported by close()
                return
            self._writer.write_video(rgba, t)  # (the writer resizes if the stream changed size)
        except Exception:  # noqa: BLE001 - one bad frame must not end the recording
            log.exception("recording %s: video frame dropped", self.path.name)
        finally:
            with self._lock:
                self._backlog -= 1

    def write_audio(self, frame: av.AudioFrame, at: float) -> None:
        """Queue audio received at ``at``; timing it like the video keeps the two in sync."""
        self._submit(self._write_audio, frame, self.elapsed(at))

    def _write_audio(self, frame: av.AudioFrame, t: float) -> None:
        if self._writer is None or not self._writer.has_audio:
            return
        try:
            self._writer.write_audio(frame, t)
        except Exception:  # noqa: BLE001
            log.exception("recording %s: audio frame dropped", self.path.name)

    def _finalise(self) -> Path:
        if self._writer is None:
            raise RuntimeError(f"recording {self.path.name} could not be opened; see the log")
        self._writer.close()
        self._partial.replace(self.path)
        if self._dropped:
            log.warning("recording %s: the encoder fell behind; %d frames were left out",
                        self.path.name, self._dropped)
        return self.path

    async def close(self) -> Path:
        """Flush the encoder, write the WebM cues and publish the file. Idempotent."""
        with self._lock:
            self._closed = True
            if self._final is None:  # the first close
                self._final = self._thread.submit(self._finalise)
            final = self._final
        try:
            return await asyncio.wrap_future(final)
        finally:
            self._thread.shutdown(wait=False)
