"""aiortc tracks a session sends back: the matted video and the passed-through audio."""
from __future__ import annotations

import asyncio
import logging
import time

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from server.live.fanout import Fanout
from server.live.latest import LatestFrame
from server.live.pictures import Picture
from server.live.pipeline import LivePipeline

log = logging.getLogger(__name__)


class MattedVideoTrack(MediaStreamTrack):
    """Mattes the newest incoming frame whenever the pipeline is free and hands the newest
    result to the sender.

    Frames that arrive while one is being matted replace each other, so latency stays
    bounded under overload. Matting runs on its own task rather than inside ``recv``:
    the next frame is matted while aiortc encodes and sends the previous one, instead
    of after it.

    Matted frames also go to ``fanout`` while it has viewers (WHEP). The matting task
    runs whether or not a sender pulls this track, so a publish-only peer (WHIP) is
    matted for its recording, snapshots and viewers too.
    """

    kind = "video"

    def __init__(self, source: MediaStreamTrack, pipeline: LivePipeline, fanout: Fanout | None = None):
        super().__init__()
        self._source = source
        self._pipeline = pipeline
        self._fanout = fanout
        self._incoming: LatestFrame[av.VideoFrame] = LatestFrame()
        self._matted: LatestFrame[av.VideoFrame] = LatestFrame()
        self.last_frame_at: float | None = None  # time.monotonic() of the last incoming frame
        self._reader = asyncio.ensure_future(self._read())
        self._matter = asyncio.ensure_future(self._matte())
        # False for a publish-only peer (WHIP): nothing pulls the matted frames, none is "dropped"
        self.sent = True

    async def _read(self) -> None:
        try:
            while True:
                frame = await self._source.recv()
                if not isinstance(frame, av.VideoFrame):  # aiortc types recv() as any frame or packet
                    raise TypeError(f"the video source gave a {type(frame).__name__}, not a video frame")
                self.last_frame_at = time.monotonic()
                if self._incoming.put(frame):
                    self._pipeline.note_dropped()
        except MediaStreamError as exc:
            self._incoming.end(exc)
        except Exception as exc:  # noqa: BLE001 - end the track, keep the server up
            log.exception("video source of %s failed", self._pipeline.name)
            self._incoming.end(MediaStreamError(str(exc)))

    async def _matte(self) -> None:
        try:
            while True:
                frame, received_at = await self._incoming.get()
                out = await self._pipeline.process(frame, received_at=received_at)
                if self._fanout is not None and self._fanout.watched:
                    self._fanout.video.publish(Picture.of(out))
                if self._matted.put(out) and self.sent:
                    self._pipeline.note_dropped()  # matted, but the sender was still busy: a newer one goes
        except MediaStreamError as exc:
            self._matted.end(exc)
        except RuntimeError as exc:  # the pipeline was closed under us
            self._matted.end(MediaStreamError(str(exc)))
        except Exception as exc:  # noqa: BLE001 - end the track, keep the server up
            log.exception("matting of %s failed", self._pipeline.name)
            self._matted.end(MediaStreamError(str(exc)))

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        frame, _ = await self._matted.get()
        return frame

    def stop(self) -> None:
        super().stop()
        self._reader.cancel()
        self._matter.cancel()


class AudioPassthroughTrack(MediaStreamTrack):
    """Sends the client's audio back unchanged and feeds it to the recording.

    A pump reads the source even when nobody pulls this track (a client that sends
    audio but does not receive it), so the recording still gets sound.
    """

    kind = "audio"
    # ~200 ms of 20 ms frames; older ones are dropped rather than adding delay.
    MAX_QUEUE = 10

    def __init__(self, source: MediaStreamTrack, pipeline: LivePipeline, fanout: Fanout | None = None):
        super().__init__()
        self._source = source
        self._pipeline = pipeline
        self._fanout = fanout
        self._queue: asyncio.Queue[av.AudioFrame | None] = asyncio.Queue(self.MAX_QUEUE)
        self._pump = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        try:
            while True:
                frame = await self._source.recv()
                if not isinstance(frame, av.AudioFrame):  # aiortc types recv() as any frame or packet
                    raise TypeError(f"the audio source gave a {type(frame).__name__}, not an audio frame")
                self._pipeline.push_audio(frame)
                if self._fanout is not None:
                    self._fanout.audio.publish(frame)
                if self._queue.full():
                    self._queue.get_nowait()
                self._queue.put_nowait(frame)
        except MediaStreamError:
            pass
        except Exception:  # noqa: BLE001
            log.exception("audio source of %s failed", self._pipeline.name)
        if self._queue.full():
            self._queue.get_nowait()
        self._queue.put_nowait(None)

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        frame = await self._queue.get()
        if frame is None:
            raise MediaStreamError
        return frame

    def stop(self) -> None:
        super().stop()
        self._pump.cancel()
