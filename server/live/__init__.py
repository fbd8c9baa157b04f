"""server.live: browser webcam sessions over WebRTC, matted live, with recording and snapshots.

``LivePipeline`` (server.live.pipeline) is the per-stream processing that RTSP
cameras reuse.
"""
from __future__ import annotations

from aiohttp import web


def setup(app: web.Application) -> None:
    """Register this feature's routes, OpenAPI paths, metrics and lifecycle hooks."""
    # Imported here, not at module level: server.config imports server.live.config,
    # which loads this package before server.context exists.
    from server import openapi
    from server.context import context
    from server.live import spec
    from server.live.backgrounds import parse_client_background
    from server.live.metrics import LiveCollector
    from server.live.routes import LIVE, add_routes
    from server.live.sessions import LiveSessions

    ctx = context(app)
    try:  # a bad default would otherwise fail every offer that does not name a background
        parse_client_background(ctx.config.live.default_background)
    except ValueError as exc:
        raise ValueError(f"ABRAR_LIVE_BACKGROUND: {exc}") from None
    sessions = LiveSessions(ctx.config.live, ctx.runtime, ctx.inference, ctx.config.recordings_dir,
                            capacity=ctx.capacity, heavy_executor=ctx.heavy)
    app[LIVE] = sessions
    ctx.metrics.register(LiveCollector(sessions))
    add_routes(app)
    openapi.register(app, spec.PATHS, spec.SCHEMAS)

    async def close_sessions(app: web.Application) -> None:
        # on_shutdown runs on SIGTERM before the inference pool stops: every
        # recording is finalised while its encoder can still be flushed.
        await app[LIVE].close_all()

    app.on_shutdown.append(close_sessions)
