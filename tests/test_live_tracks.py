"""The session's video track mattes the next frame while the sender encodes the previous one.

The matting pipeline and the camera are stand-ins here (what is under test is the
track's scheduling): matting and "encoding" each take 30 ms of event-loop time.
"""
from __future__ import annotations

import asyncio
import fractions

import av
import pytest
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from server.live.tracks import MattedVideoTrack

pytestmark = pytest.mark.timeout(30)


class Camera(MediaStreamTrack):
    """A frame every 10 ms, pts 0, 1, 2, ..., then the end."""

    kind = "video"

    def __init__(self, frames: int):
        super().__init__()
        self._left = frames
        self._pts = 0

    async def recv(self) -> av.VideoFrame:
        if self._left == 0:
            raise MediaStreamError
        await asyncio.sleep(0.01)
        self._left -= 1
        frame = av.VideoFrame(16, 16, "rgb24")
        frame.pts, frame.time_base = self._pts, fractions.Fraction(1, 100)
        self._pts += 1
        return frame


class SlowPipeline:
    name = "stub"

    def __init__(self, events: list):
        self.events = events
        self.dropped = 0

    async def process(self, frame: av.VideoFrame, *, received_at: float) -> av.VideoFrame:
        self.events.append(("matte", frame.pts))
        await asyncio.sleep(0.03)
        return frame

    def note_dropped(self, count: int = 1) -> None:
        self.dropped += count


async def test_matting_runs_while_the_sender_encodes():
    events: list = []
    pipeline = SlowPipeline(events)
    track = MattedVideoTrack(Camera(40), pipeline)
    sent = []
    try:
        for _ in range(6):
            frame = await track.recv()
            sent.append(frame.pts)
            events.append(("encode start", frame.pts))
            await asyncio.sleep(0.03)  # aiortc's encoder, off the matting path
            events.append(("encode end", frame.pts))
    finally:
        track.stop()
    # a frame was matted between the start and the end of some other frame's encode
    overlapped = [i for i, (what, _) in enumerate(events) if what == "encode start"
                  and any(e[0] == "matte" for e in events[i + 1:events.index(("encode end", events[i][1]), i)])]
    print(f"\nsent {sent}; matted during an encode: {len(overlapped)} of 6; dropped {pipeline.dropped}")
    assert len(overlapped) >= 4, events
    # always the newest: strictly increasing, and the camera's frames in between were skipped
    assert sent == sorted(set(sent)) and sent[-1] - sent[0] > len(sent) and pipeline.dropped > 0, sent
