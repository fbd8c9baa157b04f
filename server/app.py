"""The aiohttp application: one factory wiring the features to a shared context."""
from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from matting.runtime import MattingRuntime
from server import ice, jobs, live, openapi, streams
from server.config import ServerConfig
from server.context import CONTEXT, AppContext, context
from server.errors import error_middleware
from server.middleware import auth_middleware, cors_middleware

log = logging.getLogger(__name__)

VERSION = "0.1.0"
STATIC_DIR = Path(__file__).resolve().parent.parent / "static"


async def healthz(request: web.Request) -> web.Response:
    ctx = context(request)
    return web.json_response({"status": "ok", "version": VERSION, "device": ctx.runtime.choice.describe()})


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(context(request).metrics)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "index.html")


CORE_PATHS = {
    "/healthz": {"get": {"summary": "Liveness and device", "tags": ["server"],
                         "responses": {"200": {"description": "Server is up",
                                               "content": {"application/json": {"schema": {"type": "object"}}}}}}},
    "/metrics": {"get": {"summary": "Prometheus metrics", "tags": ["server"],
                         "responses": {"200": {"description": "Prometheus text format",
                                               "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
}


async def _warm_up(app: web.Application) -> None:
    """Load RVM (resolving or downloading its weights) while the server starts listening,
    so the first live frame does not wait for it; problems are logged, not fatal."""
    ctx = app[CONTEXT]

    def load() -> None:
        try:
            ctx.runtime.video_model()
        except Exception as exc:  # noqa: BLE001 - requests needing the model report it again
            log.error("RVM not loaded at start-up: %s", exc)

    asyncio.get_running_loop().run_in_executor(ctx.inference, load)


async def _shutdown_inference(app: web.Application) -> None:
    app[CONTEXT].inference.shutdown(wait=True, cancel_futures=True)


def create_app(config: ServerConfig, runtime: MattingRuntime | None = None) -> web.Application:
    app = web.Application(middlewares=[
        cors_middleware(config.cors_origins),
        error_middleware,
        auth_middleware(config.api_key),
    ])
    if config.ice_addresses:
        ice.use_host_addresses(config.ice_addresses.split(","))
    runtime = runtime or MattingRuntime(config.runtime_config())
    # a batch fills only when that many frames are in flight at once
    workers = config.model.inference_workers or runtime.batch_max
    ctx = AppContext(config=config, runtime=runtime,
                     inference=ThreadPoolExecutor(workers, thread_name_prefix="inference"),
                     openapi=openapi.base_spec(VERSION))
    app[CONTEXT] = ctx
    app.on_startup.append(_warm_up)
    app.on_cleanup.append(_shutdown_inference)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/", index)
    app.router.add_static("/static", STATIC_DIR)
    openapi.setup(app)
    openapi.register(app, CORE_PATHS)
    jobs.setup(app)
    live.setup(app)
    streams.setup(app)
    return app
