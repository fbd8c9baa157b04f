"""GET /nodes, and what other features need to answer for the whole cluster:
this node's capacity and load, lists gathered from every node, redirects to an owner."""
from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone
from typing import Any

import aiohttp
from aiohttp import web

from server.cluster.node import default_identity
from server.context import context
from server.errors import ApiError

log = logging.getLogger(__name__)

# A list gathered from every node waits this long for each; a node that does not
# answer is reported, not waited for.
GATHER_TIMEOUT_S = 3.0
# ?scope=node asks one node for its own items only (what gathering uses).
SCOPE_NODE = "node"


def node_status(app: web.Application) -> tuple[dict[str, int], dict[str, int]]:
    """(capacity, load) of this node, as /nodes shows them."""
    from server.jobs.state import JOBS
    from server.live.routes import LIVE
    from server.streams.routes import STREAMS

    cfg = context(app).config
    capacity = {"job_workers": cfg.jobs.workers, "live_sessions": cfg.live.max_sessions,
                "streams": cfg.streams.max_streams}
    load = {"jobs_running": len(app[JOBS].runner.running_ids()) if JOBS in app else 0,
            "live_sessions": len(app[LIVE].all()) if LIVE in app else 0,
            "streams": len(app[STREAMS].all()) if STREAMS in app else 0}
    return capacity, load


async def list_nodes(request: web.Request) -> web.Response:
    ctx = context(request)
    node = ctx.cluster
    if node is None:  # a single node: itself, always alive
        node_id, url = default_identity(ctx.config.cluster, ctx.config.host, ctx.config.port)
        capacity, load = node_status(request.app)
        now = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        nodes = [{"id": node_id, "url": url, "started_at": None, "last_heartbeat": now, "heartbeat_age_s": 0.0,
                  "alive": True, "self": True, "capacity": capacity, "load": load}]
        return web.json_response({"nodes": nodes, "database": "sqlite"})
    return web.json_response({"nodes": await node.call(node.nodes), "database": "postgresql"})


def node_id_of(request: web.Request) -> str:
    ctx = context(request)
    if ctx.cluster is not None:
        return ctx.cluster.id
    return default_identity(ctx.config.cluster, ctx.config.host, ctx.config.port)[0]


async def gather(request: web.Request, path: str, key: str, local: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``local`` plus the ``key`` items of every other live node's ``path?scope=node``,
    each tagged with the node serving it; a node that does not answer is skipped (and logged)."""
    me = node_id_of(request)
    items = [{**item, "node": me} for item in local]
    node = context(request).cluster
    if node is None or request.query.get("scope") == SCOPE_NODE:
        return items
    others = {nid: url for nid, url in (await node.call(node.alive_urls)).items() if nid != me}
    if not others:
        return items
    headers = {k: v for k, v in request.headers.items() if k.lower() == "x-api-key"}
    timeout = aiohttp.ClientTimeout(total=GATHER_TIMEOUT_S)

    async def fetch(http: aiohttp.ClientSession, nid: str, url: str) -> list[dict[str, Any]]:
        try:
            async with http.get(f"{url}{path}", params={"scope": SCOPE_NODE}, headers=headers) as resp:
                body = await resp.json()
                resp.raise_for_status()
            return [{**item, "node": nid} for item in body.get(key, [])]
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
            log.warning("node %s did not list its %s: %s", nid, key, exc or type(exc).__name__)
            return []

    async with aiohttp.ClientSession(timeout=timeout) as http:
        for found in await asyncio.gather(*(fetch(http, nid, url) for nid, url in others.items())):
            items.extend(found)
    return items


async def forward(request: web.Request, url: str, timeout_s: float) -> web.Response:
    """Send this request to another node and answer with its response.

    For WebRTC offers: the answer names the other node's ICE candidates, so media
    flows straight between the client and that node; only signalling passes here,
    which spares browsers a cross-origin redirect and works when clients cannot
    reach node addresses (a load balancer in front)."""
    body = await request.read()
    headers = {k: v for k, v in request.headers.items() if k.lower() in ("content-type", "x-api-key")}
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as http:
            async with http.request(request.method, url, data=body, headers=headers, allow_redirects=False) as resp:
                return web.Response(body=await resp.read(), status=resp.status,
                                    content_type=resp.content_type or "application/json")
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        raise ApiError(502, f"the node running this stream did not answer ({exc or type(exc).__name__}); "
                            "retry shortly", code="node_unreachable") from None


def add_routes(app: web.Application) -> None:
    app.router.add_get("/nodes", list_nodes)

