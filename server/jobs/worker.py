"""A bounded pool running video jobs in threads; the event loop only schedules them."""
from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field

from matting.runtime import MattingRuntime
from server.jobs.config import JobsConfig
from server.jobs.files import JobFiles
from server.jobs.metrics import JobMetrics
from server.jobs.store import Job, JobRecords

log = logging.getLogger(__name__)

# Progress is written to the database at most this often (and once at the end).
_PROGRESS_EVERY_S = 0.25
# Workers also look for work this often, in case a wake-up was missed.
_POLL_S = 5.0


@dataclass
class _Running:
    cancel: threading.Event = field(default_factory=threading.Event)
    # "user" (DELETE), "shutdown" (the server is stopping: put the job back in the queue)
    # or "lost" (another node took the job over: leave its records and files alone)
    reason: str = "user"


def expires_at(config: JobsConfig) -> float | None:
    return time.time() + config.result_ttl_s if config.result_ttl_s > 0 else None


class JobRunner:
    def __init__(self, store: JobRecords, files: JobFiles, runtime: MattingRuntime, config: JobsConfig,
                 metrics: JobMetrics, db: Executor):
        self.store = store
        self.files = files
        self.runtime = runtime
        self.config = config
        self.metrics = metrics
        self._db = db
        self._pool = ThreadPoolExecutor(max(1, config.workers), thread_name_prefix="video-job")
        self._running: dict[str, _Running] = {}
        # Cancels for jobs the database already shows running but whose worker has
        # not registered them yet (a DELETE racing the claim).
        self._early_cancels: set[str] = set()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._stopping = False

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._worker(), name=f"video-job-{i}")
                       for i in range(max(1, self.config.workers))]

    def wake(self) -> None:
        self._wake.set()

    def cancel(self, job_id: str) -> bool:
        """Ask a running job to stop; it turns 'cancelled' within a frame or so."""
        running = self._running.get(job_id)
        if running is None:
            self._early_cancels.add(job_id)
            return False
        running.reason = "user"
        running.cancel.set()
        return True

    def running_ids(self) -> list[str]:
        return list(self._running)

    def lost(self, job_id: str) -> None:
        """Stop a job another node took over (this one was taken for dead); its records are theirs now."""
        running = self._running.get(job_id)
        if running is not None:
            running.reason = "lost"
            running.cancel.set()

    async def stop(self, timeout: float = 30.0) -> None:
        """Stop cleanly: running jobs go back to the queue and run again after a restart."""
        self._stopping = True
        for running in self._running.values():
            running.reason = "shutdown"
            running.cancel.set()
        self._wake.set()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=timeout)
            for task in pending:
                task.cancel()
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _worker(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopping:
            self._wake.clear()
            try:
                job = await loop.run_in_executor(self._db, self.store.claim_next)
            except Exception:  # a database hiccup must not kill the worker
                log.exception("could not claim a job")
                job = None
            if job is None:
                try:
                    await asyncio.wait_for(self._wake.wait(), _POLL_S)
                except asyncio.TimeoutError:
                    pass
                continue
            running = _Running()
            self._running[job.id] = running
            if job.id in self._early_cancels:
                self._early_cancels.discard(job.id)
                running.cancel.set()
            if self._stopping:  # stop() ran between the claim and now
                running.reason = "shutdown"
                running.cancel.set()
            try:
                await loop.run_in_executor(self._pool, self._run, job, running)
            except Exception:  # a bug here must not leave the job 'running' forever
                log.exception("job %s crashed", job.id)
                try:
                    await loop.run_in_executor(self._db, functools.partial(
                        self.store.finish, job.id, "failed", expires_at=expires_at(self.config),
                        error="internal error while running the job; see the server log"))
                except Exception:  # noqa: BLE001 - e.g. the database is away; the worker must live on
                    log.exception("job %s: could not record its failure", job.id)
            finally:
                self._running.pop(job.id, None)

    # -- in a worker thread --------------------------------------------------------

    def _run(self, job: Job, running: _Running) -> None:
        from matting.compositing import parse_background
        from matting.video_file import VideoOptions, matte_video_file

        opts = job.options
        src = self.files.file(job.id, job.input_name)
        result_name = f"result.{opts['format']}"
        dst = self.files.file(job.id, result_name)
        progress = _ProgressWriter(self.store, self.metrics, job.id)
        log.info("job %s started (%s, %s)", job.id, job.filename, opts)
        try:
            if not src.exists():
                raise FileNotFoundError("the uploaded video is missing from the data dir")
            options = VideoOptions(
                background=parse_background(opts["background_type"]), crf=opts.get("crf"),
                bitrate=opts.get("bitrate"), keep_audio=opts.get("keep_audio", True),
                downsample_ratio=opts.get("downsample_ratio"))
            session = self.runtime.new_session(downsample_ratio=opts.get("downsample_ratio"))
            matte_video_file(src, dst, session, options, progress=progress, cancel=running.cancel)
        except Exception as exc:  # any failure becomes the job's error text
            if not running.cancel.is_set():
                dst.unlink(missing_ok=True)
                log.warning("job %s failed: %s", job.id, exc, exc_info=not isinstance(exc, ValueError))
                self._finish(job, "failed", error=_describe(exc), frames_done=progress.frames_done)
                return
        if running.cancel.is_set():
            if running.reason == "lost":  # the result file may be the new run's by now
                log.warning("job %s stopped: another node took it over", job.id)
                return
            dst.unlink(missing_ok=True)
            if running.reason == "shutdown":
                self.store.requeue(job.id)
                log.info("job %s put back in the queue (server stopping)", job.id)
            else:
                self._finish(job, "cancelled", error="cancelled by a DELETE request",
                             frames_done=progress.frames_done)
            return
        self._finish(job, "completed", result_name=result_name, result_bytes=dst.stat().st_size,
                     frames_done=progress.frames_done)
        log.info("job %s completed: %d frames at %.1f fps", job.id, progress.frames_done, progress.fps or 0)

    def _finish(self, job: Job, status: str, **kw) -> None:
        # The upload is only needed to run the job (again); the result stays until it expires.
        # A job that is no longer this run's (another node took it over) still needs its upload.
        if self.store.finish(job.id, status, expires_at=expires_at(self.config), **kw):
            self.files.remove_file(job.id, job.input_name)


def _describe(exc: Exception) -> str:
    if isinstance(exc, ValueError) and str(exc):  # VideoInputError and bad options carry user-facing text
        return str(exc)
    return f"processing failed ({type(exc).__name__}: {exc}); see the server log"


class _ProgressWriter:
    """The matting loop's progress callback: throttled writes, metrics per frame."""

    def __init__(self, store: JobRecords, metrics: JobMetrics, job_id: str):
        self.store = store
        self.metrics = metrics
        self.job_id = job_id
        self.frames_done = 0
        self.fps: float | None = None
        self._last_write = 0.0
        self._last_frame_t = time.perf_counter()

    def __call__(self, p) -> None:
        now = time.perf_counter()
        new = p.frames_done - self.frames_done
        if new > 0:
            self.metrics.frames.inc(new)
            per_frame = (now - self._last_frame_t) / new
            for _ in range(min(new, 100)):
                self.metrics.inference.labels(kind="video_frame").observe(per_frame)
            self._last_frame_t = now
        self.frames_done = p.frames_done
        self.fps = p.fps
        if now - self._last_write >= _PROGRESS_EVERY_S:
            self._last_write = now
            self.store.progress(self.job_id, p.frames_done, p.frames_total or None, p.fps, p.eta_s)
