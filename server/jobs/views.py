"""The JSON a client sees for a job."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from server.jobs.store import Job
from server.streams.urls import redact


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, timezone.utc).isoformat().replace("+00:00", "Z")


def progress_percent(job: Job) -> float:
    if job.status == "completed":
        return 100.0
    if not job.frames_total:
        return 0.0
    return round(min(100.0, 100.0 * job.frames_done / job.frames_total), 1)


def callback_json(callback: dict[str, Any] | None) -> dict[str, Any] | None:
    """The webhook's state and attempts; credential-like query values of its URL hidden."""
    if callback is None:
        return None
    attempts = [{**a, "at": _iso(a["at"])} for a in callback["attempts"]]
    return {"url": redact(callback["url"]), "state": callback["state"], "attempts": attempts}


def job_json(job: Job) -> dict[str, Any]:
    base = f"/jobs/{job.id}"
    downloadable = job.status == "completed" and not job.expired
    return {
        "id": job.id,
        "status": job.status,
        "progress": progress_percent(job),
        "frames_done": job.frames_done,
        "frames_total": job.frames_total,
        "fps": None if job.fps is None else round(job.fps, 2),
        "eta_s": None if job.eta_s is None or job.status != "running" else round(job.eta_s, 1),
        "error": job.error,
        "filename": job.filename,
        "options": job.options,
        "input": job.media,
        "created_at": _iso(job.created_at),
        "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at),
        "expires_at": _iso(job.expires_at),
        "expired": job.expired,
        "restarts": job.interruptions,
        "result_bytes": job.result_bytes if downloadable else None,
        "status_url": base,
        "result_url": f"{base}/result" if downloadable else None,
        "callback": callback_json(job.callback),
    }
