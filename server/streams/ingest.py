"""Reads one RTSP camera with PyAV on its own thread and reconnects with backoff.

Blocking demux/decode stays off the event loop; every frame and every change of
connection state is handed to :class:`IngestEvents` callbacks (called on the reader
thread; the receiver hops to its loop). The reader never gives up: cameras reboot,
so it keeps retrying until it is stopped: often while an outage is young (most are
blips or reboots, and a viewer should get the picture back within a probe of the
camera's return), then backing off with jitter up to a cap.
"""
from __future__ import annotations

import errno
import logging
import random
import socket
import threading
import time
from dataclasses import dataclass
from typing import Protocol

import av

from server.streams.config import StreamsConfig
from server.streams.redirects import RedirectRefused, check_redirects
from server.streams.urls import parse_allow_list, redact, redact_text

log = logging.getLogger(__name__)

# Everything FFmpeg may open on behalf of a camera URL (sub-connections inherit it),
# so file:, concat:, http:, subfile: and friends can never be read through one.
PROTOCOL_WHITELIST = "rtsp,rtp,udp,tcp,tls"
# How long FFmpeg may read to learn the streams' parameters, in microseconds. RTSP
# cameras describe their codecs in the SDP, so a short probe finds everything; the
# default (5 s, ended in practice after ~1 s) delayed every (re)connection by a second.
PROBE_US = 250_000
# Each retry delay is shortened by up to this share, so streams that lost the same
# recorder or network do not all knock at the same instant.
JITTER = 0.25


@dataclass(frozen=True)
class SourceInfo:
    video_codec: str
    width: int
    height: int
    audio_codec: str | None
    audio_rate: int | None


class IngestEvents(Protocol):
    def on_connected(self, info: SourceInfo) -> None: ...
    def on_video(self, frame: av.VideoFrame) -> None: ...
    def on_audio(self, frame: av.AudioFrame) -> None: ...
    def on_disconnected(self, error: str, attempt: int, retry_in: float) -> None: ...


def backoff_delay(outage_s: float, minimum: float, maximum: float, fast_s: float) -> float:
    """Delay before the next try, ``outage_s`` seconds into an outage (without jitter).

    For the first ``fast_s`` seconds, probe every ``minimum`` seconds; after that the
    delay grows with the outage (half of the time past ``fast_s``, so each wait is
    about 1.5x the one before), capped at ``maximum``.
    """
    if outage_s < fast_s:
        return minimum
    return min(maximum, max(minimum, (outage_s - fast_s) / 2))


def jittered(delay: float, rng: random.Random) -> float:
    return delay * (1.0 - JITTER * rng.random())


def open_options(config: StreamsConfig) -> dict[str, str]:
    return {
        "rtsp_transport": config.transport,
        "protocol_whitelist": PROTOCOL_WHITELIST,
        # socket I/O timeout inside the RTSP demuxer, in microseconds
        "timeout": str(int(config.read_timeout_s * 1e6)),
        "analyzeduration": str(PROBE_US),
    }


def open_source(url: str, config: StreamsConfig) -> av.container.InputContainer:
    """Open a camera. ``format="rtsp"`` skips probing, so no other demuxer ever sees the URL."""
    allowed = parse_allow_list(config.allowed_hosts)
    if allowed:
        check_redirects(url, allowed, config.open_timeout_s)
    return av.open(url, format="rtsp", options=open_options(config),
                   timeout=(config.open_timeout_s, config.read_timeout_s))


# Socket failures, all told as one: which of them happened would map the camera
# network's ports for whoever may add streams.
_UNREACHABLE = {errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ETIMEDOUT,
                errno.ECONNRESET, errno.ECONNABORTED, errno.EPIPE, errno.EADDRNOTAVAIL}


def describe_error(exc: BaseException, url: str) -> str:
    """A coarse reason, safe to show: never the socket error itself."""
    if isinstance(exc, RedirectRefused):
        return str(exc)
    if isinstance(exc, av.ExitError):  # PyAV's interrupt callback fired: our timeout
        return "timed out waiting for the camera"
    if isinstance(exc, av.HTTPUnauthorizedError):
        return "the camera refused the credentials (401)"
    if isinstance(exc, av.HTTPNotFoundError):
        return "the camera has no stream at this path (404)"
    if isinstance(exc, av.HTTPForbiddenError):
        return "the camera refused access (403)"
    if isinstance(exc, socket.gaierror) or (isinstance(exc, OSError) and exc.errno in _UNREACHABLE):
        return "unreachable: no RTSP camera answered"
    if isinstance(exc, av.InvalidDataError):
        return "not an RTSP server"
    return redact_text(str(exc) or type(exc).__name__, url)


class Ingest:
    """One reader thread per camera URL."""

    def __init__(self, url: str, config: StreamsConfig, events: IngestEvents, *, name: str):
        self.url = url
        self.config = config
        self.events = events
        self.decode_errors = 0
        self._stop = threading.Event()
        self._rng = random.Random()
        self._thread = threading.Thread(target=self._run, name=f"ingest-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to end; it notices within one read timeout at worst."""
        self._stop.set()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        attempt = 0
        outage_since = time.monotonic()
        while not self._stop.is_set():
            got_frames, error = self._session()
            if self._stop.is_set():
                break
            if got_frames:
                attempt, outage_since = 0, time.monotonic()
            attempt += 1
            cfg = self.config
            delay = jittered(backoff_delay(time.monotonic() - outage_since, cfg.reconnect_min_s,
                                           cfg.reconnect_max_s, cfg.reconnect_fast_s), self._rng)
            log.info("stream %s: %s; reconnect %d in %.1f s", redact(self.url), error, attempt, delay)
            self.events.on_disconnected(error, attempt, delay)
            self._stop.wait(delay)

    def _session(self) -> tuple[bool, str]:
        """Connect and pump frames until the connection ends. Returns (any frames?, why it ended)."""
        try:
            container = open_source(self.url, self.config)
        except Exception as exc:  # noqa: BLE001 - any failure to open means "retry later"
            return False, describe_error(exc, self.url)
        got_frames = False
        try:
            video = container.streams.video[0] if container.streams.video else None
            if video is None:
                return False, "the camera offers no video stream"
            audio = container.streams.audio[0] if container.streams.audio else None
            self.events.on_connected(SourceInfo(
                video_codec=video.codec_context.name, width=video.codec_context.width,
                height=video.codec_context.height,
                audio_codec=audio.codec_context.name if audio is not None else None,
                audio_rate=audio.codec_context.sample_rate if audio is not None else None))
            streams = [s for s in (video, audio) if s is not None]
            for packet in container.demux(*streams):
                if self._stop.is_set():
                    return got_frames, "stopped"
                if packet.stream.type == "audio":
                    if audio is not None:
                        audio = self._audio(packet)
                    continue
                for frame in self._decode(packet):
                    got_frames = True
                    self.events.on_video(frame)
            return got_frames, "the camera ended the stream"
        except Exception as exc:  # noqa: BLE001 - dropped connection, timeout, bad data
            return got_frames, describe_error(exc, self.url)
        finally:
            container.close()

    def _audio(self, packet: av.Packet) -> av.audio.stream.AudioStream | None:
        """Decode and hand on one audio packet; returns None (stop decoding audio) when the
        camera's audio cannot be decoded at all, which must not cost the video."""
        try:
            for frame in packet.decode():
                if isinstance(frame, av.AudioFrame):
                    self.events.on_audio(frame)
        except av.InvalidDataError:
            self.decode_errors += 1
        except av.FFmpegError as exc:
            log.warning("stream %s: audio dropped: %s", redact(self.url), describe_error(exc, self.url))
            return None
        return packet.stream

    def _decode(self, packet: av.Packet) -> list:
        try:
            return packet.decode()
        except av.InvalidDataError:
            # a corrupt packet (typically right after a reconnect, before the next
            # keyframe) costs one frame, not the connection
            self.decode_errors += 1
            return []
