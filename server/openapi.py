"""OpenAPI 3 spec assembled from each feature's paths; Swagger UI served locally at /docs."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import swagger_ui_bundle
from aiohttp import web

from server.context import context

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        }
    },
}

_SWAGGER_DIR = Path(swagger_ui_bundle.swagger_ui_path)

_DOCS_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>Abrar API</title>
<link rel="stylesheet" href="/docs/static/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/docs/static/swagger-ui-bundle.js"></script>
<script>window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui"});</script>
</body></html>"""


def base_spec(version: str) -> dict[str, Any]:
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Abrar background removal API",
            "version": version,
            "description": "Image and video background removal, live WebRTC sessions and RTSP cameras.",
        },
        "paths": {},
        "components": {
            "schemas": {"Error": ERROR_SCHEMA},
            "responses": {
                "Error": {
                    "description": "An error",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                }
            },
            "securitySchemes": {"ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}},
        },
    }


def register(app: web.Application, paths: dict[str, Any], schemas: dict[str, Any] | None = None) -> None:
    """Add a feature's paths (and component schemas) to the app's spec."""
    spec = context(app).openapi
    for path, ops in paths.items():
        spec["paths"].setdefault(path, {}).update(ops)
    spec["components"]["schemas"].update(schemas or {})


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(context(request).openapi)


async def docs(request: web.Request) -> web.Response:
    return web.Response(text=_DOCS_HTML, content_type="text/html")


def setup(app: web.Application) -> None:
    app.router.add_get("/openapi.json", openapi_json)
    app.router.add_get("/docs", docs)
    app.router.add_static("/docs/static", _SWAGGER_DIR)
