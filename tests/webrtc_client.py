"""A real aiortc peer for the live-session tests: sends a clip (and a tone), keeps what comes back.

Also runnable as a script, so a test can kill it with SIGKILL (an abrupt drop,
with no RTCP BYE and no DTLS close):

    python tests/webrtc_client.py URL CLIP [--background SPEC] [--record]

prints one JSON line ``{"session_id": ..., "recording": NAME}`` once video flows,
then streams until killed.
"""
from __future__ import annotations

import argparse
import asyncio
import fractions
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import av
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError, VideoStreamTrack

VIDEO_CLOCK = 90_000
FRAME_TICKS = VIDEO_CLOCK // 30


def load_clip(path: Path, size: tuple[int, int] | None = None) -> list[np.ndarray]:
    """All frames of a video file as RGB uint8, optionally resized to ``size`` (w, h)."""
    import cv2

    with av.open(str(path)) as src:
        frames = [f.to_ndarray(format="rgb24") for f in src.decode(video=0)]
    if size is not None:
        frames = [cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames]
    return frames


def yuv_frames(rgb: list[np.ndarray], count: int) -> list[av.VideoFrame]:
    """``count`` frames cycling through ``rgb``, as an encoder takes them: yuv420p, with
    30 fps timestamps (pts k * FRAME_TICKS on the 90 kHz clock)."""
    frames = []
    for k in range(count):
        frame = av.VideoFrame.from_ndarray(rgb[k % len(rgb)], format="rgb24").reformat(format="yuv420p")
        frame.pts, frame.time_base = k * FRAME_TICKS, fractions.Fraction(1, VIDEO_CLOCK)
        frames.append(frame)
    return frames


def y_psnr(decoded: av.VideoFrame, source: av.VideoFrame) -> float:
    """Y-PSNR in dB of a decoded yuv420p frame against the one encoded (the luma plane:
    what the eye and a codec's rate control weigh most)."""
    height = source.height
    error = np.mean((decoded.to_ndarray()[:height].astype(np.float64) - source.to_ndarray()[:height]) ** 2)
    return float(10 * np.log10(255.0 ** 2 / max(error, 1e-9)))


class ClipTrack(VideoStreamTrack):
    """Loops ``frames`` at 30 fps; frame k has pts k * 3000 (90 kHz) and shows frames[k % n].

    ``sent[k]`` is when frame k was handed to the encoder (``time.monotonic()``).
    """

    def __init__(self, frames: list[np.ndarray]):
        super().__init__()
        self.frames = frames
        self.sent: dict[int, float] = {}

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        k = pts // FRAME_TICKS
        frame = av.VideoFrame.from_ndarray(self.frames[k % len(self.frames)], format="rgb24")
        frame.pts, frame.time_base = pts, time_base
        self.sent[k] = time.monotonic()
        return frame


class SilentTrack(ClipTrack):
    """Negotiates video but never sends a frame."""

    def __init__(self):
        super().__init__([np.zeros((2, 2, 3), np.uint8)])

    async def recv(self) -> av.VideoFrame:
        await asyncio.Event().wait()
        raise MediaStreamError


class ToneTrack(AudioStreamTrack):
    """A 440 Hz sine at 48 kHz in 20 ms frames, paced in real time."""

    RATE = 48_000
    SAMPLES = 960

    def __init__(self, freq: float = 440.0):
        super().__init__()
        self.freq = freq
        self._n = 0
        self._start: float | None = None

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            await asyncio.sleep(max(0.0, self._start + self._n / self.RATE - time.monotonic()))
        t = (self._n + np.arange(self.SAMPLES)) / self.RATE
        pcm = (0.3 * 32767 * np.sin(2 * math.pi * self.freq * t)).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(pcm[None, :], format="s16", layout="mono")
        frame.sample_rate = self.RATE
        frame.pts, frame.time_base = self._n, fractions.Fraction(1, self.RATE)
        self._n += self.SAMPLES
        return frame


@dataclass
class Received:
    at: float          # time.monotonic() when the client got the decoded frame
    pts: int           # 90 kHz, counted from the first returned frame (aiortc's receiver does that)
    rgb: np.ndarray | None


@dataclass
class LiveClient:
    """One live session from the client side."""

    base_url: str
    video: ClipTrack
    audio: ToneTrack | None = None
    background: str | None = None
    keep_frames: bool = True
    headers: dict[str, str] = field(default_factory=dict)
    session_id: str | None = None
    received: list[Received] = field(default_factory=list)
    audio_frames: int = 0
    messages: list[dict] = field(default_factory=list)

    def __post_init__(self):
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.channel = None
        self._tasks: list[asyncio.Task] = []
        self._first_frame = asyncio.Event()

    async def connect(self, http: aiohttp.ClientSession) -> str:
        self.pc.addTrack(self.video)
        if self.audio is not None:
            self.pc.addTrack(self.audio)
        self.channel = self.pc.createDataChannel("control")
        self.channel.on("message", lambda m: self.messages.append(json.loads(m)))

        @self.pc.on("track")
        def on_track(track):
            reader = self._read_video if track.kind == "video" else self._read_audio
            self._tasks.append(asyncio.ensure_future(reader(track)))

        # aiortc gathers every candidate inside setLocalDescription: no trickle needed.
        await self.pc.setLocalDescription(await self.pc.createOffer())
        body = {"sdp": self.pc.localDescription.sdp, "type": self.pc.localDescription.type}
        if self.background is not None:
            body["background"] = self.background
        async with http.post(f"{self.base_url}/offer", json=body, headers=self.headers) as resp:
            answer = await resp.json()
            if resp.status != 200:
                raise RuntimeError(f"offer refused: {resp.status} {answer}")
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))
        self.session_id = answer["session_id"]
        return self.session_id

    async def _read_video(self, track) -> None:
        try:
            while True:
                frame = await track.recv()
                self.received.append(Received(time.monotonic(), frame.pts,
                                              frame.to_ndarray(format="rgb24") if self.keep_frames else None))
                self._first_frame.set()
        except MediaStreamError:
            pass

    async def _read_audio(self, track) -> None:
        try:
            while True:
                await track.recv()
                self.audio_frames += 1
        except MediaStreamError:
            pass

    async def wait_first_frame(self, timeout: float = 30.0) -> None:
        await asyncio.wait_for(self._first_frame.wait(), timeout)

    async def wait_channel_open(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.channel.readyState != "open":
            if time.monotonic() > deadline:
                raise TimeoutError("data channel did not open")
            await asyncio.sleep(0.05)

    def send(self, message: dict) -> None:
        self.channel.send(json.dumps(message))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self.pc.close()


def round_trip_ms(client: LiveClient, first_index: int) -> list[tuple[float, float]]:
    """(received at, round-trip ms) per returned frame, given the clip index of the first one.

    aiortc's receiver counts pts from the first frame it got, so returned frame j
    carries (k - first_index) * 3000 where k is the sent frame's number.
    """
    out = []
    for r in client.received:
        k = first_index + round(r.pts / FRAME_TICKS)
        if k in client.video.sent:
            out.append((r.at, (r.at - client.video.sent[k]) * 1000.0))
    return out


async def _main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("clip", type=Path)
    parser.add_argument("--background", default=None)
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args(argv)
    client = LiveClient(args.url, ClipTrack(load_clip(args.clip)), ToneTrack(), args.background, keep_frames=False)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        sid = await client.connect(http)
        await client.wait_first_frame()
        info = {"session_id": sid}
        if args.record:
            async with http.post(f"{args.url}/sessions/{sid}/recording", json={"action": "start"}) as resp:
                info["recording"] = (await resp.json())["name"]
        print(json.dumps(info), flush=True)
        await asyncio.Event().wait()  # stream until killed


if __name__ == "__main__":
    asyncio.run(_main(sys.argv[1:]))
