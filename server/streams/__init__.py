"""server.streams: RTSP cameras matted live, watched over WebRTC, recorded.

One stream = one PyAV reader thread (reconnecting with backoff) + one
``LivePipeline`` (own RVM state, recorder, snapshots) + any number of WebRTC
viewers sharing that single inference.

Decisions:
- A camera that cannot be reached when its stream is created is accepted and
  retried with backoff (state ``reconnecting``, ``last_error`` says why): cameras
  that are down at start must come up by themselves. ``require_online: true``
  asks for a 422 instead.
- The stream list (URLs with credentials, backgrounds, record flags) is saved to
  ``DATA_DIR/streams.json`` (mode 0600) and re-created at start-up, with the same
  ids; ``ABRAR_STREAMS_PERSIST=false`` turns this off. Uploaded background images
  are not saved (a restored stream falls back to the default background).
- In a cluster (``ABRAR_DATABASE_URL``) the list is in PostgreSQL and each stream
  runs on one node, which others take it over from if it dies (server.cluster.streams).
"""
from __future__ import annotations

from aiohttp import web


def setup(app: web.Application) -> None:
    """Register this feature's routes, OpenAPI paths, metrics and lifecycle hooks."""
    # Imported here, not at module level: server.config imports server.streams.config,
    # which loads this package before server.context exists.
    from server import openapi
    from server.context import context
    from server.streams import spec
    from server.streams.manager import StreamManager
    from server.streams.metrics import StreamsCollector
    from server.streams.routes import STREAMS, add_routes

    ctx = context(app)
    manager = StreamManager(ctx.config.streams, ctx.runtime, ctx.inference,
                            recordings_dir=ctx.config.recordings_dir, data_dir=ctx.config.data_dir,
                            capacity=ctx.capacity, downsample_ratio=ctx.config.live.downsample_ratio,
                            matte_budget_ms=ctx.config.live.matte_budget_ms, heavy_executor=ctx.heavy)
    app[STREAMS] = manager
    ctx.readiness.add_check(manager.problems)
    ctx.metrics.register(StreamsCollector(manager))
    add_routes(app)
    openapi.register(app, spec.PATHS, spec.SCHEMAS)

    async def restore(app: web.Application) -> None:
        node = context(app).cluster
        if node is not None:  # the list lives in the cluster's database, each stream on one node
            from server.cluster.streams import follow_streams

            follow_streams(node, app[STREAMS])
        await app[STREAMS].restore()

    async def close_streams(app: web.Application) -> None:
        # on_shutdown runs before the inference pool stops, so recordings are finalised
        await app[STREAMS].close_all()

    app.on_startup.append(restore)
    app.on_shutdown.append(close_streams)
