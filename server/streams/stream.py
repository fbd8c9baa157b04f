"""One RTSP camera being matted: ingest thread -> newest-frame slot -> LivePipeline -> viewers.

The reader thread reports frames and connection changes; everything else happens
on the event loop. Frames are tagged with the connection (``epoch``) and the
unbroken run of frames (``segment``) they belong to, so the single processing task
can reset the recurrent state and rotate the recording exactly at the first frame
after a gap.

By default (``ABRAR_STREAMS_MATTE=on_demand``) a stream that nobody watches and that
is not recording stays connected and decoded, but its frames skip the network: the
CPU goes to streams and sessions someone is looking at, and matting resumes at the
next camera frame once a viewer's offer arrives. Such a stream holds no share of live
capacity while idle: a viewer's offer or a recording takes one (503 when the server is
full), and the first idle frame gives it back.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path

import av
from aiortc import RTCPeerConnection

from server.capacity import Share
from server.live.latest import LatestFrame
from server.live.pictures import Picture
from server.live.pipeline import LivePipeline
from server.live.recordings import recording_url
from server.streams.config import StreamsConfig
from server.streams.hub import AudioHub, VideoHub
from server.streams.ingest import Ingest, SourceInfo
from server.streams.urls import SourceUrl

log = logging.getLogger(__name__)


class StreamState(str, Enum):
    CONNECTING = "connecting"       # first connection attempt
    LIVE = "live"                   # frames are arriving
    RECONNECTING = "reconnecting"   # the connection failed or dropped; retrying with backoff
    STOPPED = "stopped"             # deleted or server shutting down


@dataclass(frozen=True)
class StreamSpec:
    """What the client asked for; this is what gets persisted."""
    id: str
    source: SourceUrl
    background: str
    record: bool
    created_at: float


@dataclass
class Gap:
    started_at: float           # wall time of the last frame before the gap
    reason: str
    ended_at: float | None = None

    def to_json(self) -> dict:
        end = self.ended_at
        return {"started_at": iso(self.started_at), "ended_at": iso(end) if end else None,
                "seconds": round((end or time.time()) - self.started_at, 3), "reason": self.reason,
                "ongoing": end is None}


class RateMeter:
    WINDOW_S = 3.0

    def __init__(self) -> None:
        self._times: deque[float] = deque(maxlen=600)

    def tick(self, t: float) -> None:
        self._times.append(t)

    def rate(self, now: float) -> float:
        recent = [t for t in self._times if now - t <= self.WINDOW_S]
        return (len(recent) - 1) / max(recent[-1] - recent[0], 1e-6) if len(recent) >= 2 else 0.0


class StreamClosed(Exception):
    pass


def iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds")


class Stream:
    MAX_GAPS = 20  # the newest ones are kept; counters cover all of them

    def __init__(self, spec: StreamSpec, pipeline: LivePipeline, config: StreamsConfig, share: Share | None = None):
        self.spec = spec
        # its share of live capacity, held while it mattes (None: not counted, as in tests of the stream alone)
        self.share = share
        self.pipeline = pipeline
        self.config = config
        self.background = spec.background
        self.record = spec.record
        self.state = StreamState.CONNECTING
        self.video = VideoHub()
        self.audio = AudioHub()
        self.viewers: set[RTCPeerConnection] = set()
        self.source: SourceInfo | None = None
        self.frames_in = 0
        self.process_errors = 0
        self.connected_at: float | None = None
        self.last_frame_at: float | None = None
        self.reconnects = 0              # times the camera came back after a loss
        self.reconnect_attempt = 0       # failed attempts in a row (0 while live)
        self.next_retry_at: float | None = None
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.gaps: deque[Gap] = deque(maxlen=self.MAX_GAPS)
        self.gap_count = 0
        self._gap_seconds_closed = 0.0
        self.recordings: list[Path] = []  # finalised segments, oldest first
        self._open_gap: Gap | None = None      # the camera is away; ends at its next frame
        self._pending_stall: Gap | None = None  # a pause, until the frame after it confirms it
        self._epoch = 0                   # connection number
        self._live_epoch = 0              # connection that delivered the latest frame
        self._segment = 0                 # unbroken run of frames
        self._processed_segment = 0
        self._recording_epoch = 0
        self._recording_since: float | None = None  # time.monotonic() the current segment began
        self._idle_frame: av.VideoFrame | None = None  # newest frame not matted, for snapshots
        self._state_stale = False         # frames were skipped: the recurrent state is out of date
        self.frames_idle = 0              # frames skipped because nobody watched or recorded
        self._last_frame_mono: float | None = None
        self._in_rate = RateMeter()
        self._slot: LatestFrame[tuple[av.VideoFrame, int, int]] = LatestFrame()
        self._recording_lock = asyncio.Lock()
        self._loop = asyncio.get_running_loop()
        self._closing = False
        self.settled = asyncio.Event()  # set once the first connection delivered a frame or failed
        self._ingest = Ingest(spec.source.url, config, self, name=spec.id)
        self._task: asyncio.Task | None = None
        self._background_tasks: set[asyncio.Task] = set()

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def matting(self) -> bool:
        """Whether frames go through the network now (viewers count from their offer on)."""
        return self.config.matte == "always" or self.record or bool(self.viewers)

    def claim_matting(self) -> None:
        """Call before adding what makes an idle stream matte (a viewer, recording): takes
        its share of live capacity, or raises ApiError 503 when the server is full. An
        unwatched stream matted on demand holds no share; it gives it back at its next
        camera frame once nothing needs it."""
        if self.share is not None and not self.matting:
            self.share.take()

    def start(self) -> None:
        self._task = self._loop.create_task(self._process_frames(), name=f"stream-{self.id}")
        self._ingest.start()

    # -- IngestEvents: called on the reader thread ----------------------------------

    def _call(self, fn, *args) -> None:
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # loop closed: the server is gone, nothing to report to
            self._ingest.stop()

    def on_connected(self, info: SourceInfo) -> None:
        self._call(self._connected, info)

    def on_video(self, frame: av.VideoFrame) -> None:
        self._call(self._video, frame, time.monotonic())

    def on_audio(self, frame: av.AudioFrame) -> None:
        self._call(self._audio, frame)

    def on_disconnected(self, error: str, attempt: int, retry_in: float) -> None:
        self._call(self._disconnected, error, attempt, retry_in)

    # -- the same events, on the loop ------------------------------------------------

    def _connected(self, info: SourceInfo) -> None:
        if self._closing:
            return
        self.source = info
        if info.audio_codec is not None:
            self.pipeline.expect_audio()
        self._epoch += 1
        self.connected_at = time.time()
        self.audio.reset()

    def _video(self, frame: av.VideoFrame, received: float) -> None:
        if self._closing:
            return
        now = time.time()
        if self._live_epoch != self._epoch:  # first frame of this connection
            if self._live_epoch:
                self.reconnects += 1
            self._live_epoch = self._epoch
            self._segment += 1
            self._end_gap(now)
            self.state = StreamState.LIVE
            self.settled.set()
            self.reconnect_attempt = 0
            self.next_retry_at = None
        elif self._last_frame_mono is not None and received - self._last_frame_mono > self.config.gap_reset_s:
            # The connection held but the camera paused: reset the recurrent state as
            # after a reconnect. The gap is confirmed by the next frame: a lone frame
            # followed by a timeout is a straggler flushed out of the dead connection,
            # and the whole pause then belongs to the disconnect's gap.
            pause = received - self._last_frame_mono
            if self._pending_stall is not None:  # the connection went on after that one
                self._add_gap(self._pending_stall)
            self._pending_stall = Gap(started_at=now - pause, ended_at=now, reason=f"no frames for {pause:.1f} s")
            self._segment += 1
        elif self._pending_stall is not None:
            self._add_gap(self._pending_stall)
            self._pending_stall = None
        self.frames_in += 1
        self.last_frame_at = now
        self._last_frame_mono = received
        self._in_rate.tick(received)
        if self._slot.put((frame, self._epoch, self._segment)):
            self.pipeline.note_dropped()

    def _audio(self, frame: av.AudioFrame) -> None:
        if self._closing:
            return
        # also before this connection's first video frame: the pipeline gives a
        # recording an audio track only once it has seen some audio
        self.pipeline.push_audio(frame)
        self.audio.publish(frame)

    def _disconnected(self, error: str, attempt: int, retry_in: float) -> None:
        if self._closing:
            return
        now = time.time()
        self.state = StreamState.RECONNECTING
        self.settled.set()
        self.last_error, self.last_error_at = error, now
        self.reconnect_attempt = attempt
        self.next_retry_at = now + retry_in
        if self._live_epoch == self._epoch and self.last_frame_at is not None and self._open_gap is None:
            started = self._pending_stall.started_at if self._pending_stall else self.last_frame_at
            self._pending_stall = None
            self._open_gap = Gap(started_at=started, reason=error)
            self._add_gap(self._open_gap)
        # finalise now so the segment is playable during the outage, not when it ends
        task = self._loop.create_task(self._finish_recording())
        self._background_tasks.add(task)
        task.add_done_callback(self._background_tasks.discard)

    def _add_gap(self, gap: Gap) -> None:
        self.gaps.append(gap)
        self.gap_count += 1
        if gap.ended_at is not None:
            self._gap_seconds_closed += gap.ended_at - gap.started_at

    def _end_gap(self, now: float) -> None:
        if self._open_gap is not None:
            self._open_gap.ended_at = now
            self._gap_seconds_closed += now - self._open_gap.started_at
            self._open_gap = None

    def gap_seconds_total(self, now: float) -> float:
        ongoing = now - self._open_gap.started_at if self._open_gap is not None else 0.0
        return self._gap_seconds_closed + ongoing

    # -- processing -----------------------------------------------------------------

    async def _process_frames(self) -> None:
        while True:
            try:
                (frame, epoch, segment), received_at = await self._slot.get()
            except StreamClosed:
                return
            if not self.matting:
                if self.share is not None:
                    self.share.give_back()
                self._idle_frame = frame
                self._state_stale = True
                self.frames_idle += 1
                continue
            self._idle_frame = None
            if segment != self._processed_segment or self._state_stale:
                if self._processed_segment:
                    self.pipeline.reset()
                self._processed_segment = segment
                self._state_stale = False
            if epoch != self._recording_epoch:
                await self._rotate_recording(epoch)
            elif self._segment_full(received_at):
                await self._next_segment(received_at)
            try:
                out = await self.pipeline.process(frame, received_at=received_at)
            except Exception as exc:  # one bad frame must not end the stream
                if self.pipeline.closed:
                    return
                self.process_errors += 1
                self.last_error, self.last_error_at = f"matting failed: {exc}", time.time()
                log.exception("stream %s: frame failed", self.id)
                continue
            self.video.publish(Picture.of(out))

    async def _rotate_recording(self, epoch: int) -> None:
        """First frame of a new connection: close the old segment, open a new one."""
        async with self._recording_lock:
            await self._finish_recording_locked()
            self._recording_epoch = epoch
            if self.record and not self._closing:
                self._start_recording_locked()

    def _segment_full(self, now: float) -> bool:
        limit = self.config.segment_s
        return limit > 0 and self._recording_since is not None and now - self._recording_since >= limit

    async def _next_segment(self, now: float) -> None:
        """The segment reached its length: record on into a new file from this frame."""
        async with self._recording_lock:
            if self.pipeline.recording is None:
                return
            finished = self.pipeline.rotate_recording()
            self._recording_since = now
            self._background_tasks.add(finished)
            finished.add_done_callback(self._segment_finished)

    def _segment_finished(self, task: asyncio.Task) -> None:
        self._background_tasks.discard(task)
        if task.cancelled():
            return
        if task.exception() is not None:
            log.error("stream %s: a recording segment could not be finalised: %s", self.id, task.exception())
            return
        path = task.result()
        if path is not None and path not in self.recordings:
            self.recordings.append(path)

    def _start_recording_locked(self) -> None:
        self.pipeline.start_recording()
        self._recording_since = time.monotonic()

    async def _finish_recording(self) -> None:
        async with self._recording_lock:
            await self._finish_recording_locked()

    async def _finish_recording_locked(self) -> None:
        self._recording_since = None
        path = await self.pipeline.stop_recording()
        if path is not None and path not in self.recordings:
            self.recordings.append(path)

    async def set_record(self, record: bool) -> None:
        self.record = record
        async with self._recording_lock:
            if not record:
                await self._finish_recording_locked()
            elif self.state == StreamState.LIVE and self.pipeline.recording is None:
                self._recording_epoch = self._live_epoch
                self._start_recording_locked()

    def prepare_snapshot(self) -> None:
        """While nobody watches, the snapshot is of the newest camera frame, matted or not."""
        frame = self._idle_frame
        if frame is not None:
            self.pipeline.remember(frame.to_ndarray(format="rgb24"))

    # -- lifetime -------------------------------------------------------------------

    async def close(self, *, join_timeout: float = 0.0) -> None:
        """Stop ingesting, drop viewers and finalise the recording. Idempotent."""
        if self._closing:
            return
        self._closing = True
        if self.share is not None:
            self.share.give_back()
        self._ingest.stop()
        self._slot.end(StreamClosed())
        self._end_gap(time.time())
        for pc in list(self.viewers):
            await pc.close()
        self.viewers.clear()
        self.video.close()
        self.audio.close()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout=30)
            except asyncio.TimeoutError:
                log.warning("stream %s: processing did not stop in time", self.id)
        async with self._recording_lock:
            path = await self.pipeline.close()
            if path is not None and path not in self.recordings:
                self.recordings.append(path)
        if self._background_tasks:  # segments still being finalised belong to the final list
            await asyncio.gather(*self._background_tasks, return_exceptions=True)
        self.state = StreamState.STOPPED
        if join_timeout > 0:
            await asyncio.to_thread(self._ingest.join, join_timeout)

    # -- reporting ------------------------------------------------------------------

    def problems(self) -> list[str]:
        """For /readyz: the reader thread or the processing task ended while the stream runs."""
        if self._closing or self._task is None:
            return []
        dead = []
        if not self._ingest.alive:
            dead.append("reader thread")
        if self._task.done():
            dead.append("processing task")
        return [f"stream {self.id}: {what} died" for what in dead]

    def fps_in(self) -> float:
        return round(self._in_rate.rate(time.monotonic()), 2)

    def to_json(self) -> dict:
        now = time.time()
        stats = self.pipeline.stats
        return {
            "id": self.id,
            "url": self.spec.source.redacted,
            "state": self.state.value,
            "background": self.background,
            "record": self.record,
            "created_at": iso(self.spec.created_at),
            "connected_at": iso(self.connected_at),
            "last_frame_at": iso(self.last_frame_at),
            "last_frame_age_s": round(now - self.last_frame_at, 3) if self.last_frame_at else None,
            "fps_in": self.fps_in(),
            "fps_out": stats.fps,
            "latency_ms": {"p50": stats.latency_p50_ms, "p95": stats.latency_p95_ms},
            "frames_in": self.frames_in,
            "frames_out": stats.frames,
            "frames_dropped": stats.dropped,
            "frames_idle": self.frames_idle,
            "matting": self.matting,
            "decode_errors": self._ingest.decode_errors,
            "process_errors": self.process_errors,
            "reconnects": self.reconnects,
            "reconnect_attempt": self.reconnect_attempt,
            "next_retry_at": iso(self.next_retry_at) if self.state == StreamState.RECONNECTING else None,
            "last_error": {"message": self.last_error, "at": iso(self.last_error_at)} if self.last_error else None,
            "gap_count": self.gap_count,
            "gap_seconds_total": round(self.gap_seconds_total(now), 3),
            "gaps": [g.to_json() for g in self.gaps],
            "source": None if self.source is None else {
                "video_codec": self.source.video_codec, "width": self.source.width, "height": self.source.height,
                "audio_codec": self.source.audio_codec, "audio_rate": self.source.audio_rate},
            "viewers": len(self.viewers),
            "recording": stats.recording,
            "recordings": [{"name": p.name, "url": recording_url(p.name)} for p in self.recordings],
        }
