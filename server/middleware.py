"""Optional API-key auth and CORS."""
from __future__ import annotations

import hmac

from aiohttp import web

from server.errors import json_error

# Reachable without a key: health, docs and the page itself (which asks for the key).
PUBLIC_PREFIXES = ("/healthz", "/docs", "/openapi.json", "/static/")
PUBLIC_PATHS = ("/", "/favicon.ico")


def auth_middleware(api_key: str | None):
    @web.middleware
    async def middleware(request: web.Request, handler):
        if api_key is None or request.method == "OPTIONS":
            return await handler(request)
        if request.path in PUBLIC_PATHS or request.path.startswith(PUBLIC_PREFIXES):
            return await handler(request)
        given = request.headers.get("X-API-Key") or request.query.get("api_key") or ""
        # surrogateescape: a header with non-UTF-8 bytes is a wrong key, not a crash
        if not hmac.compare_digest(given.encode("utf-8", "surrogateescape"), api_key.encode()):
            return json_error(401, "missing or wrong API key: send it in the X-API-Key header")
        return await handler(request)

    return middleware


def cors_middleware(origins: str):
    allowed = {o.strip() for o in origins.split(",") if o.strip()}

    @web.middleware
    async def middleware(request: web.Request, handler):
        origin = request.headers.get("Origin")
        if not allowed or origin is None:
            return await handler(request)
        allow = "*" if "*" in allowed else (origin if origin in allowed else None)
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            response = web.Response(status=204)
        else:
            response = await handler(request)
        if allow:
            response.headers["Access-Control-Allow-Origin"] = allow
            response.headers["Access-Control-Allow-Headers"] = "Content-Type, X-API-Key, Range"
            response.headers["Access-Control-Allow-Methods"] = "GET, POST, DELETE, OPTIONS"
            response.headers["Access-Control-Expose-Headers"] = "Content-Range, Content-Length, Location"
            if allow != "*":
                response.headers["Vary"] = "Origin"
        return response

    return middleware
