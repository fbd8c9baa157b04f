"""server.streams: see setup()."""
from __future__ import annotations

from aiohttp import web


def setup(app: web.Application) -> None:
    """Register this feature's routes, OpenAPI paths, metrics and lifecycle hooks."""
