"""WebRTC viewers of a stream: answer an offer with tracks fed by the stream's hubs."""
from __future__ import annotations

import asyncio
import logging

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from server.errors import ApiError
from server.streams.hub import ViewerAudioTrack, ViewerVideoTrack
from server.streams.stream import Stream, StreamState

log = logging.getLogger(__name__)


async def add_viewer(stream: Stream, offer: RTCSessionDescription, *, max_viewers: int,
                     connect_timeout_s: float) -> RTCSessionDescription:
    """Answer ``offer`` (which must ask for video; audio is sent too if it asks for it).

    The answer carries every host candidate, as aiortc does not trickle.
    """
    if stream.state == StreamState.STOPPED:
        raise ApiError(404, f"stream {stream.id} was deleted")
    if len(stream.viewers) >= max_viewers:
        raise ApiError(503, f"stream {stream.id} has its limit of {max_viewers} viewers", code="too_many_viewers")
    # Host candidates only: the server must not reach out to STUN/TURN servers.
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    stream.viewers.add(pc)  # counted before any await, so the limit holds under races
    tracks = []

    async def drop() -> None:
        stream.viewers.discard(pc)
        for track in tracks:
            track.stop()
        await pc.close()

    def give_up_if_unconnected() -> None:
        if pc.connectionState != "connected" and pc in stream.viewers:
            log.info("stream %s: viewer did not connect within %.0f s", stream.id, connect_timeout_s)
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
        tracks.append(ViewerVideoTrack(stream.video))
        if "audio" in kinds:
            tracks.append(ViewerAudioTrack(stream.audio))
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
    log.info("stream %s: viewer joined (%d watching)", stream.id, len(stream.viewers))
    return pc.localDescription
