"""WebRTC viewers of a matted source (an RTSP stream, a live session): answer an offer with
tracks fed by the source's hubs."""
from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

from server.errors import ApiError
from server.streams.hub import AudioHub, VideoHub, ViewerAudioTrack, ViewerVideoTrack
from server.streams.stream import Stream, StreamState

log = logging.getLogger(__name__)


class Watchable(Protocol):
    """A matted source viewers can subscribe to: an RTSP stream or a live session's outputs."""
    video: VideoHub
    audio: AudioHub
    viewers: set[RTCPeerConnection]

    @property
    def id(self) -> str: ...

    def claim_matting(self) -> None:
        """Before a viewer is added: take what matting for it needs (ApiError 503 when full)."""


async def add_viewer(stream: Stream, offer: RTCSessionDescription, *, max_viewers: int,
                     connect_timeout_s: float) -> RTCSessionDescription:
    """Answer ``offer`` for a viewer of ``stream``; see :func:`connect_viewer`."""
    if stream.state == StreamState.STOPPED:
        raise ApiError(404, f"stream {stream.id} was deleted")
    pc = await connect_viewer(stream, offer, max_viewers=max_viewers, connect_timeout_s=connect_timeout_s)
    return pc.localDescription


async def connect_viewer(source: Watchable, offer: RTCSessionDescription, *, max_viewers: int,
                         connect_timeout_s: float) -> RTCPeerConnection:
    """Answer ``offer`` (which must ask for video; audio is sent too if it asks for it)
    and return the viewer's connection, whose local description is the answer.

    The answer carries every host candidate, as aiortc does not trickle.
    """
    if len(source.viewers) >= max_viewers:
        raise ApiError(503, f"{source.id} has its limit of {max_viewers} viewers", code="too_many_viewers")
    source.claim_matting()  # an idle stream takes its share of live capacity, or 503
    # Host candidates only: the server must not reach out to STUN/TURN servers.
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    source.viewers.add(pc)  # counted before any await, so the limit holds under races
    tracks: list[MediaStreamTrack] = []

    async def drop() -> None:
        source.viewers.discard(pc)
        for track in tracks:
            track.stop()
        await pc.close()

    def give_up_if_unconnected() -> None:
        if pc.connectionState != "connected" and pc in source.viewers:
            log.info("%s: viewer did not connect within %.0f s", source.id, connect_timeout_s)
            asyncio.ensure_future(drop())

    @pc.on("connectionstatechange")
    async def on_state() -> None:
        if pc.connectionState in ("failed", "closed"):
            await drop()

    try:
        await pc.setRemoteDescription(offer)
        kinds = {t.kind for t in pc.getTransceivers()}
        if "video" not in kinds:
            raise ApiError(400, "the offer must receive video (add a recvonly video transceiver)", code="bad_offer")
        tracks.append(ViewerVideoTrack(source.video))
        if "audio" in kinds:
            tracks.append(ViewerAudioTrack(source.audio))
        for track in tracks:
            pc.addTrack(track)
        await pc.setLocalDescription(await pc.createAnswer())
    except ApiError:
        await drop()
        raise
    except Exception as exc:  # noqa: BLE001 - malformed SDP surfaces from deep inside aiortc
        await drop()
        raise ApiError(400, f"cannot use this SDP offer: {exc}", code="bad_offer") from None
    asyncio.get_running_loop().call_later(connect_timeout_s, give_up_if_unconnected)
    log.info("%s: viewer joined (%d watching)", source.id, len(source.viewers))
    return pc
