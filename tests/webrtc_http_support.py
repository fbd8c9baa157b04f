"""WHIP publishers and WHEP viewers built on aiortc, for the WHIP/WHEP tests."""
from __future__ import annotations

import asyncio

import aiohttp
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from live_support import Clip, expected
from streams_support import Viewer
from webrtc_client import ClipTrack

SDP = "application/sdp"


class Refused(Exception):
    def __init__(self, status: int, headers, body: str):
        super().__init__(f"{status}: {body}")
        self.status, self.headers, self.body = status, headers, body


async def post_offer(http: aiohttp.ClientSession, url: str, sdp: str, headers: dict | None = None
                     ) -> tuple[str, aiohttp.typedefs.LooseHeaders]:
    """POST ``sdp`` as application/sdp; the answer and the response headers, or Refused."""
    async with http.post(url, data=sdp.encode(), headers={"Content-Type": SDP, **(headers or {})}) as resp:
        body = await resp.text()
        if resp.status != 201:
            raise Refused(resp.status, resp.headers, body)
        assert resp.content_type == SDP
        return body, resp.headers


class WhipPublisher:
    """Publishes a clip, send-only, as OBS would; the resource URL is kept for DELETE."""

    def __init__(self, base: str, frames):
        self.base = base
        self.track = ClipTrack(frames)
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.headers = None
        self.resource: str | None = None

    async def publish(self, http: aiohttp.ClientSession, path: str = "/whip", headers: dict | None = None) -> str:
        self.pc.addTransceiver(self.track, direction="sendonly")
        await self.pc.setLocalDescription(await self.pc.createOffer())
        answer, self.headers = await post_offer(http, self.base + path, self.pc.localDescription.sdp, headers)
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        self.resource = self.headers["Location"]
        return self.resource.rsplit("/", 1)[1]  # the live session's id

    async def close(self) -> None:
        await self.pc.close()


class WhepViewer(Viewer):
    """The stream tests' receive-only viewer, signalling over WHEP instead of JSON."""

    resource: str | None = None

    async def connect(self, http: aiohttp.ClientSession, headers: dict | None = None) -> None:
        self.pc.addTransceiver("video", direction="recvonly")
        if self.audio:
            self.pc.addTransceiver("audio", direction="recvonly")
        self.pc.on("track", self._on_track)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        answer, response_headers = await post_offer(http, f"{self.base}/whep/{self.stream_id}",
                                                    self.pc.localDescription.sdp, headers)
        self.resource = response_headers["Location"]
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))

    def _on_track(self, track) -> None:
        self._tasks.append(asyncio.ensure_future(self._read(track)))


def nearest_index(clip: Clip, rgb: np.ndarray, colour: tuple[int, int, int]) -> int:
    """The clip frame whose ideal composite over ``colour`` ``rgb`` is closest to: a WHEP
    viewer's timestamps are its own, so the frame index is lost on the way."""
    import cv2

    def small(img: np.ndarray) -> np.ndarray:
        return cv2.resize(np.asarray(img, np.float32), (128, 72), interpolation=cv2.INTER_AREA)

    got = small(rgb)
    return int(np.argmin([np.abs(small(expected(clip, i, colour)) - got).mean() for i in range(len(clip.frames))]))
