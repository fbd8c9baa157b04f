"""OpenAPI paths and schemas of the live-session API."""
from __future__ import annotations

from server.live.backgrounds import CLIENT_SPECS

_ERR = {"$ref": "#/components/responses/Error"}
_SESSION_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"},
               "description": "session_id from POST /offer"}


def _json(schema_ref: str) -> dict:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema_ref}"}}}


def _ok(description: str, schema_ref: str) -> dict:
    return {"description": description, "content": _json(schema_ref)}


SCHEMAS = {
    "LiveOffer": {
        "type": "object", "required": ["sdp", "type"],
        "properties": {
            "sdp": {"type": "string", "description": "SDP offer with its ICE candidates (no trickle)"},
            "type": {"type": "string", "enum": ["offer"]},
            "background": {"type": "string", "description": f"initial background: {CLIENT_SPECS}"},
        },
    },
    "LiveAnswer": {
        "type": "object", "required": ["sdp", "type", "session_id"],
        "properties": {"sdp": {"type": "string"}, "type": {"type": "string", "enum": ["answer"]},
                       "session_id": {"type": "string"}},
    },
    "LiveStats": {
        "type": "object",
        "properties": {
            "frames": {"type": "integer"}, "dropped": {"type": "integer"}, "fps": {"type": "number"},
            "latency_p50_ms": {"type": "number", "nullable": True},
            "latency_p95_ms": {"type": "number", "nullable": True},
            "width": {"type": "integer", "nullable": True}, "height": {"type": "integer", "nullable": True},
            "recording": {"type": "string", "nullable": True},
        },
    },
    "LiveSession": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "state": {"type": "string", "description": "peer connection state"},
            "background": {"type": "string"}, "age_s": {"type": "number"}, "audio": {"type": "boolean"},
            "viewers": {"type": "integer", "description": "WHEP viewers of its matted video"},
            "stats": {"$ref": "#/components/schemas/LiveStats"},
            "node": {"type": "string", "description": "the node serving the session (GET /nodes)"},
        },
    },
    "LiveCapacity": {
        "type": "object",
        "description": "Admission by capacity, shared by live sessions and RTSP streams",
        "properties": {
            "target_fps": {"type": "number", "description": "rate every admitted stream must be able to keep"},
            "workers": {"type": "integer", "description": "live-lane threads"},
            "lane_speedup": {"type": "number",
                             "description": "frames the live-lane threads carry side by side over one thread "
                                            "alone, measured at start-up (1 until then)"},
            "frame_cost_ms": {"type": "number", "nullable": True,
                              "description": "running per-frame cost in the live lane, at the adaptive floor, "
                                             "with every live-lane thread busy"},
            "capacity": {"type": "integer", "nullable": True,
                         "description": "streams the live lane can keep at target_fps (at least 1)"},
            "ceiling": {"type": "integer", "nullable": True, "description": "ABRAR_LIVE_MAX_SESSIONS, when set"},
            "admitted": {"type": "integer", "description": "sessions (connected or pending) and streams"},
            "headroom": {"type": "integer", "nullable": True, "description": "more that would be admitted now"},
        },
    },
    "LiveSessionList": {
        "type": "object",
        "description": "every node's sessions; with ?scope=node only those of the node answering",
        "properties": {"sessions": {"type": "array", "items": {"$ref": "#/components/schemas/LiveSession"}},
                       "limit": {"type": "integer", "nullable": True,
                                 "description": "this node's configured ceiling, if any"},
                       "capacity": {"$ref": "#/components/schemas/LiveCapacity",
                                    "description": "the capacity of the node answering"}},
    },
    "CapacityError": {
        "type": "object",
        "properties": {"error": {"type": "object", "properties": {
            "code": {"type": "string", "example": "at_capacity"}, "message": {"type": "string"},
            "retry_after_s": {"type": "integer"},
            "capacity": {"$ref": "#/components/schemas/LiveCapacity",
                                    "description": "the capacity of the node answering"}}}},
    },
    "BackgroundSpec": {
        "type": "object", "required": ["background"],
        "properties": {"background": {"type": "string", "description": CLIENT_SPECS, "example": "blur:20"}},
    },
    "RecordingAction": {
        "type": "object", "required": ["action"],
        "properties": {"action": {"type": "string", "enum": ["start", "stop"]}},
    },
    "RecordingState": {
        "type": "object",
        "properties": {"recording": {"type": "boolean"}, "name": {"type": "string", "nullable": True},
                       "url": {"type": "string", "nullable": True}, "bytes": {"type": "integer"}},
    },
    "Recording": {
        "type": "object",
        "properties": {"name": {"type": "string"}, "bytes": {"type": "integer"},
                       "modified": {"type": "string", "format": "date-time"}, "url": {"type": "string"}},
    },
    "RecordingList": {
        "type": "object",
        "properties": {"recordings": {"type": "array", "items": {"$ref": "#/components/schemas/Recording"}}},
    },
}

_TAG = ["live"]

PATHS = {
    "/offer": {"post": {
        "summary": "Start a live session: send a WebRTC offer, get the answer",
        "description": "The returned video is the matted stream; audio is passed through. "
                       "A data channel may send {\"type\": \"background\", \"background\": SPEC}.",
        "tags": _TAG,
        "requestBody": {"required": True, "content": _json("LiveOffer")},
        "responses": {"200": _ok("SDP answer", "LiveAnswer"), "400": _ERR, "413": _ERR,
                      "503": {"description": "at capacity (every admitted stream could no longer keep the target "
                                             "rate) or at the ceiling, Retry-After set (`at_capacity`); or RVM's "
                                             "weights are not installed (`model_unavailable`)",
                              "content": _json("CapacityError")}},
    }},
    "/sessions": {"get": {
        "summary": "Open live sessions of every node, and their stats", "tags": _TAG,
        "parameters": [{"name": "scope", "in": "query", "required": False,
                        "schema": {"type": "string", "enum": ["node"]},
                        "description": "node: only the sessions of the node answering"}],
        "responses": {"200": _ok("Sessions", "LiveSessionList")},
    }},
    "/sessions/{id}": {
        "get": {"summary": "One live session", "tags": _TAG, "parameters": [_SESSION_ID],
                "responses": {"200": _ok("Session", "LiveSession"), "404": _ERR}},
        "delete": {"summary": "Close a live session (finalises its recording)", "tags": _TAG,
                   "parameters": [_SESSION_ID],
                   "responses": {"204": {"description": "Closed"}, "404": _ERR}},
    },
    "/sessions/{id}/background": {"post": {
        "summary": "Change the background while live", "tags": _TAG, "parameters": [_SESSION_ID],
        "requestBody": {"required": True, "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/BackgroundSpec"}},
            "multipart/form-data": {"schema": {"type": "object", "required": ["image"], "properties": {
                "image": {"type": "string", "format": "binary", "description": "JPEG, PNG or WebP"}}}},
        }},
        "responses": {"200": _ok("Background in use", "BackgroundSpec"), "400": _ERR, "404": _ERR, "413": _ERR},
    }},
    "/sessions/{id}/recording": {"post": {
        "summary": "Start or stop recording (VP9 with alpha + Opus, WebM)", "tags": _TAG,
        "parameters": [_SESSION_ID],
        "requestBody": {"required": True, "content": _json("RecordingAction")},
        "responses": {"200": _ok("Recording state", "RecordingState"), "400": _ERR, "404": _ERR, "409": _ERR},
    }},
    "/sessions/{id}/snapshot": {"post": {
        "summary": "Cut-out (model auto: RVM for a person, else RMBG) of the latest full-resolution frame",
        "tags": _TAG,
        "parameters": [_SESSION_ID],
        "responses": {"200": {"description": "Transparent PNG",
                              "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}}},
                      "404": _ERR, "409": _ERR},
    }},
    "/recordings": {"get": {
        "summary": "Finished recordings, newest first", "tags": _TAG,
        "responses": {"200": _ok("Recordings", "RecordingList")},
    }},
    "/recordings/{name}": {"get": {
        "summary": "Download a recording", "tags": _TAG,
        "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
        "responses": {"200": {"description": "WebM file",
                              "content": {"video/webm": {"schema": {"type": "string", "format": "binary"}}}},
                      "404": _ERR, "416": _ERR},
    }},
}
