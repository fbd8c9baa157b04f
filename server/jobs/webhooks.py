"""Job webhooks: one signed JSON event per finished job, POSTed to its callback_url.

The body is the same on every attempt; each attempt carries its send time, and the
signature covers both, so a receiver can verify the sender and reject replays:

    X-Abrar-Timestamp: 1767225600
    X-Abrar-Signature: sha256=hex(HMAC-SHA256(secret, b"1767225600." + body))

Attempts are retried with doubling delays, up to a number of attempts and a time
bound, and are stored on the job (GET /jobs/{id} shows them), so a restart resumes
a delivery instead of losing or repeating it. A 2xx answer delivers; a redirect is
an error (never followed), as is any other status. Targets are checked by
:mod:`server.outbound` (allow-list, no private addresses unless listed).
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

import aiohttp

from server.errors import ApiError
from server.jobs.store import Job, JobRecords
from server.jobs.views import job_json
from server.jobs.webhook_config import WebhooksConfig
from server.outbound import OutboundPolicy, client_session
from server.streams.urls import HostNotAllowed, UrlError

log = logging.getLogger(__name__)

TIMESTAMP_HEADER = "X-Abrar-Timestamp"
SIGNATURE_HEADER = "X-Abrar-Signature"
EVENT_HEADER = "X-Abrar-Event"

def sign(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def event_body(job: Job) -> bytes:
    view = job_json(job)
    event = {"event": f"job.{job.status}", "job_id": job.id, "status": job.status, "error": job.error,
             "status_url": view["status_url"], "result_url": view["result_url"], "finished_at": view["finished_at"]}
    return json.dumps(event, separators=(",", ":")).encode()


def new_callback(policy: OutboundPolicy, url: str) -> dict[str, Any]:
    """The job's callback record for ``url``; a clear 4xx if callbacks cannot go there."""
    if not policy.enabled:
        raise ApiError(403, "callbacks are off on this server: set ABRAR_WEBHOOK_ALLOWED_HOSTS (and "
                            "ABRAR_WEBHOOK_SECRET) to allow callback_url", code="feature_disabled")
    try:
        target = policy.check_url(url)
    except HostNotAllowed as exc:
        raise ApiError(403, f"callback_url: {exc}", code="host_not_allowed") from None
    except UrlError as exc:
        raise ApiError(400, f"callback_url: {exc}", code="invalid_parameter") from None
    return {"url": str(target.url), "state": "pending", "attempts": []}


class Deliveries:
    """Sends each finished job's event once it finishes; lives on the event loop."""

    def __init__(self, config: WebhooksConfig, store: JobRecords, db: Executor):
        self.config = config
        self.policy = OutboundPolicy.parse(config.allowed_hosts, "callback hosts")
        self._store = store
        self._db = db
        self._http: aiohttp.ClientSession | None = None
        self._active: dict[str, asyncio.Task] = {}

    async def start(self) -> None:
        """Open the client and resume deliveries a restart interrupted."""
        if not self.policy.enabled:
            return
        self._http = client_session(self.policy, self.config.timeout_s)
        for job_id in await self._call(self._store.pending_callbacks):
            self.job_finished(job_id)

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """A store method, on the database thread."""
        return await asyncio.get_running_loop().run_in_executor(self._db, fn, *args)

    async def close(self) -> None:
        for task in list(self._active.values()):
            task.cancel()
        await asyncio.gather(*self._active.values(), return_exceptions=True)
        if self._http is not None:
            await self._http.close()

    def job_finished(self, job_id: str) -> None:
        """Deliver ``job_id``'s event if it has a pending callback; at most one delivery per job runs."""
        if self._http is None or job_id in self._active:
            return
        task = asyncio.create_task(self._deliver(job_id), name=f"webhook-{job_id}")
        self._active[job_id] = task
        task.add_done_callback(lambda _: self._active.pop(job_id, None))

    async def _deliver(self, job_id: str) -> None:
        job = await self._call(self._store.get, job_id)
        if job is None or not job.finished or job.callback is None or job.callback.get("state") != "pending":
            return
        callback = dict(job.callback)
        body = event_body(job)
        delay = self.config.backoff_s
        give_up_at = time.monotonic() + self.config.retry_for_s
        while True:
            attempt = await self._attempt(callback["url"], body, job.status)
            callback["attempts"] = [*callback["attempts"], attempt]
            if attempt["ok"]:
                callback["state"] = "delivered"
            elif len(callback["attempts"]) >= self.config.max_attempts or time.monotonic() + delay > give_up_at:
                callback["state"] = "failed"
            await self._call(self._store.set_callback, job_id, callback)
            if callback["state"] != "pending":
                log.info("job %s: callback %s after %d attempt(s)", job_id, callback["state"],
                         len(callback["attempts"]))
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.config.max_backoff_s)

    async def _attempt(self, url: str, body: bytes, status: str) -> dict[str, Any]:
        assert self._http is not None and self.config.secret is not None
        timestamp = int(time.time())
        headers = {"Content-Type": "application/json", TIMESTAMP_HEADER: str(timestamp),
                   SIGNATURE_HEADER: sign(self.config.secret, timestamp, body), EVENT_HEADER: f"job.{status}"}
        started = time.monotonic()
        code: int | None = None
        error: str | None = None
        try:
            async with self._http.post(url, data=body, headers=headers, allow_redirects=False) as resp:
                code = resp.status
                await resp.read()
            if 300 <= code < 400:
                error = "redirects are not followed; give the final URL as callback_url"
            elif not 200 <= code < 300:
                error = f"the receiver answered {code}"
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            error = str(exc) or type(exc).__name__
        return {"at": time.time(), "status_code": code, "ok": error is None, "error": error,
                "ms": round((time.monotonic() - started) * 1000.0, 1)}
