"""WHEP playback: a player POSTs its SDP offer to /whep/{id} and receives the matted video
of a live session (page or WHIP) or of an RTSP stream.

Viewers subscribe to the source's hubs, so inference runs once per source however
many watch. Each viewer is a resource, /whep/{id}/{viewer}, that DELETE ends.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from aiohttp import web
from aiortc import RTCPeerConnection

from server.errors import ApiError
from server.live.routes import LIVE
from server.streams.routes import STREAMS
from server.streams.stream import StreamState
from server.streams.viewers import Watchable, connect_viewer
from server.webrtc_http.signalling import (
    created,
    endpoint_options,
    no_patch,
    resource_options,
    sdp_offer_body,
    with_retry_after,
)
from server.webrtc_http.whip import WEBRTC_HTTP


@dataclass
class WhepViewers:
    """Every WHEP viewer's connection, by (source id, viewer id), until it closes."""
    connections: dict[tuple[str, str], RTCPeerConnection] = field(default_factory=dict)

    def add(self, source_id: str, pc: RTCPeerConnection) -> str:
        viewer_id = uuid.uuid4().hex
        key = (source_id, viewer_id)
        self.connections[key] = pc

        @pc.on("connectionstatechange")
        def forget() -> None:
            if pc.connectionState in ("failed", "closed"):
                self.connections.pop(key, None)

        return viewer_id

    async def close(self, source_id: str, viewer_id: str) -> None:
        pc = self.connections.pop((source_id, viewer_id), None)
        if pc is None:
            raise ApiError(404, f"no WHEP viewer {viewer_id!r} (it ended, or never existed)")
        await pc.close()


WHEP_VIEWERS = web.AppKey("abrar_whep_viewers", WhepViewers)


def _source(request: web.Request, source_id: str) -> tuple[Watchable, int, float]:
    """The source named ``source_id``, its viewer limit and its viewer connect timeout."""
    sessions = request.app[LIVE]
    session = next((s for s in sessions.all() if s.id == source_id), None)
    if session is not None:
        return session.outputs, request.app[WEBRTC_HTTP].whep_max_viewers, sessions.config.connect_timeout_s
    streams = request.app[STREAMS]
    stream = next((s for s in streams.all() if s.id == source_id), None)
    if stream is not None and stream.state != StreamState.STOPPED:
        return stream, streams.config.max_viewers, streams.config.viewer_connect_timeout_s
    raise ApiError(404, f"no live session or stream {source_id!r} to watch")


async def watch(request: web.Request) -> web.Response:
    source_id = request.match_info["id"]
    source, max_viewers, connect_timeout_s = _source(request, source_id)  # 404 before reading the body
    offer = await sdp_offer_body(request)
    try:
        pc = await connect_viewer(source, offer, max_viewers=max_viewers, connect_timeout_s=connect_timeout_s)
    except ApiError as exc:
        raise with_retry_after(exc) from None
    viewer_id = request.app[WHEP_VIEWERS].add(source_id, pc)
    return created(pc.localDescription, f"/whep/{source_id}/{viewer_id}", request.app[WEBRTC_HTTP])


async def stop(request: web.Request) -> web.Response:
    await request.app[WHEP_VIEWERS].close(request.match_info["id"], request.match_info["viewer"])
    return web.Response(status=200)


def add_routes(app: web.Application) -> None:
    app[WHEP_VIEWERS] = WhepViewers()
    app.router.add_post("/whep/{id}", watch)
    app.router.add_route("OPTIONS", "/whep/{id}", endpoint_options)
    app.router.add_delete("/whep/{id}/{viewer}", stop)
    app.router.add_patch("/whep/{id}/{viewer}", no_patch)
    app.router.add_route("OPTIONS", "/whep/{id}/{viewer}", resource_options)
