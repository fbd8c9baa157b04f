"""HTTP side of live sessions: signalling, control, snapshots and recordings."""
from __future__ import annotations

from aiohttp import web

from server.bodies import json_body, sdp_offer
from server.cluster.routes import gather
from server.context import context
from server.downloads import file_response
from server.errors import ApiError
from server.live.backgrounds import background_from_request, parse_client_background
from server.live.pipeline import LivePipeline, NoFrameError
from server.live.recordings import as_json, find_recording, list_recordings, recording_url
from server.live.sessions import LiveSessions

LIVE = web.AppKey("abrar_live", LiveSessions)

def _sessions(request: web.Request) -> LiveSessions:
    return request.app[LIVE]


async def offer(request: web.Request) -> web.Response:
    body = await json_body(request)
    description = sdp_offer(body)
    sessions = _sessions(request)
    label = body.get("background", sessions.config.default_background)
    try:
        background = parse_client_background(label)
    except ValueError as exc:
        raise ApiError(400, str(exc), code="bad_background") from None
    session, answer = await sessions.create(description, background, label)
    return web.json_response({"sdp": answer.sdp, "type": answer.type, "session_id": session.id},
                             headers={"Location": f"/sessions/{session.id}"})


async def list_sessions(request: web.Request) -> web.Response:
    sessions = _sessions(request)
    capacity = sessions.capacity.report()
    found = await gather(request, "/sessions", "sessions", [s.describe() for s in sessions.all()])
    return web.json_response({"sessions": found, "limit": capacity.ceiling, "capacity": capacity.to_json()})


async def get_session(request: web.Request) -> web.Response:
    return web.json_response(_sessions(request).get(request.match_info["id"]).describe())


async def delete_session(request: web.Request) -> web.Response:
    sessions = _sessions(request)
    sessions.get(request.match_info["id"])  # 404 if unknown
    await sessions.close(request.match_info["id"])
    return web.Response(status=204)


async def set_background(request: web.Request) -> web.Response:
    sessions = _sessions(request)
    session = sessions.get(request.match_info["id"])
    background, label = await background_from_request(request, sessions.config.max_background_bytes)
    session.set_background(background, label)
    return web.json_response({"background": label})


async def recording(request: web.Request) -> web.Response:
    session = _sessions(request).get(request.match_info["id"])
    action = (await json_body(request)).get("action")
    if action == "start":
        path = session.pipeline.start_recording()
        return web.json_response({"recording": True, "name": path.name, "url": recording_url(path.name)})
    if action == "stop":
        if session.pipeline.recording is None:
            raise ApiError(409, "this session is not recording")
        stopped = await session.pipeline.stop_recording()
        if stopped is None:
            return web.json_response({"recording": False, "name": None, "url": None, "bytes": 0})
        return web.json_response({"recording": False, "name": stopped.name, "url": recording_url(stopped.name),
                                  "bytes": stopped.stat().st_size})
    raise ApiError(400, 'expected {"action": "start"} or {"action": "stop"}')


async def snapshot_response(pipeline: LivePipeline, filename: str, wait_hint: str) -> web.Response:
    """RMBG cut-out of ``pipeline``'s latest frame as an inline PNG; 409 before any frame."""
    try:
        png = await pipeline.snapshot()
    except NoFrameError as exc:
        raise ApiError(409, f"{exc}; {wait_hint}", code="no_frame") from None
    return web.Response(body=png, content_type="image/png",
                        headers={"Content-Disposition": f'inline; filename="{filename}"'})


async def snapshot(request: web.Request) -> web.Response:
    pipeline = _sessions(request).get(request.match_info["id"]).pipeline
    return await snapshot_response(pipeline, f"{pipeline.name}.png", "wait for the video to start")


async def recordings_index(request: web.Request) -> web.Response:
    directory = context(request).config.recordings_dir
    return web.json_response({"recordings": as_json(list_recordings(directory))})


async def recording_file(request: web.Request) -> web.FileResponse:
    name = request.match_info["name"]
    path = find_recording(context(request).config.recordings_dir, name)
    if path is None:
        raise ApiError(404, f"no recording named {name!r}")
    return file_response(request, path, {"Content-Type": "video/webm",
                                         "Content-Disposition": f'attachment; filename="{path.name}"'})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/offer", offer)
    app.router.add_get("/sessions", list_sessions)
    app.router.add_get("/sessions/{id}", get_session)
    app.router.add_delete("/sessions/{id}", delete_session)
    app.router.add_post("/sessions/{id}/background", set_background)
    app.router.add_post("/sessions/{id}/recording", recording)
    app.router.add_post("/sessions/{id}/snapshot", snapshot)
    app.router.add_get("/recordings", recordings_index)
    app.router.add_get("/recordings/{name}", recording_file)
