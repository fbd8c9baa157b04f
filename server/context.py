"""Everything one running server owns, reachable from the aiohttp app."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from matting.runtime import MattingRuntime
from server.capacity import Capacity
from server.config import ServerConfig
from server.readiness import Readiness

if TYPE_CHECKING:
    from server.cluster.node import ClusterNode


@dataclass
class AppContext:
    config: ServerConfig
    runtime: MattingRuntime
    # The live lane: live sessions and RTSP streams run inference here, off the event
    # loop; a small pool so that concurrent streams queue for the device instead of
    # thrashing it. Nothing else runs here (server.lanes).
    inference: ThreadPoolExecutor
    # Heavy-lane threads for snapshots (waiting for the RMBG process, encoding the PNG),
    # background decoding and model loading (server.lanes).
    heavy: ThreadPoolExecutor
    # Live streams admitted by what the live lane can keep at the target rate.
    capacity: Capacity
    readiness: Readiness = field(default_factory=Readiness)
    metrics: CollectorRegistry = field(default_factory=CollectorRegistry)
    openapi: dict[str, Any] = field(default_factory=dict)
    # This node of a PostgreSQL cluster (ABRAR_DATABASE_URL); None for a single node on SQLite.
    cluster: ClusterNode | None = None


CONTEXT = web.AppKey("abrar_context", AppContext)


def context(app_or_request: web.Application | web.Request) -> AppContext:
    app = app_or_request.app if isinstance(app_or_request, web.Request) else app_or_request
    return app[CONTEXT]
