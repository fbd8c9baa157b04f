"""Live sessions: one aiortc peer connection each, with limits, idle timeout and cleanup."""
from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.rtcdatachannel import RTCDataChannel

from matting.compositing import Background
from matting.runtime import MattingRuntime
from server.capacity import Capacity
from server.errors import ApiError
from server.live.backgrounds import client_background
from server.live.config import LiveConfig
from server.live.fanout import Fanout
from server.live.jitter import release_frames_early
from server.live.pipeline import LivePipeline
from server.live.tracks import AudioPassthroughTrack, MattedVideoTrack

log = logging.getLogger(__name__)

STATS_INTERVAL_S = 1.0


@dataclass
class LiveSession:
    id: str
    pc: RTCPeerConnection
    pipeline: LivePipeline
    background: str                       # what the client asked for, for listings
    created_at: float = field(default_factory=time.monotonic)
    connected_at: float | None = None
    video: MattedVideoTrack | None = None
    audio: AudioPassthroughTrack | None = None
    channel: RTCDataChannel | None = None
    closed: bool = False
    outputs: Fanout = field(init=False)   # matted video and audio for WHEP viewers

    def __post_init__(self) -> None:
        self.outputs = Fanout(self.id)

    def describe(self) -> dict:
        return {
            "id": self.id,
            "state": self.pc.connectionState,
            "background": self.background,
            "age_s": round(time.monotonic() - self.created_at, 1),
            "audio": self.audio is not None,
            "viewers": len(self.outputs.viewers),
            "stats": self.pipeline.stats.to_json(),
        }

    def set_background(self, background: Background, label: str) -> None:
        self.pipeline.set_background(background)
        self.background = label

    def send(self, message: dict) -> None:
        if self.channel is not None and self.channel.readyState == "open":
            self.channel.send(json.dumps(message))


def _sends_video(pc: RTCPeerConnection) -> bool:
    """Whether the negotiated answer sends matted video back (a WHIP publisher receives nothing)."""
    return any(t.kind == "video" and t.currentDirection in ("sendrecv", "sendonly") for t in pc.getTransceivers())


class LiveSessions:
    """Every live session of one server; the only place sessions are made or closed."""

    def __init__(self, config: LiveConfig, runtime: MattingRuntime, executor: Executor, recordings_dir: Path, *,
                 capacity: Capacity, heavy_executor: Executor | None = None):
        self.config = config
        self.capacity = capacity
        self._runtime = runtime
        self._executor = executor
        self._heavy_executor = heavy_executor
        self._recordings_dir = recordings_dir
        self._sessions: dict[str, LiveSession] = {}
        self._watchdog: asyncio.Task | None = None
        self.closed_total = 0
        self.rejected_total = 0

    def all(self) -> list[LiveSession]:
        return list(self._sessions.values())

    def get(self, session_id: str) -> LiveSession:
        session = self._sessions.get(session_id)
        if session is None:
            raise ApiError(404, f"no live session {session_id!r} (closed, timed out or never created)")
        return session

    async def create(self, offer: RTCSessionDescription, background: Background, label: str
                     ) -> tuple[LiveSession, RTCSessionDescription]:
        """Answer ``offer``; the answer carries every host candidate (no trickle). Admitted
        by capacity (503 when full); the share is held until the session closes, which
        for an offer that never connects is ``connect_timeout_s`` later."""
        session_id = uuid.uuid4().hex
        try:
            self.capacity.admit(_capacity_key(session_id))  # before any await: the limit holds under races
        except ApiError:
            self.rejected_total += 1
            raise
        # Host candidates only: loopback and LAN clients need no STUN, and the server
        # must not reach out to the internet.
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pipeline = LivePipeline(self._runtime, self._executor, background,
                                recordings_dir=self._recordings_dir, name=f"live-{session_id[:8]}",
                                downsample_ratio=self.config.downsample_ratio,
                                matte_budget_ms=self.config.matte_budget_ms,
                                heavy_executor=self._heavy_executor, capacity=self.capacity)
        session = LiveSession(session_id, pc, pipeline, label)
        self._sessions[session_id] = session
        self._wire(session)
        try:
            await pc.setRemoteDescription(offer)
            if session.video is None:
                raise ApiError(400, "the offer has no video track to matte")
            await pc.setLocalDescription(await pc.createAnswer())
            session.video.sent = _sends_video(pc)
        except ApiError:
            await self.close(session_id)
            raise
        except Exception as exc:  # noqa: BLE001 - malformed SDP surfaces from deep inside aiortc
            await self.close(session_id)
            raise ApiError(400, f"cannot use this SDP offer: {exc}", code="bad_offer") from None
        self._ensure_watchdog()
        log.info("live session %s started (%d open)", session_id, len(self._sessions))
        return session, pc.localDescription

    def _wire(self, session: LiveSession) -> None:
        pc = session.pc

        @pc.on("track")
        def on_track(track):
            if track.kind == "video" and session.video is None:
                release_frames_early(pc, track)
                session.video = MattedVideoTrack(track, session.pipeline, session.outputs)
                pc.addTrack(session.video)
            elif track.kind == "audio" and session.audio is None:
                session.pipeline.expect_audio()
                session.audio = AudioPassthroughTrack(track, session.pipeline, session.outputs)
                pc.addTrack(session.audio)

        @pc.on("datachannel")
        def on_datachannel(channel: RTCDataChannel):
            session.channel = channel
            channel.on("message", lambda message: self._on_message(session, message))

        @pc.on("connectionstatechange")
        async def on_state():
            if pc.connectionState == "connected" and session.connected_at is None:
                session.connected_at = time.monotonic()
            elif pc.connectionState in ("failed", "closed"):
                await self.close(session.id)

    def _on_message(self, session: LiveSession, message) -> None:
        """Data channel control: ``{"type": "background", "background": SPEC}``."""
        try:
            data = json.loads(message)
            if not isinstance(data, dict):
                raise ValueError("expected a JSON object")
            if data.get("type") == "background":
                background, spec = client_background(data.get("background"))
                session.set_background(background, spec)
                session.send({"type": "background", "background": spec})
            elif data.get("type") == "ping":
                session.send({"type": "pong", "t": data.get("t")})
            else:
                raise ValueError(f"unknown message type {data.get('type')!r}")
        except (ValueError, TypeError) as exc:
            session.send({"type": "error", "message": str(exc)})

    async def close(self, session_id: str) -> Path | None:
        """Close one session and free everything it holds; returns a finalised recording."""
        session = self._sessions.pop(session_id, None)
        self.capacity.release(_capacity_key(session_id))
        if session is None or session.closed:
            return None
        session.closed = True
        self.closed_total += 1
        for track in (session.video, session.audio):
            if track is not None:
                track.stop()
        await session.outputs.close()
        try:
            # Finalise the recording before touching the transport, so a failing
            # close cannot leave an unplayable file.
            return await session.pipeline.close()
        except Exception:  # noqa: BLE001 - the session must still be torn down
            log.exception("live session %s: recording could not be finalised", session_id)
            return None
        finally:
            await session.pc.close()
            log.info("live session %s closed (%d open)", session_id, len(self._sessions))

    async def close_all(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        await asyncio.gather(*(self.close(sid) for sid in list(self._sessions)), return_exceptions=True)

    # -- housekeeping -------------------------------------------------------------

    def _ensure_watchdog(self) -> None:
        if self._watchdog is None or self._watchdog.done():
            self._watchdog = asyncio.ensure_future(self._watch())

    def _expired(self, session: LiveSession, now: float) -> str | None:
        if session.connected_at is None:
            if now - session.created_at > self.config.connect_timeout_s:
                return "never connected"
            return None
        last = session.video.last_frame_at if session.video else None
        if now - (last or session.connected_at) > self.config.idle_timeout_s:
            return "no video"
        return None

    async def _watch(self) -> None:
        """Close idle sessions (a client that vanished without a goodbye) and push stats."""
        tick = min(STATS_INTERVAL_S, self.config.idle_timeout_s / 4)
        while self._sessions:
            await asyncio.sleep(tick)
            now = time.monotonic()
            for session in self.all():
                try:
                    reason = self._expired(session, now)
                    if reason is not None:
                        log.info("live session %s: %s for too long, closing", session.id, reason)
                        await self.close(session.id)
                    else:
                        session.send({"type": "stats", **session.pipeline.stats.to_json()})
                except Exception:  # noqa: BLE001 - one bad session must not stop the housekeeping
                    log.exception("live session %s: housekeeping failed", session.id)


def _capacity_key(session_id: str) -> str:
    return f"session:{session_id}"
