"""Optional API-key auth and CORS."""
from __future__ import annotations

import hmac

from aiohttp import web

from server.errors import json_error

# Reachable without a key: health, docs and the page itself (which asks for the key).
PUBLIC_PREFIXES = ("/healthz", "/docs", "/openapi.json", "/static/")
PUBLIC_PATHS = ("/", "/favicon.ico")


def _given_key(request: web.Request) -> str:
    bearer = request.headers.get("Authorization", "")
    if bearer[:7].lower() == "bearer ":
        return bearer[7:].strip()
    return request.headers.get("X-API-Key") or request.query.get("api_key") or ""


def auth_middleware(api_key: str | None):
    @web.middleware
    async def middleware(request: web.Request, handler):
        if api_key is None or request.method == "OPTIONS":
            return await handler(request)
        if request.path in PUBLIC_PATHS or request.path.startswith(PUBLIC_PREFIXES):
            return await handler(request)
        # surrogateescape: a header with non-UTF-8 bytes is a wrong key, not a crash
        if not hmac.compare_digest(_given_key(request).encode("utf-8", "surrogateescape"), api_key.encode()):
            return json_error(401, "missing or wrong API key: send it in the X-API-Key header "
                                   "(or as Authorization: Bearer KEY, as WHIP/WHEP clients do)",
                              headers={"WWW-Authenticate": 'Bearer realm="abrar"'})
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
            response.headers["Access-Control-Allow-Headers"] = "Content-Type, X-API-Key, Authorization, If-Match, Range"
            response.headers["Access-Control-Allow-Methods"] = "GET, POST, DELETE, PATCH, OPTIONS"
            # ETag and Link (ICE servers) are read by WHIP/WHEP players in browsers
            response.headers["Access-Control-Expose-Headers"] = "Content-Range, Content-Length, Location, ETag, Link"
            if allow != "*":
                response.headers["Vary"] = "Origin"
        return response

    return middleware
