"""OpenAPI 3 description of the upload API (registered into /openapi.json)."""
from __future__ import annotations

from typing import Any

from server.jobs.files import ID_PATTERN
from server.jobs.params import BACKGROUND_PATTERN, BITRATE_PATTERN

_JSON_ERR = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _err(description: str, retry_after: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description, **_JSON_ERR}
    if retry_after:
        out["headers"] = {"Retry-After": {"description": "seconds to wait before retrying",
                                          "schema": {"type": "integer"}}}
    return out


def _query(name: str, schema: dict, description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


_URL = _query("url", {"type": "string", "format": "uri", "maxLength": 2048},
              "fetch the file from this http(s) URL instead of an upload (only hosts on "
              "ABRAR_URL_INPUT_ALLOWED_HOSTS; off by default; query only)")
_JOB_ID = {"name": "job_id", "in": "path", "required": True, "description": "the id returned on submission",
           "schema": {"type": "string", "pattern": ID_PATTERN}}
_JOB = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Job"}}}}
_SECURITY: list[dict[str, list[str]]] = [{}, {"ApiKey": []}]
_COMMON = {
    "400": _err("Invalid parameter, unknown parameter or malformed request"),
    "401": _err("Missing or wrong API key (only when the server requires one)"),
}
_BACKGROUND = {"type": "string", "pattern": BACKGROUND_PATTERN, "default": "transparent"}
_MODEL_OR_BUSY = _err("`queue_full`: too many images in progress (retry after Retry-After seconds); or "
                      "`model_unavailable`: the model's weights are not installed on the server (the message "
                      "names the file and where to put it)", retry_after=True)
IMAGE_OPTIONS = (
    ("model", {"type": "string", "enum": ["auto", "rvm", "rmbg"], "default": "auto"},
     "auto: RVM when the photo shows a person, else RMBG; rvm (people); rmbg (any salient object)"),
    ("format", {"type": "string", "enum": ["png", "webp", "jpeg", "mask"], "default": "png"},
     ("png or webp (transparent unless a background is given), jpeg (on white unless a background is given), "
      "mask (the 8-bit alpha as a grey PNG)")),
    ("background_type", _BACKGROUND, "transparent, green, blue, white, black, blur or #rrggbb"),
    ("foreground", {"type": "string", "enum": ["estimated", "original"], "default": "estimated"},
     "edge colours: estimated without the old background (no halo), or the photo's original pixels"),
    ("crop", {"type": "boolean", "default": False}, "crop to the subject's bounding box"),
    ("crop_margin", {"type": "integer", "minimum": 0, "maximum": 10000, "default": 0},
     "pixels kept around the subject when cropping"),
    ("max_size", {"type": "integer", "minimum": 1, "maximum": 16384},
     "longest side of the output in pixels (the image is scaled down first)"),
)
VIDEO_OPTIONS = (
    ("background_type", _BACKGROUND, "transparent, green, blue, white, black, blur or #rrggbb"),
    ("format", {"type": "string", "enum": ["webm", "mp4", "mov"]},
     "container; default webm when transparent, else mp4 (mp4 cannot be transparent)"),
    ("crf", {"type": "integer", "minimum": 0, "maximum": 63}, "quality, lower is better"),
    ("bitrate", {"type": "string", "pattern": BITRATE_PATTERN}, "target bitrate such as 2M (instead of crf)"),
    ("keep_audio", {"type": "boolean", "default": True}, "copy the source audio"),
    ("downsample_ratio", {"type": "number", "minimum": 0.05, "maximum": 1.0},
     "RVM internal scale (default: automatic)"),
)


def _upload_form(options: tuple, **files: str) -> dict[str, Any]:
    """The multipart body: ``file``, optional other files, and the options as form fields.
    Not required: ``url=`` may name the file instead."""
    properties = {"file": {"type": "string", "format": "binary"},
                  **{name: {"type": "string", "format": "binary", "description": text} for name, text in files.items()},
                  **{name: {**schema, "description": text} for name, schema, text in options}}
    return {"required": False, "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["file"], "additionalProperties": False, "properties": properties}}}}


# The video options as one form-exploded query object (?background_type=green&format=mp4 on
# the wire, as separate parameters would be), so that the schema can say which combinations
# the server refuses: mp4 cannot be transparent, and crf and bitrate exclude each other.
_VIDEO_OPTIONS = {
    "name": "options", "in": "query", "required": False, "style": "form", "explode": True,
    "description": "background_type: transparent, green, blue, white, black, blur or #rrggbb; "
                   "format: container, default webm when transparent, else mp4 (mp4 cannot be transparent); "
                   "crf: quality, lower is better; bitrate: target such as 2M (instead of crf); "
                   "keep_audio: copy the source audio; downsample_ratio: RVM internal scale (default: automatic); "
                   "url: fetch the video from this http(s) URL instead of an upload (only hosts on "
                   "ABRAR_URL_INPUT_ALLOWED_HOSTS; off by default); callback_url: POST a signed JSON event here "
                   "when the job completes, fails or is cancelled (only hosts on ABRAR_WEBHOOK_ALLOWED_HOSTS; "
                   "see the README)",
    "schema": {
        "type": "object", "additionalProperties": False,
        "properties": {
            "background_type": _BACKGROUND,
            "format": {"type": "string", "enum": ["webm", "mp4", "mov"]},
            "crf": {"type": "integer", "minimum": 0, "maximum": 63},
            "bitrate": {"type": "string", "pattern": BITRATE_PATTERN},
            "keep_audio": {"type": "boolean", "default": True},
            "downsample_ratio": {"type": "number", "minimum": 0.05, "maximum": 1.0},
            "url": _URL["schema"],
            "callback_url": {"type": "string", "format": "uri", "maxLength": 2048},
        },
        "not": {"anyOf": [
            {"required": ["crf", "bitrate"]},
            # mp4 with the default (transparent) background, or with transparent named
            {"required": ["format"], "properties": {"format": {"enum": ["mp4"]}},
             "not": {"required": ["background_type"]}},
            {"required": ["format", "background_type"],
             "properties": {"format": {"enum": ["mp4"]}, "background_type": {"enum": ["transparent"]}}},
        ]},
    },
}

PATHS: dict[str, Any] = {
    "/remove-bg": {"post": {
        "summary": "Cut the subject out of one image (RVM for people, RMBG for anything else)",
        "description": "Upload a JPEG, PNG or WebP in the multipart field `file`. Every option below can be "
                       "given as a query parameter or as a form field of the same name (not both); unknown "
                       "names are refused. Returns a PNG with an alpha channel by default; with "
                       "`background_type` or a `background_file` a composite; `format=mask` gives the alpha "
                       "as a grey PNG.",
        "tags": ["images"], "security": _SECURITY,
        "parameters": [*(_query(name, schema, text) for name, schema, text in IMAGE_OPTIONS), _URL],
        "requestBody": _upload_form(IMAGE_OPTIONS, background_file="an image to put behind the subject "
                                                                   "(cover-fitted)"),
        "responses": {
            "200": {"description": "The cut-out image",
                    "content": {media: {"schema": {"type": "string", "format": "binary"}}
                                for media in ("image/png", "image/webp", "image/jpeg")}},
            **_COMMON,
            "403": _err("url names a host off the allow-list, or url input is off on this server"),
            "413": _err("Upload or image dimensions over the limit"),
            "408": _err("The upload stalled (nothing arrived for ABRAR_READ_TIMEOUT_S)"),
            "415": _err("Not multipart/form-data, or a file is not a JPEG, PNG or WebP"),
            "422": _err("The url could not be fetched"),
            "503": _MODEL_OR_BUSY,
            "507": _err("The server's disk is full"),
        },
    }},
    "/remove-bg-video": {"post": {
        "summary": "Submit a video for background removal (RVM); runs as a job",
        "description": "Upload a video in the multipart field `file`; options as query parameters or form "
                       "fields of the same name. The job is queued and its status URL returned; poll it, then "
                       "download the result. Transparent output is VP9 WebM (or ProRes "
                       "4444 MOV) with alpha; colour backgrounds default to H.264 MP4.",
        "tags": ["jobs"], "security": _SECURITY,
        "parameters": [_VIDEO_OPTIONS],
        # The options may be form fields too (see the description); the schema lists them once, in
        # the query, where it can say which combinations the server refuses.
        "requestBody": _upload_form(()),
        "responses": {
            "202": {"description": "Queued", "headers": {"Location": {"schema": {"type": "string"},
                                                                     "description": "the status URL"}},
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/JobAccepted"}}}},
            **_COMMON,
            "403": _err("url or callback_url names a host off its allow-list, or that feature is off on this server"),
            "413": _err("Upload, resolution or duration over the limit"),
            "408": _err("The upload stalled (nothing arrived for ABRAR_READ_TIMEOUT_S)"),
            "415": _err("Not multipart/form-data, or the file is not a video with a video stream"),
            "422": _err("The url could not be fetched"),
            "503": _err("The job queue is full", retry_after=True),
            "507": _err("The server's disk is full"),
        },
    }},
    "/jobs": {"get": {
        "summary": "List jobs, newest first",
        "tags": ["jobs"], "security": _SECURITY,
        "parameters": [
            _query("limit", {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}, "page size"),
            _query("offset", {"type": "integer", "minimum": 0, "maximum": 1000000000, "default": 0},
                   "jobs to skip"),
            _query("status", {"type": "string", "enum": ["queued", "running", "completed", "failed", "cancelled"]},
                   "only jobs in this state"),
        ],
        "responses": {
            "200": {"description": "One page of jobs",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/JobList"}}}},
            **_COMMON,
        },
    }},
    "/jobs/{job_id}": {
        "get": {
            "summary": "Job status and progress",
            "tags": ["jobs"], "security": _SECURITY, "parameters": [_JOB_ID],
            "responses": {"200": {"description": "The job", **_JOB}, **_COMMON, "404": _err("No such job")},
        },
        "delete": {
            "summary": "Cancel a queued or running job, or delete a finished one with its files",
            "tags": ["jobs"], "security": _SECURITY, "parameters": [_JOB_ID],
            "responses": {
                "200": {"description": "A queued job, now cancelled", **_JOB},
                "202": {"description": "A running job, asked to stop (it turns cancelled shortly)", **_JOB},
                "204": {"description": "A finished job, deleted with its files"},
                **_COMMON, "404": _err("No such job"),
            },
        },
    },
    "/jobs/{job_id}/result": {"get": {
        "summary": "Download a completed job's video (supports Range requests)",
        "tags": ["jobs"], "security": _SECURITY,
        "parameters": [_JOB_ID, {"name": "Range", "in": "header", "required": False,
                                 "schema": {"type": "string"}, "description": "e.g. bytes=0-1023"}],
        "responses": {
            "200": {"description": "The video", "content": {
                t: {"schema": {"type": "string", "format": "binary"}}
                for t in ("video/webm", "video/mp4", "video/quicktime")}},
            "206": {"description": "Part of the video", "content": {
                t: {"schema": {"type": "string", "format": "binary"}}
                for t in ("video/webm", "video/mp4", "video/quicktime")}},
            **_COMMON,
            "404": _err("No such job"),
            "409": _err("The job is not completed (queued, running, failed or cancelled)"),
            "410": _err("The result expired and was deleted (code expired), or its file is missing "
                        "(code result_missing)"),
            "416": _err("Range not satisfiable (Content-Range: bytes */SIZE)"),
        },
    }},
}

_NUM = {"type": "number", "nullable": True}
_INT = {"type": "integer", "nullable": True}
_STR = {"type": "string", "nullable": True}
_TIME = {"type": "string", "format": "date-time", "nullable": True}

SCHEMAS: dict[str, Any] = {
    "Job": {
        "type": "object",
        "required": ["id", "status", "progress", "frames_done", "status_url", "result_url", "created_at"],
        "properties": {
            "id": {"type": "string", "pattern": ID_PATTERN},
            "status": {"type": "string", "enum": ["queued", "running", "completed", "failed", "cancelled"]},
            "progress": {"type": "number", "minimum": 0, "maximum": 100, "description": "percent"},
            "frames_done": {"type": "integer", "minimum": 0},
            "frames_total": _INT,
            "fps": {**_NUM, "description": "frames per second while running"},
            "eta_s": {**_NUM, "description": "estimated seconds left"},
            "error": {**_STR, "description": "why the job failed or was cancelled"},
            "filename": {"type": "string"},
            "options": {"type": "object"},
            "input": {"type": "object", "description": "what probing the upload found"},
            "created_at": {"type": "string", "format": "date-time"},
            "started_at": _TIME,
            "finished_at": _TIME,
            "expires_at": {**_TIME, "description": "when a finished job's files are deleted"},
            "expired": {"type": "boolean"},
            "restarts": {"type": "integer", "description": "server restarts that interrupted this job"},
            "result_bytes": _INT,
            "status_url": {"type": "string"},
            "result_url": {**_STR, "description": "set once completed, until the result expires"},
            "callback": {
                "type": "object", "nullable": True, "description": "the webhook, when callback_url was given",
                "properties": {
                    "url": {"type": "string"},
                    "state": {"type": "string", "enum": ["pending", "delivered", "failed"]},
                    "attempts": {"type": "array", "items": {"type": "object", "properties": {
                        "at": {"type": "string", "format": "date-time"}, "status_code": _INT,
                        "ok": {"type": "boolean"}, "error": _STR, "ms": {"type": "number"}}}},
                },
            },
        },
    },
    "JobAccepted": {"allOf": [{"$ref": "#/components/schemas/Job"},
                              {"type": "object", "required": ["job_id"],
                               "properties": {"job_id": {"type": "string", "pattern": ID_PATTERN}}}]},
    "JobList": {
        "type": "object",
        "required": ["jobs", "total", "limit", "offset", "next"],
        "properties": {
            "jobs": {"type": "array", "items": {"$ref": "#/components/schemas/Job"}},
            "total": {"type": "integer"},
            "limit": {"type": "integer"},
            "offset": {"type": "integer"},
            "next": {**_STR, "description": "URL of the next page, null on the last"},
        },
    },
}
