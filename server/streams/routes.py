"""HTTP side of RTSP streams: create/list/delete, viewers (WebRTC), background,
recording and snapshots."""
from __future__ import annotations

import asyncio

from aiohttp import web

from server.bodies import json_body, sdp_offer
from server.cluster.routes import forward, gather, node_id_of
from server.context import context
from server.errors import ApiError
from server.live.backgrounds import background_from_request, parse_client_background
from server.live.recordings import recording_url
from server.live.routes import snapshot_response
from server.streams.manager import StreamManager
from server.streams.stream import Stream, StreamState
from server.streams.viewers import add_viewer

STREAMS = web.AppKey("abrar_streams", StreamManager)

CREATE_FIELDS = {"url", "background", "record", "require_online"}


def _manager(request: web.Request) -> StreamManager:
    return request.app[STREAMS]


async def _stream(request: web.Request) -> Stream:
    """The stream of the path, if it runs here; one running on another node of the
    cluster is a 307 to that node (method and body kept, so a viewer's offer works)."""
    manager = _manager(request)
    stream_id = request.match_info["id"]
    if stream_id in manager or manager.records is None:
        return manager.get(stream_id)
    owner = await asyncio.get_running_loop().run_in_executor(None, manager.records.owner, stream_id)
    if owner is None:
        return manager.get(stream_id)  # 404
    if owner.alive and owner.url and owner.node_id != node_id_of(request):
        raise web.HTTPTemporaryRedirect(f"{owner.url}{request.path_qs}")
    retry = 2 * context(request).config.cluster.heartbeat_s
    raise ApiError(503, f"stream {stream_id!r} is moving to another node (its node stopped); retry shortly",
                   code="stream_moving", headers={"Retry-After": str(max(1, round(retry)))})


def _flag(body: dict, name: str, default: bool) -> bool:
    value = body.get(name, default)
    if not isinstance(value, bool):
        raise ApiError(400, f"'{name}' must be true or false")
    return value


def _background(label: object):
    try:
        return parse_client_background(label)
    except ValueError as exc:
        raise ApiError(400, str(exc), code="bad_background") from None


async def create_stream(request: web.Request) -> web.Response:
    manager = _manager(request)
    body = await json_body(request)
    unknown = set(body) - CREATE_FIELDS
    if unknown:
        raise ApiError(400, f"unknown field(s) {', '.join(sorted(unknown))}; "
                            f"allowed: {', '.join(sorted(CREATE_FIELDS))}")
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
    streams = await gather(request, "/streams", "streams", [s.to_json() for s in manager.all()])
    return web.json_response({"streams": streams, "limit": manager.config.max_streams,
                              "capacity": manager.capacity.report().to_json()})


async def get_stream(request: web.Request) -> web.Response:
    stream = await _stream(request)
    return web.json_response({**stream.to_json(), "node": node_id_of(request)})


async def delete_stream(request: web.Request) -> web.Response:
    stream = await _manager(request).delete((await _stream(request)).id)
    return web.json_response(stream.to_json())


async def offer(request: web.Request) -> web.Response:
    manager = _manager(request)
    try:
        stream = await _stream(request)
    except web.HTTPTemporaryRedirect as moved:  # the viewer's peer will connect to the owner itself
        return await forward(request, str(moved.location), manager.config.viewer_connect_timeout_s)
    description = sdp_offer(await json_body(request))
    answer = await add_viewer(stream, description,
                              max_viewers=manager.config.max_viewers,
                              connect_timeout_s=manager.config.viewer_connect_timeout_s)
    return web.json_response({"sdp": answer.sdp, "type": answer.type, "stream_id": stream.id})


async def set_background(request: web.Request) -> web.Response:
    manager = _manager(request)
    stream = await _stream(request)
    limit = context(request).config.live.max_background_bytes
    background, label = await background_from_request(request, limit)
    manager.set_background(stream, background, label)
    return web.json_response({"background": label})


async def recording(request: web.Request) -> web.Response:
    manager = _manager(request)
    stream = await _stream(request)
    action = (await json_body(request)).get("action")
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
    stream = await _stream(request)
    stream.prepare_snapshot()
    return await snapshot_response(stream.pipeline, f"stream-{stream.id}.png", "wait until the stream is live")


def add_routes(app: web.Application) -> None:
    app.router.add_post("/streams", create_stream)
    app.router.add_get("/streams", list_streams)
    app.router.add_get("/streams/{id}", get_stream)
    app.router.add_delete("/streams/{id}", delete_stream)
    app.router.add_post("/streams/{id}/offer", offer)
    app.router.add_post("/streams/{id}/background", set_background)
    app.router.add_post("/streams/{id}/recording", recording)
    app.router.add_post("/streams/{id}/snapshot", snapshot)
