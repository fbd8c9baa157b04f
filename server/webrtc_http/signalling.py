"""What WHIP (RFC 9725) and WHEP share: SDP bodies, ICE-server Link headers, resource headers."""
from __future__ import annotations

import hashlib

from aiohttp import web
from aiortc import RTCSessionDescription

from server.bodies import MAX_SDP_CHARS
from server.errors import ApiError
from server.webrtc_http.config import WebRtcHttpConfig

SDP_TYPE = "application/sdp"
RETRY_AFTER_S = 5  # sessions and viewers come and go within seconds


async def sdp_offer_body(request: web.Request) -> RTCSessionDescription:
    """The request body as an SDP offer: 415 for another type, 413 when too long, 400 when empty."""
    if request.content_type != SDP_TYPE:
        raise ApiError(415, f"send the SDP offer as Content-Type: {SDP_TYPE}, not {request.content_type or 'none'}",
                       headers={"Accept-Post": SDP_TYPE})
    if request.content_length is not None and request.content_length > MAX_SDP_CHARS:
        raise ApiError(413, f"SDP offer longer than {MAX_SDP_CHARS} bytes")
    body = await request.content.read(MAX_SDP_CHARS + 1)
    if len(body) > MAX_SDP_CHARS:
        raise ApiError(413, f"SDP offer longer than {MAX_SDP_CHARS} bytes")
    try:
        sdp = body.decode()
    except UnicodeDecodeError:
        raise ApiError(400, "the SDP offer is not UTF-8 text", code="bad_offer") from None
    if not sdp.startswith("v=0"):
        raise ApiError(400, "the body is not an SDP offer (it must start with v=0)", code="bad_offer")
    return RTCSessionDescription(sdp=sdp, type="offer")


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def ice_server_links(config: WebRtcHttpConfig) -> list[str]:
    """One ``Link: <url>; rel="ice-server"`` value per configured server (RFC 9725)."""
    links = []
    for url in config.ice_server_urls:
        link = f'<{url}>; rel="ice-server"'
        if url.startswith("turn") and config.ice_username is not None:
            link += f"; username={_quoted(config.ice_username)}"
            link += f"; credential={_quoted(config.ice_credential or '')}; credential-type=\"password\""
        links.append(link)
    return links


def created(answer: RTCSessionDescription, location: str, config: WebRtcHttpConfig) -> web.Response:
    """``201 Created`` with the SDP answer, the resource's Location and ETag, and ICE servers."""
    response = web.Response(status=201, text=answer.sdp, content_type=SDP_TYPE)
    response.headers["Location"] = location
    response.headers["ETag"] = '"' + hashlib.sha256(answer.sdp.encode()).hexdigest()[:16] + '"'
    for link in ice_server_links(config):
        response.headers.add("Link", link)
    return response


def with_retry_after(exc: ApiError) -> ApiError:
    """A full server (503) tells the client when to try again, as RFC 9725 asks."""
    if exc.status == 503:
        exc.headers = {"Retry-After": str(RETRY_AFTER_S), **(exc.headers or {})}
    return exc


async def endpoint_options(request: web.Request) -> web.Response:
    """What a WHIP/WHEP endpoint accepts (CORS preflights are answered by the CORS middleware)."""
    return web.Response(status=204, headers={"Allow": "POST, OPTIONS", "Accept-Post": SDP_TYPE})


async def resource_options(request: web.Request) -> web.Response:
    return web.Response(status=204, headers={"Allow": "DELETE, OPTIONS"})


async def no_patch(request: web.Request) -> web.Response:
    """Neither trickle ICE nor ICE restarts: the answer carries every candidate, and aiortc
    cannot restart ICE. RFC 9725 asks for 405 when PATCH is not supported at all."""
    raise ApiError(405, "this server does not support trickle ICE or ICE restarts: send the offer with all "
                        "its candidates (wait for ICE gathering to complete)",
                   headers={"Allow": "DELETE, OPTIONS"})
