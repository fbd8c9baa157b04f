"""WHIP ingest (RFC 9725): a publisher (OBS, GStreamer, FFmpeg) POSTs its SDP offer and
gets a live session, the same kind the page makes through POST /offer.

The session is made by :meth:`LiveSessions.create`, so admission, matting,
backgrounds, recording, snapshots and timeouts are exactly those of /offer; it is
controlled and inspected under /sessions/{id}. The resource URL is /whip/{id}.
"""
from __future__ import annotations

from aiohttp import web

from server.errors import ApiError
from server.live.backgrounds import parse_client_background
from server.live.routes import LIVE
from server.webrtc_http.config import WebRtcHttpConfig
from server.webrtc_http.signalling import (
    created,
    endpoint_options,
    no_patch,
    resource_options,
    sdp_offer_body,
    with_retry_after,
)

WEBRTC_HTTP = web.AppKey("abrar_webrtc_http", WebRtcHttpConfig)


async def publish(request: web.Request) -> web.Response:
    offer = await sdp_offer_body(request)
    sessions = request.app[LIVE]
    label = request.query.get("background", sessions.config.default_background)
    try:
        background = parse_client_background(label)
    except ValueError as exc:
        raise ApiError(400, f"?background: {exc}", code="bad_background") from None
    try:
        session, answer = await sessions.create(offer, background, label)
    except ApiError as exc:
        raise with_retry_after(exc) from None
    # The resource id is the session id: /sessions/{id} controls and shows it.
    return created(answer, f"/whip/{session.id}", request.app[WEBRTC_HTTP])


async def stop(request: web.Request) -> web.Response:
    """End the session; its recording, if any, is finalised before the answer."""
    sessions = request.app[LIVE]
    session_id = request.match_info["id"]
    sessions.get(session_id)  # 404 if unknown or already ended
    await sessions.close(session_id)
    return web.Response(status=200)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/whip", publish)
    app.router.add_route("OPTIONS", "/whip", endpoint_options)
    app.router.add_delete("/whip/{id}", stop)
    app.router.add_patch("/whip/{id}", no_patch)
    app.router.add_route("OPTIONS", "/whip/{id}", resource_options)
