"""A live session's matted output, shared with WHEP viewers.

The session mattes each frame once; viewers subscribe to these hubs (the same
ones RTSP streams use), so any number of them cost encoding, not inference.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from aiortc import RTCPeerConnection

from server.streams.hub import AudioHub, VideoHub


@dataclass
class Fanout:
    id: str
    video: VideoHub = field(default_factory=VideoHub)
    audio: AudioHub = field(default_factory=AudioHub)
    viewers: set[RTCPeerConnection] = field(default_factory=set)

    @property
    def watched(self) -> bool:
        return bool(self.viewers)

    def claim_matting(self) -> None:
        """Nothing to claim: the session mattes (and holds its share) whether watched or not."""

    async def close(self) -> None:
        for pc in list(self.viewers):
            await pc.close()
        self.viewers.clear()
        self.video.close()
        self.audio.close()
