"""server.cluster: several Abrar nodes sharing one PostgreSQL database (see setup()).

With ``ABRAR_DATABASE_URL`` unset the server is a single node and none of this
runs but ``GET /nodes``, which then lists that node alone. With it set, jobs,
camera streams and node records live in PostgreSQL: any node accepts uploads and
any node's workers claim queued jobs (row locks, one node per job); each camera
is owned by one live node; a node that stops heart-beating has its jobs re-run
(``ABRAR_CLUSTER_JOB_FAILOVER_S``) and its cameras taken over
(``ABRAR_CLUSTER_NODE_TIMEOUT_S``) by the others. Files (uploads, results,
recordings) are on a directory every node shares.
"""
from __future__ import annotations

from aiohttp import web


def setup(app: web.Application) -> None:
    """Join the cluster at start-up (before the features that use it) and serve /nodes."""
    # Imported here: server.config imports server.cluster.config, which loads this
    # package before server.context exists.
    from prometheus_client import Info

    from server import openapi
    from server.cluster import routes, spec
    from server.cluster.node import default_identity
    from server.context import context

    ctx = context(app)
    cfg = ctx.config
    # /metrics is per node: this label tells a scraper behind a load balancer which one answered
    Info("abrar_node", "this node of the cluster", registry=ctx.metrics).info({
        "node": default_identity(cfg.cluster, cfg.host, cfg.port)[0],
        "database": "postgresql" if cfg.cluster.database_url else "sqlite"})
    routes.add_routes(app)
    openapi.register(app, spec.PATHS, spec.SCHEMAS)
    app.cleanup_ctx.append(_lifecycle)
    app.on_shutdown.append(_stop_beating)


async def _stop_beating(app: web.Application) -> None:
    from server.context import context

    node = context(app).cluster
    if node is not None:
        await node.stop_beating()


async def _lifecycle(app: web.Application):
    import asyncio

    from server.cluster.database import migrate
    from server.cluster.node import ClusterNode, default_identity
    from server.cluster.routes import node_status
    from server.context import context

    ctx = context(app)
    cfg = ctx.config.cluster
    if not cfg.database_url:
        yield
        return
    node_id, url = default_identity(cfg, ctx.config.host, ctx.config.port)
    await asyncio.to_thread(migrate, cfg.database_url, node_id)
    node = ClusterNode(cfg, node_id, url, status=lambda: node_status(app))
    ctx.cluster = node
    yield  # the features' start-up hooks run here and register theirs with the node
    await node.leave()


async def start_node(app: web.Application) -> None:
    """Start heart-beating once every feature has hooked itself to the node."""
    from server.context import context

    node = context(app).cluster
    if node is not None:
        await node.start()
