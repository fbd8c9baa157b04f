"""The aiohttp application: one factory wiring the features to a shared context."""
from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from matting.runtime import MattingRuntime
from server import cluster, dtls, ice, jobs, lanes, live, openapi, streams, webrtc_http
from server.capacity import Capacity, default_target_fps
from server.config import ServerConfig
from server.context import CONTEXT, AppContext, context
from server.errors import error_middleware
from server.live.audio_level import use_numpy_levels
from server.middleware import auth_middleware, cors_middleware
from server.rtp_receivers import no_start_after_stop
from server.rtp_senders import realtime_vp8
from server.warmup import warm_up

log = logging.getLogger(__name__)

VERSION = "0.1.0"
STATIC_DIR = Path(__file__).resolve().parent.parent / "static"


async def healthz(request: web.Request) -> web.Response:
    ctx = context(request)
    # Still 200: the process is alive; "degraded" with the reasons tells operators what to fix.
    problems = jobs.problems(request.app)
    return web.json_response({"status": "degraded" if problems else "ok", "problems": problems,
                              "version": VERSION, "device": ctx.runtime.choice.describe()})


async def readyz(request: web.Request) -> web.Response:
    ready, body = context(request).readiness.report()
    return web.json_response(body, status=200 if ready else 503,
                             headers=None if ready else {"Retry-After": "5"})


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(context(request).metrics)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "index.html")


CORE_PATHS = {
    "/healthz": {"get": {"summary": "Liveness and device (cheap: says nothing about the models)",
                         "tags": ["server"],
                         "responses": {"200": {"description": "Server is up",
                                               "content": {"application/json": {"schema": {"type": "object"}}}}}}},
    "/readyz": {"get": {"summary": "Readiness: models loaded, workers alive", "tags": ["server"],
                        "responses": {
                            "200": {"description": "Ready", "content": {"application/json": {
                                "schema": {"$ref": "#/components/schemas/Readiness"}}}},
                            "503": {"description": "Not ready: a model is loading or missing (which file to put "
                                                   "where), or a worker died; Retry-After set",
                                    "content": {"application/json": {
                                        "schema": {"$ref": "#/components/schemas/Readiness"}}}}}}},
    "/metrics": {"get": {"summary": "Prometheus metrics", "tags": ["server"],
                         "responses": {"200": {"description": "Prometheus text format",
                                               "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
}

CORE_SCHEMAS = {
    "Readiness": {
        "type": "object",
        "properties": {
            "status": {"type": "string", "enum": ["ready", "not_ready"]},
            "models": {"type": "object", "additionalProperties": {"type": "object", "properties": {
                "state": {"type": "string", "enum": ["waiting", "loading", "ready", "missing", "failed", "lazy"]},
                "detail": {"type": "string", "description": "why it is missing or failed: which file to put where"},
            }}},
            "problems": {"type": "array", "items": {"type": "string"}},
        },
    },
}


async def _start_warm_up(app: web.Application) -> None:
    warm_up(app[CONTEXT], asyncio.get_running_loop())


async def _shutdown_lanes(app: web.Application) -> None:
    ctx = app[CONTEXT]
    ctx.heavy.shutdown(wait=False, cancel_futures=True)
    ctx.inference.shutdown(wait=True, cancel_futures=True)


def create_app(config: ServerConfig, runtime: MattingRuntime | None = None) -> web.Application:
    app = web.Application(middlewares=[
        cors_middleware(config.cors_origins),
        error_middleware,
        auth_middleware(config.api_key),
    ], handler_args={
        # aiohttp closes a connection whose request headers have not arrived in this time
        "keepalive_timeout": config.read_timeout_s,
    })
    if config.ice_addresses:
        ice.use_host_addresses(config.ice_addresses.split(","))
    dtls.accept_rsa_peers()
    no_start_after_stop()
    realtime_vp8()
    use_numpy_levels()
    lanes.serial_opencv()
    runtime = runtime or MattingRuntime(config.runtime_config())
    workers = lanes.live_workers(config.model.inference_workers, runtime.batch_max, runtime.device.type)
    target_fps = config.live.target_fps or default_target_fps(runtime.device.type)
    # the settings print 0 for auto; say what auto came to
    log.info("live lane: %d thread%s; live streams admitted while each can keep %g fps",
             workers, "" if workers == 1 else "s", target_fps)
    ctx = AppContext(config=config, runtime=runtime,
                     inference=ThreadPoolExecutor(workers, thread_name_prefix="inference"),
                     heavy=lanes.heavy_pool(config.model.heavy_workers, "heavy"),
                     capacity=Capacity(target_fps, workers, ceiling=config.live.max_sessions or None),
                     openapi=openapi.base_spec(VERSION))
    app[CONTEXT] = ctx
    app.on_startup.append(_start_warm_up)
    app.on_cleanup.append(_shutdown_lanes)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/", index)
    app.router.add_static("/static", STATIC_DIR)
    openapi.setup(app)
    openapi.register(app, CORE_PATHS, CORE_SCHEMAS)
    cluster.setup(app)  # first: the features below use the cluster node at start-up
    jobs.setup(app)
    live.setup(app)
    streams.setup(app)
    webrtc_http.setup(app)
    app.on_startup.append(cluster.start_node)  # last: once every feature hooked itself to it
    return app
