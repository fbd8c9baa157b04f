"""OpenAPI paths of WHIP ingest and WHEP playback."""
from __future__ import annotations

from server.live.backgrounds import CLIENT_SPECS

_ERR = {"$ref": "#/components/responses/Error"}
_SDP = {"application/sdp": {"schema": {"type": "string"}}}
_TAG = ["whip/whep"]
_HEADERS = {
    "Location": {"schema": {"type": "string"}, "description": "the resource; DELETE it to end"},
    "ETag": {"schema": {"type": "string"}},
    "Link": {"schema": {"type": "string"}, "description": 'rel="ice-server" for each ABRAR_ICE_SERVERS entry'},
}
_FULL = {"description": "at the limit; Retry-After says when to try again", "content": {
    "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _resource(what: str, names: tuple[str, ...]) -> dict:
    params = [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}} for n in names]
    return {
        "delete": {"summary": f"End the {what}", "tags": _TAG, "parameters": params,
                   "responses": {"200": {"description": "Ended"}, "404": _ERR}},
        "patch": {"summary": "Trickle ICE and ICE restarts are not supported", "tags": _TAG, "parameters": params,
                  "responses": {"405": _ERR}},
    }


PATHS = {
    "/whip": {"post": {
        "summary": "WHIP ingest (RFC 9725): publish a camera as a live session",
        "description": "The body is the publisher's SDP offer with all its candidates. The session is a "
                       "live session like POST /offer's: /sessions/{id} shows and controls it, where id is "
                       "the last segment of Location. Auth: Authorization: Bearer API_KEY.",
        "tags": _TAG,
        "parameters": [{"name": "background", "in": "query", "required": False, "schema": {"type": "string"},
                        "description": f"initial background: {CLIENT_SPECS}"}],
        "requestBody": {"required": True, "content": _SDP},
        "responses": {"201": {"description": "SDP answer", "headers": _HEADERS, "content": _SDP},
                      "400": _ERR, "401": _ERR, "413": _ERR, "415": _ERR, "503": _FULL},
    }},
    "/whip/{id}": _resource("WHIP session (finalises its recording)", ("id",)),
    "/whep/{id}": {"post": {
        "summary": "WHEP playback: watch the matted video of a live session or an RTSP stream",
        "description": "The body is the player's SDP offer (receive video, optionally audio) with all its "
                       "candidates. Viewers of one source share its inference.",
        "tags": _TAG,
        "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"},
                        "description": "a live session id or a stream id"}],
        "requestBody": {"required": True, "content": _SDP},
        "responses": {"201": {"description": "SDP answer", "headers": _HEADERS, "content": _SDP},
                      "400": _ERR, "401": _ERR, "404": _ERR, "413": _ERR, "415": _ERR, "503": _FULL},
    }},
    "/whep/{id}/{viewer}": _resource("WHEP viewer", ("id", "viewer")),
}
