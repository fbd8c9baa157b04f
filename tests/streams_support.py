"""Shared pieces of the RTSP stream tests: a real RTSP camera process, the app under
test on 127.0.0.1, and a receive-only aiortc viewer."""
from __future__ import annotations

import asyncio
import os
import select
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import numpy as np
from aiohttp.test_utils import TestServer
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from server_process import free_port

REPO = Path(__file__).resolve().parent.parent
RTSP_SERVER = REPO / "tests" / "rtsp_server.py"
SYSTEM_PYTHON = "/usr/bin/python3"  # python3-gi (GStreamer bindings) lives there, not in the venv
CLIP_DIR = "temporal/p3m_00a7a27c_porch_512x288"


def make_rtsp_clip(media: Path, out: Path, loops: int = 30) -> Path:
    """The 60-frame composited clip played forward then backward (smooth motion, 4 s),
    as H.264 baseline (keyframe every second) + AAC 440 Hz tone in mp4, then repeated
    ``loops`` times without re-encoding, so one connection never reaches the end."""
    src = media / CLIP_DIR / "com.mkv"
    once = out.with_name(out.stem + "_once.mp4")
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-i", str(src),
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
         "-filter_complex", "[0:v]split[a][b];[b]reverse[r];[a][r]concat=n=2:v=1:a=0,format=yuv420p[v]",
         "-map", "[v]", "-map", "1:a",
         "-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-profile:v", "baseline",
         "-g", "30", "-crf", "18", "-c:a", "aac", "-b:a", "64k", "-shortest", str(once)],
        check=True, timeout=120)
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-stream_loop", str(loops - 1), "-i", str(once),
                    "-c", "copy", str(out)], check=True, timeout=120)
    return out


class RtspCamera:
    """tests/rtsp_server.py as a child process (GStreamer gst-rtsp-server)."""

    def __init__(self, clip: Path, port: int | None = None):
        self.clip = clip
        self.port = port or free_port()
        self.url = f"rtsp://127.0.0.1:{self.port}/test"
        self.proc: subprocess.Popen | None = None
        self.output: deque[str] = deque(maxlen=20)

    def start(self, timeout: float = 15.0) -> None:
        self.proc = subprocess.Popen([SYSTEM_PYTHON, str(RTSP_SERVER), "--port", str(self.port),
                                      "--file", str(self.clip)],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if ready:
                line = self.proc.stdout.readline()
                if line.startswith("READY"):
                    # GStreamer's warnings go on being written: a full pipe would stall the camera
                    threading.Thread(target=self._drain, args=(self.proc.stdout,), daemon=True).start()
                    return
                if line == "" and self.proc.poll() is not None:
                    break
        self.kill()
        raise RuntimeError(f"RTSP test server did not start on port {self.port}")

    def _drain(self, stdout) -> None:
        for line in stdout:
            self.output.append(line.rstrip())

    def crashed(self) -> str | None:
        """What the camera last said, where it died on its own (not killed by a test)."""
        if self.proc is None or self.proc.poll() is None:
            return None
        return f"exit {self.proc.returncode}: " + " | ".join(self.output)

    def kill(self) -> None:
        """SIGKILL: the camera vanishes without closing anything, like a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None


def require_rtsp_server() -> None:
    """Fail early, with the fix, where the Debian packages of the RTSP test server are missing."""
    check = "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"
    probe = subprocess.run([SYSTEM_PYTHON, "-c", check], capture_output=True, timeout=30, check=False) \
        if os.path.exists(SYSTEM_PYTHON) else None
    if probe is None or probe.returncode != 0:
        raise RuntimeError("the RTSP test server needs Debian's python3-gi and GStreamer: apt-get install "
                           "python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-rtsp gstreamer1.0-plugins-good "
                           "gstreamer1.0-plugins-bad gstreamer1.0-libav")


def clip_camera(tmp_path_factory, media: Path) -> Iterator[RtspCamera]:
    """The body of a per-test ``camera`` fixture: a real RTSP camera playing the dev clip
    (made once per test session), killed at the end. One per test (it starts in 0.1 s):
    gst-rtsp-server 1.22 can abort on an assertion in its TCP backlog when a client stops
    reading, and a camera one test crashed must not fail the next."""
    require_rtsp_server()
    clip = tmp_path_factory.getbasetemp() / "rtsp_clip.mp4"
    if not clip.exists():
        make_rtsp_clip(media, clip)
    cam = RtspCamera(clip)
    cam.start()
    yield cam
    if (crash := cam.crashed()) is not None:
        print(f"the RTSP test camera died during the test ({crash})")
    cam.kill()


class StreamApi:
    """One stream's state through the HTTP API, and predicates on it for ``wait_for``."""

    def __init__(self, http, base, sid):
        self.http, self.base, self.sid = http, base, sid

    async def state(self) -> dict:
        async with self.http.get(f"{self.base}/streams/{self.sid}") as resp:
            assert resp.status == 200
            return await resp.json()

    def until(self, check):
        async def predicate():
            s = predicate.last = await self.state()
            return s if check(s) else None
        predicate.last = None
        return predicate


async def start_app(config, runtime) -> tuple[TestServer, aiohttp.ClientSession, str]:
    from server.app import create_app

    server = TestServer(create_app(config, runtime=runtime), host="127.0.0.1", port=free_port())
    await server.start_server()
    base = f"http://127.0.0.1:{server.port}"
    return server, aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)), base


@dataclass
class Viewer:
    """A receive-only WebRTC viewer of one stream."""

    base: str
    stream_id: str
    audio: bool = True
    frames: list[tuple[float, np.ndarray]] = field(default_factory=list)
    audio_frames: int = 0
    offered_at: float | None = None  # time.monotonic() the offer was posted (the viewer joins)

    def __post_init__(self):
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self._tasks: list[asyncio.Task] = []

    async def connect(self, http: aiohttp.ClientSession) -> None:
        self.pc.addTransceiver("video", direction="recvonly")
        if self.audio:
            self.pc.addTransceiver("audio", direction="recvonly")

        @self.pc.on("track")
        def on_track(track):
            self._tasks.append(asyncio.ensure_future(self._read(track)))

        await self.pc.setLocalDescription(await self.pc.createOffer())
        body = {"sdp": self.pc.localDescription.sdp, "type": "offer"}
        self.offered_at = time.monotonic()
        async with http.post(f"{self.base}/streams/{self.stream_id}/offer", json=body) as resp:
            answer = await resp.json()
            assert resp.status == 200, answer
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))

    async def _read(self, track) -> None:
        try:
            while True:
                frame = await track.recv()
                if track.kind == "video":
                    self.frames.append((time.monotonic(), frame.to_ndarray(format="rgb24")))
                else:
                    self.audio_frames += 1
        except MediaStreamError:
            pass

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self.pc.close()

