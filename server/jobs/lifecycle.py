"""Start-up and shutdown of the upload API: open the store, recover, run workers and expiry."""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from aiohttp import web

from server import openapi
from server.context import context
from server.jobs import images, routes, spec
from server.jobs.config import JobsConfig
from server.jobs.files import JobFiles
from server.jobs.metrics import JobMetrics
from server.jobs.state import JOBS, METRICS, JobsState
from server.jobs.store import JobRecords, JobStore
from server.jobs.url_input import UrlFetcher
from server.jobs.webhooks import Deliveries
from server.jobs.worker import JobRunner, expires_at
from server.lanes import heavy_pool

log = logging.getLogger(__name__)

DB_NAME = "jobs.sqlite3"


def install(app: web.Application) -> None:
    app[METRICS] = JobMetrics.create(context(app).metrics)
    app.router.add_post("/remove-bg", images.remove_bg)
    routes.add_routes(app)
    openapi.register(app, spec.PATHS, spec.SCHEMAS)
    app.cleanup_ctx.append(_lifecycle)


async def _lifecycle(app: web.Application):
    ctx = context(app)
    cfg = ctx.config.jobs
    metrics = app[METRICS]
    files, store = await asyncio.to_thread(_open, ctx.config.data_dir.resolve(), cfg, metrics, _records(app))
    db = ThreadPoolExecutor(1, thread_name_prefix="jobs-db")
    runner = JobRunner(store, files, ctx.runtime, cfg, metrics, db)
    webhooks = Deliveries(ctx.config.webhooks, store, db)
    runner.on_finished = webhooks.job_finished
    state = JobsState(config=cfg, files=files, store=store, runner=runner, metrics=metrics, db=db,
                      images=heavy_pool(cfg.image_workers, "remove-bg"),
                      webhooks=webhooks, url_inputs=UrlFetcher(ctx.config.url_input))
    app[JOBS] = state
    await webhooks.start()  # also resumes deliveries a restart interrupted
    await state.url_inputs.start()
    if ctx.cluster is not None:
        from server.cluster.jobs import follow_jobs

        follow_jobs(ctx.cluster, state)
    runner.start()
    ctx.readiness.add_check(runner.problems)
    cleanup = asyncio.create_task(_expire_loop(state), name="jobs-expiry")
    yield
    cleanup.cancel()
    await runner.stop()
    await webhooks.close()
    await state.url_inputs.close()
    state.images.shutdown(wait=False, cancel_futures=True)
    db.shutdown(wait=True)
    store.close()


def _records(app: web.Application) -> Callable[[Path, Callable[[dict[str, int]], None]], JobRecords]:
    """The store factory: SQLite in the data dir, or the cluster's PostgreSQL database."""
    ctx = context(app)
    if ctx.cluster is None:
        return lambda data_dir, on_change: JobStore(data_dir / DB_NAME, on_change=on_change)
    from server.cluster.jobs_store import PgJobStore

    url, node_id = ctx.cluster.database_url, ctx.cluster.id
    return lambda data_dir, on_change: PgJobStore(url, node_id, on_change=on_change)


def _open(data_dir: Path, cfg: JobsConfig, metrics: JobMetrics,
          records: Callable[[Path, Callable[[dict[str, int]], None]], JobRecords]) -> tuple[JobFiles, JobRecords]:
    """Open the store and resolve what the previous process left behind."""
    files = JobFiles(data_dir, cfg.min_free_bytes)
    files.prepare()
    store = records(data_dir, metrics.set_counts)
    for r in store.recover(cfg.on_restart, cfg.max_interruptions, expires_at(cfg)):
        job = store.get(r.job_id)
        assert job is not None  # recover() has just updated it
        files.remove_outputs(job.id, keep=job.input_name)  # half-written output
        if r.status == "failed":
            files.remove_file(job.id, job.input_name)
        log.warning("job %s was interrupted by a restart: %s", r.job_id,
                    "queued to run again" if r.status == "queued" else f"failed ({job.error})")
    for job in store.page(limit=10**9, offset=0, status="queued")[0]:
        if not files.file(job.id, job.input_name).is_file():
            store.fail_queued(job.id, "the uploaded video is missing from the data dir; submit it again",
                              expires_at(cfg))
    # Alone, nothing is in flight at start-up; in a cluster, other nodes' uploads are.
    removed = files.sweep(store.ids(), min_age_s=3600.0 if store.shared else 0)
    if removed:
        log.info("removed %d leftover files with no job record", removed)
    metrics.set_counts(store.counts())
    return files, store


async def _expire_loop(state: JobsState) -> None:
    """Delete the files of finished jobs past their TTL; the records stay, marked expired."""
    while True:
        try:
            expired = await state.call(_expire_once, state)
            if expired:
                log.info("expired %d job results", expired)
        except Exception:  # keep cleaning on the next round
            log.exception("result expiry failed")
        await asyncio.sleep(state.config.cleanup_interval_s)


def _expire_once(state: JobsState) -> int:
    jobs = state.store.expire_due(time.time())
    for job in jobs:
        state.files.remove_job(job.id)
    state.files.sweep(state.store.ids(), min_age_s=3600.0)
    return len(jobs)
