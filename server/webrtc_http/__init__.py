"""server.webrtc_http: the standard HTTP signalling of WebRTC media.

- WHIP (RFC 9725) ingest: ``POST /whip`` makes a live session from a publisher's
  offer (OBS, GStreamer, FFmpeg), through the same code and admission as ``POST /offer``.
- WHEP playback: ``POST /whep/{id}`` lets any WHEP player watch the matted video of
  a live session or an RTSP stream, sharing its inference with other viewers.

Decisions: no trickle ICE and no ICE restarts (PATCH gets 405): aiortc puts every
candidate in the answer and cannot restart ICE, and publishers that trickle also
send their candidates in connectivity checks. Bearer auth is the API key.
"""
from __future__ import annotations

from aiohttp import web


def setup(app: web.Application) -> None:
    """Register WHIP and WHEP; needs server.live and server.streams set up first."""
    from server import openapi
    from server.context import context
    from server.webrtc_http import spec, whep, whip

    app[whip.WEBRTC_HTTP] = context(app).config.webrtc
    whip.add_routes(app)
    whep.add_routes(app)
    openapi.register(app, spec.PATHS)
