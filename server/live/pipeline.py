"""Per-stream processing shared by live WebRTC sessions and RTSP cameras.

A :class:`LivePipeline` is one matted stream: its own RVM session (recurrent
state), its background, an optional recorder, the latest full-resolution frame
for snapshots, and its stats. It knows nothing about where frames come from:
a producer calls :meth:`LivePipeline.process` with one ``av.VideoFrame`` at a
time (newest first; see :class:`server.live.latest.LatestFrame` for dropping
stale ones) and gets the composited frame back.
"""
from __future__ import annotations

import asyncio
import re
import time
from collections import deque
from concurrent.futures import Executor
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import av
import numpy as np

from matting.compositing import Background, composite, over_checkerboard, to_rgba
from matting.images import encode_png
from matting.runtime import MattingRuntime
from matting.session import VideoMattingSession
from server.capacity import Capacity, FrameCost
from server.live.pictures import Picture
from server.live.recorder import Recorder


class NoFrameError(LookupError):
    """Nothing has been processed yet, so there is nothing to snapshot."""


@dataclass(frozen=True)
class PipelineStats:
    frames: int                    # frames matted and returned
    dropped: int                   # stale frames skipped by the producer
    fps: float                     # output frame rate over the last few seconds
    latency_p50_ms: float | None   # frame received -> composited frame ready
    latency_p95_ms: float | None
    width: int | None
    height: int | None
    downsample_ratio: float | None  # RVM's internal scale for the last frame (adaptive: moves with load)
    recording: str | None          # file name while recording

    def to_json(self) -> dict:
        return asdict(self)


_SAFE_NAME = re.compile(r"[^A-Za-z0-9_-]+")
_FPS_WINDOW_S = 3.0


class LivePipeline:
    """Matte, composite, record and remember frames of one stream.

    ``process`` must be awaited one frame at a time (recurrent state follows the
    frame order); the other methods may be called at any time from the event loop.
    Frames run in ``executor`` (the live lane), snapshots in ``heavy_executor`` (the
    heavy lane, so a cut-out never delays a frame). With a ``capacity`` (server.capacity),
    every frame is charged to it, and an adaptive session's budget shrinks to the stream's
    share of the lane while other streams share it, so that admitted streams keep the
    target rate by running smaller rather than by dropping frames.
    """

    def __init__(self, runtime: MattingRuntime, executor: Executor, background: Background, *,
                 recordings_dir: Path, name: str, downsample_ratio: float | None = None,
                 matte_budget_ms: float | None = None, recording_fps: float = 30.0,
                 heavy_executor: Executor | None = None, capacity: Capacity | None = None):
        self.name = _SAFE_NAME.sub("-", name).strip("-") or "stream"
        self._runtime = runtime
        self._executor = executor
        self._heavy_executor = heavy_executor or executor
        self._capacity = capacity
        self._overhead_ms = 0.0       # running lane time per frame outside the network
        self._background = background
        self._recordings_dir = recordings_dir
        self._downsample_ratio = downsample_ratio
        self._matte_budget_ms = matte_budget_ms or None  # without a fixed ratio: adapt it to this
        self._recording_fps = recording_fps
        self._session: VideoMattingSession | None = None  # made on the first frame, in the lane
        self._size: tuple[int, int] | None = None
        self._reset_pending = False
        self._latest_rgb: np.ndarray | None = None
        self._recording_path: Path | None = None
        self._recorder: Recorder | None = None
        self._has_audio = False       # recordings get an audio track once the source has (or will have) audio
        self._frames = 0
        self._dropped = 0
        self._done_at: deque[float] = deque(maxlen=300)
        self._latencies: deque[float] = deque(maxlen=300)
        self._lock = asyncio.Lock()
        self._closed = False

    # -- frames -----------------------------------------------------------------

    async def process(self, frame: av.VideoFrame, *, received_at: float | None = None) -> av.VideoFrame:
        """Matte one frame (in the executor) and return the composite, same pts/time_base.

        ``received_at`` (``time.monotonic()``) is when the producer got the frame, so
        the latency stats include any wait before processing.
        """
        started = time.monotonic() if received_at is None else received_at
        async with self._lock:
            if self._closed:
                raise RuntimeError(f"pipeline {self.name} is closed")
            self._start_pending_recorder(frame.width, frame.height)
            picture = await asyncio.get_running_loop().run_in_executor(
                self._executor, self._matte, frame, self._background, self._recorder, started)
        out = picture.frame()
        out.pts = frame.pts
        out.time_base = frame.time_base
        done = time.monotonic()
        self._frames += 1
        self._done_at.append(done)
        self._latencies.append(done - started)
        return out

    def _matte(self, frame: av.VideoFrame, background: Background, recorder: Recorder | None,
               received_at: float) -> Picture:
        if self._capacity is None:
            return self._matte_timed(frame, background, recorder, received_at)[0]
        entered = self._capacity.enter_lane()
        try:
            out, cost = self._matte_timed(frame, background, recorder, received_at)
        finally:
            charged = self._capacity.leave_lane(entered)
        if cost is not None:
            self._capacity.observe(replace(cost, total_ms=cost.total_ms * charged,
                                           network_ms=cost.network_ms * charged))
        return out

    def _matte_timed(self, frame: av.VideoFrame, background: Background, recorder: Recorder | None,
                     received_at: float) -> tuple[Picture, FrameCost | None]:
        """The composite, ready for the encoders, and the frame's wall time in the lane
        (None for a session's first frames, which also pay for ONNX Runtime planning their
        shapes)."""
        lane_started = time.perf_counter()
        rgb = frame.to_ndarray(format="rgb24")
        session = self._session
        if session is None:
            session = self._session = self._runtime.new_session(self._downsample_ratio,
                                                                 budget_ms=self._matte_budget_ms, batched=True)
        elif self._reset_pending:
            session.reset()  # (the session itself resets on a new resolution)
        self._reset_pending = False
        self._size = (frame.width, frame.height)
        if session.adaptive is not None and self._matte_budget_ms:
            session.adaptive.set_budget(self._network_budget_ms())
        network_started = time.perf_counter()
        matte = session.process(rgb)
        network_ms = (time.perf_counter() - network_started) * 1e3
        self._latest_rgb = rgb
        if recorder is not None:
            # The recording keeps the real alpha and foreground, not the composite.
            recorder.write_video(to_rgba(matte.foreground, matte.alpha), received_at)
        out = composite(rgb, matte, background)
        picture = Picture.from_rgb(over_checkerboard(out) if out.shape[2] == 4 else out)
        total_ms = (time.perf_counter() - lane_started) * 1e3
        self._overhead_ms = 0.8 * self._overhead_ms + 0.2 * max(total_ms - network_ms, 0.0)
        if session.frames_processed <= 2 or not session.last_ratio:
            return picture, None
        return picture, FrameCost(total_ms=total_ms, network_ms=network_ms,
                              height=frame.height, width=frame.width, ratio=session.last_ratio)

    def _network_budget_ms(self) -> float:
        """The configured budget, or this stream's share of the lane less the work around
        the network when that is smaller."""
        budget = self._matte_budget_ms or 0.0
        if self._capacity is not None:
            budget = min(budget, self._capacity.lane_share_ms() - self._overhead_ms)
        return max(budget, 1.0)

    def remember(self, rgb: np.ndarray) -> None:
        """A frame that was seen but not matted (a stream nobody watches) is what a
        snapshot shows."""
        self._latest_rgb = rgb

    def note_dropped(self, count: int = 1) -> None:
        """The producer skipped ``count`` stale frames."""
        self._dropped += count

    def expect_audio(self) -> None:
        """The source carries audio: give recordings an audio track even if video comes first."""
        self._has_audio = True

    def push_audio(self, frame: av.AudioFrame) -> None:
        """Audio for the recording, if one is running."""
        self._has_audio = True
        if self._recorder is not None:
            self._recorder.write_audio(frame, time.monotonic())

    def set_background(self, background: Background) -> None:
        self._background = background

    def reset(self) -> None:
        """Forget the recurrent state before the next frame (e.g. after a gap)."""
        self._reset_pending = True

    # -- snapshots ----------------------------------------------------------------

    async def snapshot(self) -> bytes:
        """Cut-out (model ``auto``: RVM for a person, else RMBG) of the latest
        full-resolution frame, as an RGBA PNG."""
        rgb = self._latest_rgb
        if rgb is None:
            raise NoFrameError("no frame has been processed yet")
        return await asyncio.get_running_loop().run_in_executor(self._heavy_executor, self._cutout_png, rgb)

    def _cutout_png(self, rgb: np.ndarray) -> bytes:
        # auto, in its own process: live frames never wait for it
        alpha = self._runtime.cutout_process().still_matte(rgb, "auto").alpha
        a8 = np.clip(np.rint(alpha * 255.0), 0, 255).astype(np.uint8)
        return encode_png(np.dstack([rgb, a8]))

    # -- recording ----------------------------------------------------------------

    @property
    def recording(self) -> Path | None:
        """The file being recorded (published under this name once finalised)."""
        return self._recording_path

    def start_recording(self) -> Path:
        """Record from the next frame on; returns the file's final path. Idempotent."""
        if self._closed:
            raise RuntimeError(f"pipeline {self.name} is closed")
        if self._recording_path is None:
            self._recording_path = self._new_recording_path()
        return self._recording_path

    def rotate_recording(self) -> asyncio.Task[Path | None]:
        """Go on recording into a new file from the next frame. The finished file is
        finalised by the returned task, so no frame waits for its encoder to flush."""
        if self._recording_path is None:
            raise RuntimeError(f"pipeline {self.name} is not recording")
        recorder, path = self._recorder, self._recording_path
        self._recorder = None
        self._recording_path = self._new_recording_path(taken=path)
        return asyncio.ensure_future(self._finalise(recorder, path))

    def _new_recording_path(self, taken: Path | None = None) -> Path:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = self._recordings_dir / f"{self.name}-{stamp}.webm"
        n = 2
        while path.exists() or path == taken:  # (``taken`` is still being written under another name)
            path = self._recordings_dir / f"{self.name}-{stamp}-{n}.webm"
            n += 1
        return path

    def _start_pending_recorder(self, width: int, height: int) -> None:
        if self._recording_path is not None and self._recorder is None:
            self._recorder = Recorder(self._recording_path, width, height, fps=self._recording_fps,
                                      audio=self._has_audio)

    async def stop_recording(self) -> Path | None:
        """Finalise the recording; returns the playable file, or None if none was written."""
        recorder, path = self._recorder, self._recording_path
        self._recorder = None
        self._recording_path = None
        return await self._finalise(recorder, path)

    @staticmethod
    async def _finalise(recorder: Recorder | None, path: Path | None) -> Path | None:
        if recorder is None:
            return None if path is None or not path.exists() else path
        return await recorder.close()

    # -- stats and lifetime -------------------------------------------------------

    @property
    def stats(self) -> PipelineStats:
        now = time.monotonic()
        recent = [t for t in self._done_at if now - t <= _FPS_WINDOW_S]
        fps = 0.0
        if len(recent) >= 2:
            fps = (len(recent) - 1) / max(recent[-1] - recent[0], 1e-6)
        lat = np.asarray(self._latencies, dtype=np.float64) * 1000.0
        width, height = self._size or (None, None)
        return PipelineStats(
            frames=self._frames, dropped=self._dropped, fps=round(fps, 2),
            latency_p50_ms=round(float(np.percentile(lat, 50)), 1) if lat.size else None,
            latency_p95_ms=round(float(np.percentile(lat, 95)), 1) if lat.size else None,
            width=width, height=height,
            downsample_ratio=self._session.last_ratio if self._session is not None else None,
            recording=self._recording_path.name if self._recording_path else None,
        )

    @property
    def closed(self) -> bool:
        return self._closed

    async def close(self) -> Path | None:
        """Stop taking frames and finalise any recording (returned). Idempotent."""
        self._closed = True
        return await self.stop_recording()
