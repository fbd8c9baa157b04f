"""Video job endpoints: submit, list, status, download, cancel/delete."""
from __future__ import annotations

import asyncio
import math
import time
from dataclasses import replace

from aiohttp import web

from server.downloads import file_response
from server.errors import ApiError
from server.jobs import params
from server.jobs.files import check_id, new_id
from server.jobs.images import safe_stem, sniff_image
from server.jobs.state import JobsState, busy, jobs_state
from server.jobs.store import Job
from server.jobs.uploads import FIELD, Upload, receive_form
from server.jobs.url_input import receive_input
from server.jobs.views import job_json
from server.jobs.webhooks import new_callback
from server.jobs.worker import expires_at

FORMATS = {"webm": "video/webm", "mp4": "video/mp4", "mov": "video/quicktime"}
ALPHA_FORMATS = ("webm", "mov")

VIDEO_PARAMS = (
    params.Param("background_type", params.background, "transparent"),
    params.Param("format", params.choice(*FORMATS)),
    params.Param("crf", params.integer(0, 63)),
    params.Param("bitrate", params.bitrate),
    params.Param("keep_audio", params.boolean, True),
    params.Param("downsample_ratio", params.number(0.05, 1.0)),
    params.Param("callback_url", str),
    params.Param("url", str),
)
LIST_PARAMS = (
    params.Param("limit", params.integer(1, 100), 20),
    params.Param("offset", params.integer(0, 10**9), 0),
    params.Param("status", params.choice("queued", "running", "completed", "failed", "cancelled")),
)


async def submit_video(request: web.Request) -> web.Response:
    state = jobs_state(request)
    cfg = state.config
    # Refuse before reading a large body; store.add checks again, atomically.
    if (await state.call(state.store.counts))["queued"] >= cfg.queue_size:
        raise _queue_full(state)
    source_url = request.query.get("url")
    if source_url is None:
        form = await receive_form(request, {FIELD: state.files.new_upload()}, cfg.max_upload_bytes,
                                  [p.name for p in VIDEO_PARAMS if p.name != "url"])
        upload, fields = form.files[FIELD], form.fields
    else:
        upload = await receive_input(request, state.url_inputs, source_url, state.files.new_upload(),
                                     cfg.max_upload_bytes)
        fields = {}
    job_id = new_id()
    try:
        options = _video_options(params.parse_options(request, VIDEO_PARAMS, fields))
        callback_url = options.pop("callback_url")
        del options["url"]
        callback = None if callback_url is None else new_callback(state.webhooks.policy, callback_url)
        media = await _probe(upload, cfg)
        state.files.adopt(job_id, upload.path, "input")
        job = Job(id=job_id, status="queued", created_at=time.time(), filename=upload.filename,
                  input_name="input", options=options, media=media, frames_total=media.get("frames") or None,
                  callback=callback)
        if not await state.call(state.store.add, job, cfg.queue_size):
            raise _queue_full(state)
    except BaseException:
        upload.discard()
        state.files.remove_job(job_id)
        raise
    state.runner.wake()
    body = job_json(job)
    return web.json_response({"job_id": job_id, **body}, status=202, headers={"Location": body["status_url"]})


def _video_options(q: dict) -> dict:
    transparent = q["background_type"] == "transparent"
    fmt = q["format"] or ("webm" if transparent else "mp4")
    if transparent and fmt not in ALPHA_FORMATS:
        raise ApiError(400, f"{fmt} cannot hold transparency: use format=webm or format=mov, "
                            "or pick a background_type colour", code="invalid_parameter")
    if q["crf"] is not None and q["bitrate"] is not None:
        raise ApiError(400, "give crf or bitrate, not both", code="invalid_parameter")
    return {**q, "format": fmt}


async def _probe(upload: Upload, cfg) -> dict:
    from matting.video_file import VideoInputError, probe_video

    if sniff_image(upload.head()) is not None:
        raise ApiError(415, "this is a still image, not a video: use POST /remove-bg for images")
    try:
        # Limits are checked below, so that they answer 413 rather than 400.
        info = await asyncio.get_running_loop().run_in_executor(
            None, lambda: probe_video(upload.path, max_pixels=2**62, max_duration=math.inf))
    except VideoInputError as exc:
        raise ApiError(415, f"cannot use this file as a video: {exc}") from None
    pixels = info.width * info.height
    if pixels > cfg.max_video_pixels:
        raise ApiError(413, f"video is {info.width}x{info.height} = {pixels} pixels per frame, "
                            f"over the limit of {cfg.max_video_pixels}")
    if info.duration and info.duration > cfg.max_video_seconds:
        raise ApiError(413, f"video lasts {info.duration:.1f} s, over the limit of {cfg.max_video_seconds:g} s")
    if info.frames > cfg.max_video_frames:
        raise ApiError(413, f"video has {info.frames} frames, over the limit of {cfg.max_video_frames}")
    return {"width": info.width, "height": info.height, "fps": info.fps, "frames": info.frames,
            "duration": info.duration, "has_audio": info.has_audio, "codec": info.codec,
            "bytes": upload.size}


def _queue_full(state: JobsState) -> ApiError:
    state.metrics.rejected.labels(queue="jobs").inc()
    return busy(f"the job queue is full ({state.config.queue_size} waiting); retry later", retry_after_s=30)


async def list_jobs(request: web.Request) -> web.Response:
    q = params.parse_query(request, LIST_PARAMS)
    state = jobs_state(request)
    jobs, total = await state.call(state.store.page, q["limit"], q["offset"], q["status"])
    nxt = q["offset"] + len(jobs)
    next_url = None
    if nxt < total:
        next_url = f"/jobs?limit={q['limit']}&offset={nxt}" + (f"&status={q['status']}" if q["status"] else "")
    return web.json_response({"jobs": [job_json(_result_checked(state, j)) for j in jobs], "total": total,
                              "limit": q["limit"], "offset": q["offset"], "next": next_url})


async def _get_job(request: web.Request) -> tuple[JobsState, Job]:
    params.parse_query(request, ())
    job_id = check_id(request.match_info["job_id"])
    state = jobs_state(request)
    job = await state.call(state.store.get, job_id)
    if job is None:
        raise ApiError(404, f"no job with id {job_id}")
    return state, job


_RESULT_MISSING = "the result file is missing from the server (deleted or lost); submit the video again"


def _result_checked(state: JobsState, job: Job) -> Job:
    """A completed job whose result file has gone (deleted by hand, a lost disk) says so."""
    if job.status != "completed" or job.expired or not job.result_name:
        return job
    if state.files.file(job.id, job.result_name).is_file():
        return job
    return replace(job, expired=True, error=_RESULT_MISSING)


async def get_job(request: web.Request) -> web.Response:
    state, job = await _get_job(request)
    return web.json_response(job_json(_result_checked(state, job)))


async def get_result(request: web.Request) -> web.StreamResponse:
    state, job = await _get_job(request)
    if job.status in ("queued", "running"):
        raise ApiError(409, f"job is {job.status}; poll {job_json(job)['status_url']} until it is completed",
                       code="not_ready")
    if job.status != "completed":
        raise ApiError(409, f"job {job.status}, it has no result" + (f": {job.error}" if job.error else ""),
                       code=f"job_{job.status}")
    path = state.files.file(job.id, job.result_name) if job.result_name else None
    if job.expired or (job.expires_at is not None and job.expires_at <= time.time()):
        raise ApiError(410, "the result has expired and was deleted; submit the video again", code="expired")
    if path is None or not path.is_file():
        raise ApiError(410, _RESULT_MISSING, code="result_missing")
    fmt = job.options["format"]
    name = f"{safe_stem(job.filename)}-{job.options['background_type'].lstrip('#')}.{fmt}"
    return file_response(request, path, {
        "Content-Type": FORMATS[fmt],
        "Content-Disposition": f'attachment; filename="{name}"',
    })


async def delete_job(request: web.Request) -> web.Response:
    """Queued: cancelled. Running: asked to stop (202). Finished: deleted with its files (204)."""
    state, job = await _get_job(request)
    if job.status == "queued":
        if await state.call(state.store.cancel_queued, job.id, expires_at(state.config)):
            state.files.remove_file(job.id, job.input_name)
            state.webhooks.job_finished(job.id)
            return web.json_response(job_json(await state.call(state.store.get, job.id)))
        job = await state.call(state.store.get, job.id)  # it started meanwhile
    if job is not None and job.status == "running":
        if not state.runner.cancel(job.id):  # running on another node, or not registered yet
            await state.call(state.store.request_cancel, job.id)
        return web.json_response(job_json(job), status=202)
    if job is not None:
        await state.call(state.store.delete, job.id)
        state.files.remove_job(job.id)
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/remove-bg-video", submit_video)
    app.router.add_get("/jobs", list_jobs)
    app.router.add_get("/jobs/{job_id}", get_job)
    app.router.add_get("/jobs/{job_id}/result", get_result)
    app.router.add_delete("/jobs/{job_id}", delete_job)
