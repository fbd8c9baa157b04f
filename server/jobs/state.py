"""What the upload API owns while the server runs, under its own app key."""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from server.errors import ApiError
from server.jobs.config import JobsConfig
from server.jobs.files import JobFiles
from server.jobs.metrics import JobMetrics
from server.jobs.store import JobRecords
from server.jobs.url_input import UrlFetcher
from server.jobs.webhooks import Deliveries
from server.jobs.worker import JobRunner


@dataclass
class JobsState:
    config: JobsConfig
    files: JobFiles
    store: JobRecords
    runner: JobRunner
    metrics: JobMetrics
    # One thread for the database, so its calls never run on the event loop.
    db: ThreadPoolExecutor
    # /remove-bg decoding and encoding (heavy lane); the cut-out itself runs in the RMBG
    # process (matting.cutout_process), so it never stalls a live stream.
    images: ThreadPoolExecutor
    webhooks: Deliveries
    url_inputs: UrlFetcher
    images_pending: int = 0
    tasks: list[asyncio.Task] = field(default_factory=list)

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a store method on the database thread."""
        return await asyncio.get_running_loop().run_in_executor(self.db, fn, *args)


JOBS = web.AppKey("abrar_jobs", JobsState)
METRICS = web.AppKey("abrar_jobs_metrics", JobMetrics)


def jobs_state(request: web.Request) -> JobsState:
    return request.app[JOBS]


def busy(message: str, retry_after_s: int) -> ApiError:
    """503 with Retry-After: a queue is full, the client should come back later."""
    return ApiError(503, message, code="queue_full", headers={"Retry-After": str(retry_after_s)},
                    retry_after_s=retry_after_s)
