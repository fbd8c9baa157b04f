"""A bounded pool running video jobs in threads; the event loop only schedules them."""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from matting.runtime import MattingRuntime
from server.disk import is_disk_full
from server.jobs.config import JobsConfig
from server.jobs.files import JobFiles
from server.jobs.metrics import JobMetrics
from server.jobs.store import Job, JobRecords

log = logging.getLogger(__name__)

# Progress is written to the database at most this often (and once at the end).
_PROGRESS_EVERY_S = 0.25
# Workers also look for work this often, in case a wake-up was missed.
_POLL_S = 5.0
# A finished job whose record cannot be written (a full disk) is retried this often.
_RETRY_SAVE_S = 2.0


@dataclass(frozen=True)
class _Outcome:
    status: str  # completed, failed, cancelled, requeue (the server is stopping) or lost (taken over)
    fields: dict[str, Any]  # JobStore.finish keywords


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
        # threads that wait for the jobs' child processes (matting.video_process)
        self._pool = ThreadPoolExecutor(max(1, config.workers), thread_name_prefix="video-job")
        self._running: dict[str, _Running] = {}
        # Cancels for jobs the database already shows running but whose worker has
        # not registered them yet (a DELETE racing the claim).
        self._early_cancels: set[str] = set()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._stopping = False
        # Why the last finished job could not be recorded (None once it was).
        self._unsaved: str | None = None
        # Told each job id whose run ended (it may have been put back in the queue).
        self.on_finished: Callable[[str], None] | None = None

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

    def problems(self) -> list[str]:
        """What keeps jobs from running now, for /healthz and /readyz (empty when all is well)."""
        if self._stopping:
            return []
        found = [f"video-job worker {t.get_name()} died" for t in self._tasks if t.done()]
        if self.files.disk_full():
            found.append(f"disk full: under {self.config.min_free_mb:g} MiB free in the data dir; "
                         "queued jobs wait and uploads get 507")
        if self._unsaved is not None:
            found.append(f"a finished job could not be recorded ({self._unsaved}); retrying")
        return found

    async def _worker(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopping:
            self._wake.clear()
            job = None
            if not self.files.disk_full():  # a job started now would only fail
                try:
                    job = await loop.run_in_executor(self._db, self.store.claim_next)
                except Exception:  # a database hiccup must not kill the worker
                    log.exception("could not claim a job")
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
                outcome = await loop.run_in_executor(self._pool, self._run, job, running)
            except Exception:  # a bug here must not leave the job 'running' forever
                log.exception("job %s crashed", job.id)
                outcome = _Outcome("failed", {"error": "internal error while running the job; see the server log"})
            try:
                await self._save(job, outcome)
            finally:
                self._running.pop(job.id, None)
                if self.on_finished is not None:
                    self.on_finished(job.id)

    async def _save(self, job: Job, outcome: _Outcome) -> None:
        """Record how the job ended, retrying while the database cannot be written
        (a full disk): the job must not stay 'running' and the worker must go on."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                await loop.run_in_executor(self._db, self._record, job, outcome)
                self._unsaved = None
                return
            except Exception as exc:  # noqa: BLE001 - any failure: retry, never die
                if self._unsaved is None:
                    log.error("could not record job %s as %s: %s; retrying every %.0f s",
                              job.id, outcome.status, exc, _RETRY_SAVE_S)
                self._unsaved = "disk full" if is_disk_full(exc) else type(exc).__name__
                if self._stopping:  # the next start-up recovers a job left 'running'
                    return
                await asyncio.sleep(_RETRY_SAVE_S)

    def _record(self, job: Job, outcome: _Outcome) -> None:
        if outcome.status == "lost":  # another node runs it now and records it
            return
        if outcome.status == "requeue":
            self.store.requeue(job.id)
            return
        # The upload is only needed to run the job (again); the result stays until it expires.
        # A job that is no longer this run's (another node took it over) still needs its upload.
        if self.store.finish(job.id, outcome.status, expires_at=expires_at(self.config), **outcome.fields):
            self.files.remove_file(job.id, job.input_name)

    # -- in a worker thread --------------------------------------------------------

    def _run(self, job: Job, running: _Running) -> _Outcome:
        """Matte the job's video; returns how it ended, which the event loop records."""
        from matting.compositing import parse_background
        from matting.video_file import VideoLimits, VideoOptions
        from matting.video_process import matte_video_file_in_process

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
            limits = VideoLimits(max_pixels=self.config.max_video_pixels, max_seconds=self.config.max_video_seconds,
                                 max_frames=self.config.max_video_frames)
            # in a child process: the job never shares the GIL or the priority of live frames
            matte_video_file_in_process(self.runtime.config, self.runtime.heavy_threads, src, dst, options,
                                        limits=limits, progress=progress, cancel=running.cancel)
        except Exception as exc:  # any failure becomes the job's error text
            if not running.cancel.is_set():
                dst.unlink(missing_ok=True)
                log.warning("job %s failed: %s", job.id, exc,
                            exc_info=not isinstance(exc, ValueError) and not is_disk_full(exc))
                return _Outcome("failed", {"error": _describe(exc, progress.frames_done),
                                           "frames_done": progress.frames_done})
        if running.cancel.is_set():
            if running.reason == "lost":  # the result file may be the new run's by now
                log.warning("job %s stopped: another node took it over", job.id)
                return _Outcome("lost", {})
            dst.unlink(missing_ok=True)
            if running.reason == "shutdown":
                log.info("job %s put back in the queue (server stopping)", job.id)
                return _Outcome("requeue", {})
            return _Outcome("cancelled", {"error": "cancelled by a DELETE request",
                                          "frames_done": progress.frames_done})
        log.info("job %s completed: %d frames at %.1f fps", job.id, progress.frames_done, progress.fps or 0)
        return _Outcome("completed", {"result_name": result_name, "result_bytes": dst.stat().st_size,
                                      "frames_done": progress.frames_done})


def _describe(exc: Exception, frames_done: int) -> str:
    if is_disk_full(exc):
        return (f"the server's disk is full: the job stopped after {frames_done} frames; "
                "submit the video again once space has been freed")
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
