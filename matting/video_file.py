"""Matte a whole video file: decode, RVM, composite and encode in a three-stage pipeline.

Decoding (plus audio pass-through), inference+compositing, and encoding each run
in their own thread, joined by small bounded queues, so the slowest stage sets
the pace and memory stays flat. Output goes to a hidden temporary file that is
renamed into place only on success.
"""
from __future__ import annotations

import contextlib
import math
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

from matting.compositing import Background, composite
from matting.video_io import AUDIO_COPY, VideoWriter, container_for, parse_bitrate

MAX_PIXELS = 3840 * 2160
MAX_DURATION = 3 * 3600.0
QUEUE_SIZE = 4
_STILL_IMAGE_FORMATS = ("image2", "png_pipe", "jpeg_pipe", "webp_pipe", "bmp_pipe")
_DONE = object()


class VideoInputError(ValueError):
    """The input cannot be used as a video; the message says why, for the user."""


class VideoCancelled(Exception):
    """``matte_video_file`` stopped because its ``cancel`` event was set."""


@dataclass
class VideoInfo:
    width: int          # as displayed (rotation metadata applied)
    height: int
    fps: float
    frames: int         # from the container, else estimated from duration x fps
    duration: float     # seconds; 0 when the container does not say
    has_audio: bool
    codec: str


@dataclass(frozen=True)
class VideoLimits:
    """Bounds checked on every decoded frame and packet, not only on what the container
    declares: a stream may change size mid-way or squeeze thousands of frames into
    a declared split second."""

    max_pixels: int = MAX_PIXELS        # per frame, as decoded
    max_seconds: float = MAX_DURATION   # the last video or audio timestamp
    max_frames: int = int(MAX_DURATION * 60)


@dataclass(frozen=True)
class VideoOptions:
    background: Background
    crf: int | None = None
    bitrate: str | None = None        # e.g. "2M"; overrides crf
    keep_audio: bool = True
    downsample_ratio: float | None = None  # for whoever makes the session (runtime.new_session)
    container: str | None = None      # webm | mp4 | mov; None: from the output suffix


@dataclass
class VideoProgress:
    frames_done: int
    frames_total: int
    fps: float
    eta_s: float | None


@dataclass
class VideoResult:
    frames: int
    seconds: float
    fps: float
    output: Path
    has_alpha: bool
    has_audio: bool
    # busy seconds per stage: decode, matte, composite, encode (they overlap in time)
    stage_seconds: dict[str, float] = field(default_factory=dict)


def probe_video(path: Path | str, *, max_pixels: int = MAX_PIXELS,
                max_duration: float = MAX_DURATION) -> VideoInfo:
    """Open ``path``, decode its first frame and describe it; VideoInputError if unusable."""
    path = Path(path)
    if not path.is_file():
        raise VideoInputError(f"no such file: {path}")
    if path.stat().st_size == 0:
        raise VideoInputError("empty file (0 bytes)")
    try:
        with av.open(str(path)) as src:
            if src.format.name in _STILL_IMAGE_FORMATS or src.format.name == "tty":
                raise VideoInputError("this is a still image or text, not a video")
            if not src.streams.video:
                raise VideoInputError("no video stream (audio-only file?)" if src.streams.audio
                                      else "no video stream in this file")
            stream = src.streams.video[0]
            try:
                first = next(src.decode(stream), None)
            except av.FFmpegError as exc:
                raise VideoInputError(f"the video is damaged: its first frame cannot be decoded "
                                      f"({exc.strerror or exc})") from None
            if first is None:
                raise VideoInputError("the video stream has no frames that can be decoded")
            fps = float(stream.average_rate or stream.guessed_rate or 0) or 30.0
            if stream.duration and stream.time_base:
                duration = float(stream.duration * stream.time_base)
            else:
                duration = (src.duration or 0) / av.time_base
            frames = stream.frames or max(1, round(duration * fps))
            w, h = (first.height, first.width) if _quarter_turns(first) % 2 else (first.width, first.height)
            info = VideoInfo(w, h, fps, frames, duration, bool(src.streams.audio), stream.codec_context.name)
    except av.FFmpegError as exc:
        raise VideoInputError(f"not a video file FFmpeg can read ({exc.strerror or exc})") from None
    if w * h > max_pixels:
        raise VideoInputError(f"video is {w}x{h}, over the limit of {max_pixels} pixels per frame")
    if duration > max_duration:
        raise VideoInputError(f"video lasts {duration:.0f} s, over the limit of {max_duration:.0f} s")
    return info


def check_output(dst: Path | str, options: VideoOptions) -> str:
    """The output container for ``dst``; ValueError (before any work) if it cannot be written."""
    container = container_for(dst, options.container)
    if not Path(dst).parent.is_dir():
        raise ValueError(f"output folder {Path(dst).parent} does not exist")
    if options.background.transparent and container == "mp4":
        raise ValueError("MP4 (H.264) cannot hold transparency: write .webm (VP9 with alpha) "
                         "or .mov (ProRes 4444), or choose a background colour")
    if options.bitrate:
        parse_bitrate(options.bitrate)
    return container


def matte_video_file(src: Path | str, dst: Path | str, session, options: VideoOptions, *,
                     progress: Callable[[VideoProgress], None] | None = None,
                     cancel: threading.Event | None = None, limits: VideoLimits = VideoLimits()) -> VideoResult:
    """Matte every frame of ``src`` with ``session`` (``process(rgb) -> MatteResult``) into ``dst``.

    Transparent backgrounds give VP9-alpha WebM (or ProRes 4444 .mov); others an
    opaque video. The source audio is copied when the container takes its codec,
    else re-encoded. Raises VideoCancelled when ``cancel`` is set (the partial
    output is removed), VideoInputError for undecodable input or input past ``limits``.
    Frames that change size within the limits are scaled to the first frame's size.
    """
    info = probe_video(src, max_pixels=limits.max_pixels, max_duration=limits.max_seconds)
    container = check_output(dst, options)
    dst = Path(dst)
    tmp = dst.with_name(f".{dst.name}.{uuid.uuid4().hex[:8]}.partial")
    stages = {"decode": 0.0, "matte": 0.0, "composite": 0.0, "encode": 0.0}
    with av.open(str(src)) as inp:
        video = inp.streams.video[0]
        video.thread_type = "AUTO"
        audio = inp.streams.audio[0] if options.keep_audio and inp.streams.audio else None
        copy = (audio is not None and audio.codec_context.name in AUDIO_COPY[container]
                and any(n in inp.format.name for n in ("mp4", "mov", "matroska", "webm")))
        pipe = _Pipeline()
        workers: list[threading.Thread] = []
        done = 0
        start = time.perf_counter()
        writer = None
        try:
            writer = VideoWriter(tmp, info.width, info.height, alpha=options.background.transparent,
                                 container=container, fps=info.fps, audio=audio is not None,
                                 crf=options.crf, bitrate=options.bitrate, realtime=False,
                                 copy_audio_from=audio if copy else None)
            workers = [
                threading.Thread(target=pipe.run, name="matte-decode", daemon=True,
                                 args=(_decode(inp, video, audio, copy, writer, stages, limits), pipe.decoded)),
                threading.Thread(target=pipe.run, name="matte-infer", daemon=True,
                                 args=(_infer(pipe, session, options.background, stages), pipe.matted)),
            ]
            for w in workers:
                w.start()
            while (item := pipe.get(pipe.matted, cancel)) is not _DONE:
                out, t = item
                t0 = time.perf_counter()
                writer.write_video(out, t)
                stages["encode"] += time.perf_counter() - t0
                done += 1
                if progress is not None:
                    progress(_progress(done, info.frames, time.perf_counter() - start))
            pipe.raise_error()
            if done == 0:
                raise VideoInputError("no video frame could be decoded")
            t0 = time.perf_counter()
            writer.close()
            stages["encode"] += time.perf_counter() - t0
            os.replace(tmp, dst)
        finally:
            pipe.stop.set()
            for w in workers:
                w.join()
            if writer is not None:
                with contextlib.suppress(Exception):  # already failing: the first error is the one to report
                    writer.close()
            tmp.unlink(missing_ok=True)
    seconds = time.perf_counter() - start
    return VideoResult(frames=done, seconds=seconds, fps=done / seconds, output=dst,
                       has_alpha=options.background.transparent, has_audio=writer.has_audio,
                       stage_seconds=stages)


def _progress(done: int, total: int, elapsed: float) -> VideoProgress:
    total = max(total, done)
    fps = done / elapsed if elapsed > 0 else 0.0
    return VideoProgress(done, total, fps, (total - done) / fps if fps > 0 else None)


class _Pipeline:
    """Bounded hand-offs between stages; any stage's error or a cancel stops them all."""

    def __init__(self):
        self.decoded: queue.Queue = queue.Queue(QUEUE_SIZE)
        self.matted: queue.Queue = queue.Queue(QUEUE_SIZE)
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self, stage: Iterator, out: queue.Queue) -> None:
        """Thread body: move the stage's items to ``out``, then the end marker."""
        try:
            for item in stage:
                if not self.put(out, item):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            self.error = self.error or exc
            self.stop.set()
        finally:
            self.put(out, _DONE)

    def put(self, q: queue.Queue, item) -> bool:
        while not self.stop.is_set():
            try:
                q.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def get(self, q: queue.Queue, cancel: threading.Event | None = None):
        """Next item, or _DONE once stopped; raises a stage's error or VideoCancelled."""
        while True:
            if cancel is not None and cancel.is_set():
                raise VideoCancelled("cancelled")
            self.raise_error()
            if self.stop.is_set():
                return _DONE
            try:
                return q.get(timeout=0.05)
            except queue.Empty:
                continue

    def raise_error(self) -> None:
        if self.error is not None:
            raise self.error


def _decode(inp, video, audio, copy: bool, writer: VideoWriter, stages: dict, limits: VideoLimits) -> Iterator:
    """Yield (rgb, t) per video frame; audio goes straight to the writer on the way."""
    streams = [video] if audio is None else [video, audio]
    t = 0.0
    frames = 0
    size: tuple[int, int] | None = None  # the first frame's, as decoded (before rotation)
    try:
        for packet in inp.demux(*streams):
            if packet.pts is not None and packet.time_base is not None:
                _check_time(float(packet.pts * packet.time_base), "audio" if packet.stream is audio else "video",
                            limits)
            if packet.stream is audio:
                if copy:
                    writer.write_audio_packet(packet)
                else:
                    for frame in packet.decode():
                        writer.write_audio(frame, frame.time)
                continue
            t0 = time.perf_counter()
            for frame in packet.decode():
                frames += 1
                _check_frame(frame, frames, limits)
                size = size or (frame.width, frame.height)
                # a size change within the limits: scaled back, so the work per frame stays bounded
                rgb = frame.to_ndarray(format="rgb24", width=size[0], height=size[1])
                turns = _quarter_turns(frame)
                if turns:
                    rgb = np.ascontiguousarray(np.rot90(rgb, turns))
                stages["decode"] += time.perf_counter() - t0
                t = frame.time
                yield rgb, t
                t0 = time.perf_counter()
            stages["decode"] += time.perf_counter() - t0
    except av.FFmpegError as exc:
        raise VideoInputError(f"the input is damaged near {t or 0:.2f} s ({exc.strerror or exc})") from exc


def _check_time(t: float, kind: str, limits: VideoLimits) -> None:
    if t > limits.max_seconds:
        raise VideoInputError(f"the {kind} goes on past {limits.max_seconds:g} s, over the limit")


def _check_frame(frame: av.VideoFrame, count: int, limits: VideoLimits) -> None:
    """Before the frame is converted: a size or a count over the limits stops the job."""
    if frame.width * frame.height > limits.max_pixels:
        raise VideoInputError(f"frame {count} is {frame.width}x{frame.height}, over the limit of "
                              f"{limits.max_pixels} pixels per frame (the video changes size mid-stream)")
    if count > limits.max_frames:
        raise VideoInputError(f"the video has more than {limits.max_frames} frames, over the limit "
                              "(its timestamps may be squeezed)")


def _infer(pipe: _Pipeline, session, background: Background, stages: dict) -> Iterator:
    """Yield (composited frame, t). Compositing here hands the encoder 4 bytes a pixel
    instead of the frame plus a float matte (about 20 bytes a pixel)."""
    while (item := pipe.get(pipe.decoded)) is not _DONE:
        rgb, t = item
        t0 = time.perf_counter()
        matte = session.process(rgb)
        t1 = time.perf_counter()
        out = composite(rgb, matte, background)
        stages["matte"] += t1 - t0
        stages["composite"] += time.perf_counter() - t1
        yield out, t


def _quarter_turns(frame: av.VideoFrame) -> int:
    """Counter-clockwise quarter turns that display the frame upright (its rotation metadata)."""
    rotation = frame.rotation
    return round(rotation / 90) % 4 if rotation and math.isfinite(rotation) else 0
