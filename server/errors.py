"""JSON errors everywhere: `{"error": {"code", "message"}}` with the right status."""
from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from matting.cutout_process import CutoutProcessDied
from matting.weights import WeightsError
from server.disk import DISK_FULL_MESSAGE, is_disk_full

log = logging.getLogger(__name__)


class ApiError(Exception):
    """Raise from a handler to answer with a JSON error."""

    def __init__(self, status: int, message: str, code: str | None = None,
                 headers: dict[str, str] | None = None, **extra: Any):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code or _default_code(status)
        self.headers = headers
        self.extra = extra


def _default_code(status: int) -> str:
    return {
        400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
        405: "method_not_allowed", 408: "request_timeout", 409: "conflict", 410: "gone", 413: "payload_too_large",
        415: "unsupported_media_type", 416: "range_not_satisfiable", 422: "unprocessable",
        429: "too_many_requests", 500: "internal_error", 503: "unavailable", 507: "disk_full",
    }.get(status, "error")


def json_error(status: int, message: str, code: str | None = None,
               headers: dict[str, str] | None = None, **extra: Any) -> web.Response:
    body = {"error": {"code": code or _default_code(status), "message": message, **extra}}
    return web.json_response(body, status=status, headers=headers)


@web.middleware
async def error_middleware(request: web.Request, handler):
    try:
        return await handler(request)
    except ApiError as exc:
        return json_error(exc.status, exc.message, exc.code, headers=exc.headers, **exc.extra)
    except ConnectionResetError:  # the client went away mid-request: nobody to answer, nothing broken
        log.info("%s %s: the client closed the connection", request.method, request.path)
        return json_error(400, "the client closed the connection")
    except WeightsError as exc:
        # Missing or broken weights: the message says which file to put where.
        return json_error(503, str(exc), code="model_unavailable")
    except CutoutProcessDied as exc:
        return json_error(503, str(exc), code="cutout_process_died", headers={"Retry-After": "2"})
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
        message = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
        return json_error(exc.status, message, headers=headers)
    except Exception as exc:  # noqa: BLE001 - the client gets a JSON 500, the log gets the trace
        if is_disk_full(exc):  # an upload or a job record could not be written
            log.warning("%s %s: %s", request.method, request.path, exc)
            return json_error(507, DISK_FULL_MESSAGE)
        log.exception("unhandled error in %s %s", request.method, request.path)
        return json_error(500, "internal server error; see the server log")
