"""OpenAPI paths and schemas of the RTSP stream API."""
from __future__ import annotations

from server.live import spec as live_spec
from server.live.backgrounds import CLIENT_SPECS

_ERR = {"$ref": "#/components/responses/Error"}
_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"},
       "description": "stream id from POST /streams"}
_TIME = {"type": "string", "format": "date-time", "nullable": True}
# What the server accepts, written conservatively (the server takes a little more,
# e.g. upper case, IPv6 literals); server.streams.urls has the full rules.
_LABEL = "[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
URL_PATTERN = (r"^rtsps?://([A-Za-z0-9._~%!$&'()*+,;=:-]+@)?" + _LABEL + r"(\." + _LABEL + r")*"
               r"(:[1-9][0-9]{0,3})?(/[A-Za-z0-9._~%!$&'()*+,;=:@/?-]*)?$")
BACKGROUND_PATTERN = r"^(transparent|green|blue|white|black|#[0-9a-f]{6}|blur(:([1-9][0-9]?|100))?)$"


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(name: str) -> dict:
    return {"application/json": {"schema": _ref(name)}}


SCHEMAS = {
    "StreamCreate": {
        "type": "object", "required": ["url"], "additionalProperties": False,
        "properties": {
            "url": {"type": "string", "maxLength": 2048, "pattern": URL_PATTERN,
                    "example": "rtsp://user:pass@camera.local:554/stream1",
                    "description": "rtsp:// or rtsps:// only. Credentials are used to connect and never "
                                   "shown again (responses and logs show ***@)."},
            "background": {"type": "string", "pattern": BACKGROUND_PATTERN,
                           "description": f"{CLIENT_SPECS} (default: server setting)"},
            "record": {"type": "boolean", "default": False,
                       "description": "record VP9-alpha WebM, a new segment per camera connection and every "
                                      "ABRAR_STREAMS_SEGMENT seconds"},
            "require_online": {"type": "boolean", "default": False,
                               "description": "answer 422 instead of retrying in the background when the "
                                              "camera cannot be reached now"},
        },
    },
    "StreamGap": {
        "type": "object",
        "properties": {"started_at": _TIME, "ended_at": _TIME, "seconds": {"type": "number"},
                       "reason": {"type": "string"}, "ongoing": {"type": "boolean"}},
    },
    "StreamRecordingFile": {
        "type": "object", "properties": {"name": {"type": "string"}, "url": {"type": "string"}},
    },
    "Stream": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "url": {"type": "string", "description": "the camera URL with credentials redacted"},
            "state": {"type": "string", "enum": ["connecting", "live", "reconnecting", "stopped"]},
            "background": {"type": "string"}, "record": {"type": "boolean"},
            "created_at": _TIME, "connected_at": _TIME, "last_frame_at": _TIME,
            "last_frame_age_s": {"type": "number", "nullable": True},
            "fps_in": {"type": "number", "description": "frames per second decoded from the camera"},
            "fps_out": {"type": "number", "description": "frames per second matted"},
            "latency_ms": {"type": "object", "properties": {
                "p50": {"type": "number", "nullable": True}, "p95": {"type": "number", "nullable": True}}},
            "frames_in": {"type": "integer"}, "frames_out": {"type": "integer"},
            "frames_dropped": {"type": "integer", "description": "decoded frames skipped because matting was busy"},
            "frames_idle": {"type": "integer",
                            "description": "decoded frames not matted because nobody watched or recorded"},
            "matting": {"type": "boolean", "description": "frames are being matted now: a viewer, a recording, "
                                                          "or ABRAR_STREAMS_MATTE=always"},
            "decode_errors": {"type": "integer"}, "process_errors": {"type": "integer"},
            "reconnects": {"type": "integer", "description": "times the camera came back after a loss"},
            "reconnect_attempt": {"type": "integer", "description": "failed attempts in a row (0 while live)"},
            "next_retry_at": _TIME,
            "last_error": {"type": "object", "nullable": True,
                           "properties": {"message": {"type": "string"}, "at": _TIME}},
            "gap_count": {"type": "integer"}, "gap_seconds_total": {"type": "number"},
            "gaps": {"type": "array", "items": _ref("StreamGap"), "description": "the newest 20 gaps"},
            "source": {"type": "object", "nullable": True, "properties": {
                "video_codec": {"type": "string"}, "width": {"type": "integer"}, "height": {"type": "integer"},
                "audio_codec": {"type": "string", "nullable": True},
                "audio_rate": {"type": "integer", "nullable": True}}},
            "viewers": {"type": "integer"},
            "recording": {"type": "string", "nullable": True, "description": "segment being written"},
            "recordings": {"type": "array", "items": _ref("StreamRecordingFile"),
                           "description": "finished segments, oldest first (download from /recordings/{name})"},
            "node": {"type": "string", "description": "the node running the stream (GET /nodes)"},
        },
    },
    "StreamList": {
        "type": "object",
        "description": "every node's streams; with ?scope=node only those of the node answering",
        "properties": {"streams": {"type": "array", "items": _ref("Stream")},
                       "limit": {"type": "integer", "description": "streams per node"},
                       "capacity": _ref("LiveCapacity")},
    },
    "StreamOffer": {
        "type": "object", "required": ["sdp", "type"],
        "properties": {"sdp": {"type": "string", "minLength": 1,
                               "description": "SDP offer receiving video (and optionally audio), "
                                              "with its ICE candidates (no trickle)"},
                       "type": {"type": "string", "enum": ["offer"]}},
    },
    "StreamAnswer": {
        "type": "object", "required": ["sdp", "type", "stream_id"],
        "properties": {"sdp": {"type": "string"}, "type": {"type": "string", "enum": ["answer"]},
                       "stream_id": {"type": "string"}},
    },
    "StreamRecordingState": {
        "type": "object",
        "properties": {"record": {"type": "boolean"},
                       "recording": {"nullable": True, "allOf": [_ref("StreamRecordingFile")]},
                       "recordings": {"type": "array", "items": _ref("StreamRecordingFile")}},
    },
    "BackgroundSpec": live_spec.SCHEMAS["BackgroundSpec"],
    "RecordingAction": live_spec.SCHEMAS["RecordingAction"],
}

_TAG = ["streams"]

PATHS = {
    "/streams": {
        "post": {
            "summary": "Start matting an RTSP camera", "tags": _TAG,
            "description": "Connects over RTSP (TCP by default) and keeps reconnecting with exponential backoff "
                           "when the camera is down or drops. A camera that is down at creation is accepted "
                           "and shown as `reconnecting` with its error, unless `require_online` is set.",
            "requestBody": {"required": True, "content": _json("StreamCreate")},
            "responses": {"201": {"description": "Stream created", "content": _json("Stream")},
                          "400": _ERR, "403": _ERR, "422": _ERR,
                          "503": {"description": "at live capacity (body: the capacity, Retry-After set) or at "
                                                 "ABRAR_STREAMS_MAX",
                                  "content": _json("CapacityError")}},
        },
        "get": {
            "summary": "List the streams of every node", "tags": _TAG,
            "parameters": [{"name": "scope", "in": "query", "required": False,
                            "schema": {"type": "string", "enum": ["node"]},
                            "description": "node: only the streams of the node answering"}],
            "responses": {"200": {"description": "All streams", "content": _json("StreamList")}},
        },
    },
    "/streams/{id}": {
        "parameters": [_ID],
        "get": {"summary": "Stream state, rates, errors, reconnects and gaps", "tags": _TAG,
                "responses": {"200": {"description": "The stream", "content": _json("Stream")}, "404": _ERR}},
        "delete": {"summary": "Stop a stream (finalises its recording)", "tags": _TAG,
                   "responses": {"200": {"description": "Its final state", "content": _json("Stream")},
                                 "404": _ERR}},
    },
    "/streams/{id}/offer": {
        "parameters": [_ID],
        "post": {
            "summary": "Watch a stream over WebRTC", "tags": _TAG,
            "description": "Every viewer shares the stream's single ingest and inference.",
            "requestBody": {"required": True, "content": _json("StreamOffer")},
            "responses": {"200": {"description": "SDP answer", "content": _json("StreamAnswer")},
                          "400": _ERR, "404": _ERR, "413": _ERR, "503": _ERR},
        },
    },
    "/streams/{id}/background": {
        "parameters": [_ID],
        "post": {
            "summary": "Change the background", "tags": _TAG,
            "requestBody": {"required": True, "content": {
                **_json("BackgroundSpec"),
                "multipart/form-data": {"schema": {"type": "object", "required": ["image"], "properties": {
                    "image": {"type": "string", "format": "binary"}}}}}},
            "responses": {"200": {"description": "Background set", "content": {"application/json": {
                "schema": {"type": "object", "properties": {"background": {"type": "string"}}}}}},
                "400": _ERR, "404": _ERR, "413": _ERR},
        },
    },
    "/streams/{id}/recording": {
        "parameters": [_ID],
        "post": {
            "summary": "Start or stop recording", "tags": _TAG,
            "requestBody": {"required": True, "content": _json("RecordingAction")},
            "responses": {"200": {"description": "Recording state", "content": _json("StreamRecordingState")},
                          "400": _ERR, "404": _ERR},
        },
    },
    "/streams/{id}/snapshot": {
        "parameters": [_ID],
        "post": {
            "summary": "Cut-out (model auto) of the latest frame (RGBA PNG)", "tags": _TAG,
            "responses": {"200": {"description": "PNG", "content": {"image/png": {
                "schema": {"type": "string", "format": "binary"}}}}, "404": _ERR, "409": _ERR},
        },
    },
}
