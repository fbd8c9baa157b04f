"""Fan one stream's matted video and audio out to any number of WebRTC viewers.

Inference runs once per stream; each viewer gets its own track that always serves
the newest matted frame (a slow viewer skips frames instead of delaying others)
and its own timestamps, as aiortc's encoders require.
"""
from __future__ import annotations

import asyncio
import time
from collections import deque
from fractions import Fraction

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from server.live.pictures import Picture

VIDEO_CLOCK = 90_000
AUDIO_RATE = 48_000
AUDIO_FRAME = 960  # 20 ms, what aiortc's Opus encoder packs


class VideoHub:
    """Holds the newest matted picture and wakes viewers when it changes."""

    def __init__(self) -> None:
        self.version = 0
        self._picture: Picture | None = None
        self._changed = asyncio.Event()
        self._closed = False

    def publish(self, picture: Picture) -> None:
        self._picture = picture
        self.version += 1
        self._wake()

    def close(self) -> None:
        self._closed = True
        self._wake()

    def _wake(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def newer_than(self, version: int) -> tuple[int, Picture]:
        while self.version <= version or self._picture is None:
            if self._closed:
                raise MediaStreamError("stream closed")
            await self._changed.wait()
        return self.version, self._picture


class AudioSubscription:
    MAX_QUEUE = 10  # 200 ms: a viewer that falls behind loses audio, not sync

    def __init__(self) -> None:
        self.frames: deque[av.AudioFrame] = deque(maxlen=self.MAX_QUEUE)
        self.ready = asyncio.Event()
        self.active = True


class AudioHub:
    """Resamples the camera's audio once to 48 kHz s16 20 ms frames and queues them per viewer."""

    def __init__(self) -> None:
        self._subscriptions: set[AudioSubscription] = set()
        self._resampler: av.AudioResampler | None = None

    def publish(self, frame: av.AudioFrame) -> None:
        if not self._subscriptions:
            return
        if self._resampler is None:
            self._resampler = av.AudioResampler(format="s16", layout="stereo", rate=AUDIO_RATE,
                                                frame_size=AUDIO_FRAME)
        for out in self._resampler.resample(frame):
            for sub in self._subscriptions:
                sub.frames.append(out)
                sub.ready.set()

    def reset(self) -> None:
        """A new connection may bring a different sample rate or layout."""
        self._resampler = None

    def subscribe(self) -> AudioSubscription:
        sub = AudioSubscription()
        self._subscriptions.add(sub)
        return sub

    def unsubscribe(self, sub: AudioSubscription) -> None:
        self._subscriptions.discard(sub)
        sub.active = False
        sub.ready.set()

    def close(self) -> None:
        for sub in list(self._subscriptions):
            self.unsubscribe(sub)

    @staticmethod
    async def next(sub: AudioSubscription) -> av.AudioFrame:
        while not sub.frames:
            if not sub.active:
                raise MediaStreamError("stream closed")
            sub.ready.clear()
            await sub.ready.wait()
        return sub.frames.popleft()


class ViewerVideoTrack(MediaStreamTrack):
    kind = "video"

    def __init__(self, hub: VideoHub):
        super().__init__()
        self._hub = hub
        self._seen = 0
        self._t0: float | None = None
        self._last_pts = -1

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        self._seen, picture = await self._hub.newer_than(self._seen)
        frame = picture.frame()  # a copy: pts are per viewer
        now = time.monotonic()
        if self._t0 is None:
            self._t0 = now
        self._last_pts = max(self._last_pts + 1, int((now - self._t0) * VIDEO_CLOCK))
        frame.pts = self._last_pts
        frame.time_base = Fraction(1, VIDEO_CLOCK)
        return frame


class ViewerAudioTrack(MediaStreamTrack):
    kind = "audio"

    def __init__(self, hub: AudioHub):
        super().__init__()
        self._hub = hub
        self._sub = hub.subscribe()
        self._samples = 0

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        source = await self._hub.next(self._sub)
        # a fresh frame per viewer, since pts differ between viewers
        frame = av.AudioFrame.from_ndarray(source.to_ndarray(), format="s16", layout="stereo")
        frame.sample_rate = AUDIO_RATE
        frame.pts = self._samples
        frame.time_base = Fraction(1, AUDIO_RATE)
        self._samples += frame.samples
        return frame

    def stop(self) -> None:
        super().stop()
        self._hub.unsubscribe(self._sub)
