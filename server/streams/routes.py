"""HTTP side of RTSP streams: create/list/delete, viewers (WebRTC), background,
recording and snapshots."""
from __future__ import annotations

import asyncio
import json

from aiohttp import web
from aiortc import RTCSessionDescription

from server.context import context
from server.errors import ApiError
from server.live.backgrounds import image_background, parse_client_background
from server.live.pipeline import NoFrameError
from server.live.recordings import recording_url
from server.streams.manager import StreamManager
from server.streams.stream import StreamState
from server.streams.viewers import add_viewer

STREAMS = web.AppKey("abrar_streams", StreamManager)

MAX_BODY_BYTES = 200_000
MAX_SDP_CHARS = 100_000
CREATE_FIELDS = {"url", "background", "record", "require_online"}


def _manager(request: web.Request) -> StreamManager:
    return request.app[STREAMS]


async def _json_body(request: web.Request) -> dict:
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise ApiError(413, "request body too large")
    try:
        data = json.loads(await request.text() or "{}")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ApiError(400, "body must be a JSON object")
    return data


def _flag(body: dict, name: str, default: bool) -> bool:
    value = body.get(name, default)
    if not isinstance(value, bool):
        raise ApiError(400, f"'{name}' must be true or false")
    return value


def _background(label: object):
    if isinstance(label, str) and label.strip().lower().startswith("image:"):
        raise ApiError(400, "image backgrounds are uploaded: POST multipart/form-data with an 'image' file "
                            "to /streams/{id}/background", code="bad_background")
    try:
        return parse_client_background(label)
    except ValueError as exc:
        raise ApiError(400, str(exc), code="bad_background") from None


async def create_stream(request: web.Request) -> web.Response:
    manager = _manager(request)
    body = await _json_body(request)
    unknown = set(body) - CREATE_FIELDS
    if unknown:
        raise ApiError(400, f"unknown field(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(CREATE_FIELDS))}")
    if "url" not in body:
        raise ApiError(400, "missing 'url', e.g. rtsp://camera.local:554/stream")
    manager.check_url(body["url"])  # before anything else, so a bad URL is always a bad_url error
    label = body.get("background", manager.config.default_background)
    background = _background(label)
    record = _flag(body, "record", False)
    require_online = _flag(body, "require_online", False)
    stream = await manager.create(body["url"], label, background, record)
    if require_online:
        # By default a camera that is down is retried in the background (it may come
        # up later); with require_online the client wants to know now.
        wait = manager.config.open_timeout_s + manager.config.read_timeout_s + 1.0
        try:
            await asyncio.wait_for(stream.settled.wait(), timeout=wait)
        except asyncio.TimeoutError:
            pass
        if stream.state != StreamState.LIVE:
            reason = stream.last_error or f"no video within {wait:.0f} s"
            await manager.delete(stream.id)
            raise ApiError(422, f"the camera is not reachable: {reason}", code="source_unreachable")
    return web.json_response(stream.to_json(), status=201, headers={"Location": f"/streams/{stream.id}"})


async def list_streams(request: web.Request) -> web.Response:
    manager = _manager(request)
    return web.json_response({"streams": [s.to_json() for s in manager.all()], "limit": manager.config.max_streams})


async def get_stream(request: web.Request) -> web.Response:
    return web.json_response(_manager(request).get(request.match_info["id"]).to_json())


async def delete_stream(request: web.Request) -> web.Response:
    stream = await _manager(request).delete(request.match_info["id"])
    return web.json_response(stream.to_json())


async def offer(request: web.Request) -> web.Response:
    manager = _manager(request)
    stream = manager.get(request.match_info["id"])
    body = await _json_body(request)
    sdp, kind = body.get("sdp"), body.get("type")
    if kind != "offer" or not isinstance(sdp, str) or not sdp.strip():
        raise ApiError(400, 'expected {"sdp": "<SDP offer>", "type": "offer"}', code="bad_offer")
    if len(sdp) > MAX_SDP_CHARS:
        raise ApiError(413, f"SDP offer longer than {MAX_SDP_CHARS} characters")
    answer = await add_viewer(stream, RTCSessionDescription(sdp=sdp, type="offer"),
                              max_viewers=manager.config.max_viewers,
                              connect_timeout_s=manager.config.viewer_connect_timeout_s)
    return web.json_response({"sdp": answer.sdp, "type": answer.type, "stream_id": stream.id})


async def set_background(request: web.Request) -> web.Response:
    manager = _manager(request)
    stream = manager.get(request.match_info["id"])
    if request.content_type == "multipart/form-data":
        try:
            limit = context(request).config.live.max_background_bytes
            background, label = image_background(await _read_image(request, limit)), "image"
        except ValueError as exc:
            raise ApiError(400, str(exc), code="bad_background") from None
    else:
        label = (await _json_body(request)).get("background")
        background = _background(label)
    manager.set_background(stream, background, label)
    return web.json_response({"background": label})


async def _read_image(request: web.Request, limit: int) -> bytes:
    """The ``image`` part of a multipart body, refused past the limit while reading."""
    reader = await request.multipart()
    async for part in reader:
        if part.name != "image":
            continue
        data = bytearray()
        while chunk := await part.read_chunk(64 * 1024):
            data += chunk
            if len(data) > limit:
                raise ApiError(413, f"background image larger than {limit} bytes")
        return bytes(data)
    raise ApiError(400, "multipart body has no 'image' file")


async def recording(request: web.Request) -> web.Response:
    manager = _manager(request)
    stream = manager.get(request.match_info["id"])
    action = (await _json_body(request)).get("action")
    if action not in ("start", "stop"):
        raise ApiError(400, 'expected {"action": "start"} or {"action": "stop"}')
    await manager.set_record(stream, action == "start")
    current = stream.pipeline.recording
    return web.json_response({
        "record": stream.record,
        "recording": {"name": current.name, "url": recording_url(current.name)} if current else None,
        "recordings": stream.to_json()["recordings"],
    })


async def snapshot(request: web.Request) -> web.Response:
    stream = _manager(request).get(request.match_info["id"])
    try:
        png = await stream.pipeline.snapshot()
    except NoFrameError as exc:
        raise ApiError(409, f"{exc}; wait until the stream is live", code="no_frame") from None
    return web.Response(body=png, content_type="image/png",
                        headers={"Content-Disposition": f'inline; filename="stream-{stream.id}.png"'})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/streams", create_stream)
    app.router.add_get("/streams", list_streams)
    app.router.add_get("/streams/{id}", get_stream)
    app.router.add_delete("/streams/{id}", delete_stream)
    app.router.add_post("/streams/{id}/offer", offer)
    app.router.add_post("/streams/{id}/background", set_background)
    app.router.add_post("/streams/{id}/recording", recording)
    app.router.add_post("/streams/{id}/snapshot", snapshot)
