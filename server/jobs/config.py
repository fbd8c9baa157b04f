"""Settings for server.jobs (env vars and `abrar serve` flags)."""
from __future__ import annotations

from dataclasses import dataclass

from server.settings import setting


@dataclass(frozen=True)
class JobsConfig:
    max_upload_mb: float = setting(500.0, "ABRAR_MAX_UPLOAD_MB", "largest accepted upload in MiB (413 above it)")
    max_image_pixels: int = setting(40_000_000, "ABRAR_MAX_IMAGE_PIXELS",
                                    "largest image accepted by /remove-bg and as a session or stream background, "
                                    "in pixels (decompression-bomb guard, checked from the header)")
    max_video_pixels: int = setting(3840 * 2160, "ABRAR_MAX_VIDEO_PIXELS",
                                    "largest video frame accepted, width x height in pixels")
    max_video_seconds: float = setting(600.0, "ABRAR_MAX_VIDEO_SECONDS", "longest video accepted, in seconds")
    max_video_fps: float = setting(60.0, "ABRAR_MAX_VIDEO_FPS",
                                   "highest frame rate counted on: a video may have at most "
                                   "ABRAR_MAX_VIDEO_SECONDS x this many frames, whatever its timestamps say")
    workers: int = setting(1, "ABRAR_JOB_WORKERS", "video jobs run at the same time (more only helps on a GPU)")
    queue_size: int = setting(32, "ABRAR_JOB_QUEUE_SIZE",
                              "video jobs that may wait in the queue; more submissions get 503 and Retry-After")
    image_workers: int = setting(1, "ABRAR_IMAGE_WORKERS", "/remove-bg requests processed at the same time")
    image_queue_size: int = setting(8, "ABRAR_IMAGE_QUEUE_SIZE",
                                    "/remove-bg requests that may wait for a worker; more get 503 and Retry-After")
    result_ttl_s: float = setting(24 * 3600.0, "ABRAR_RESULT_TTL_S",
                                  "seconds a finished job's files are kept before they expire (0: keep forever)")
    min_free_mb: float = setting(64.0, "ABRAR_MIN_FREE_MB",
                                 "free space the data dir must keep: below it uploads get 507 and "
                                 "queued jobs wait (/healthz reports it)")
    cleanup_interval_s: float = setting(60.0, "ABRAR_CLEANUP_INTERVAL_S", "how often expired results are deleted")
    on_restart: str = setting("requeue", "ABRAR_JOBS_ON_RESTART",
                              "what happens to jobs a restart interrupted: run them again from the start, or fail them",
                              choices=("requeue", "fail"))
    max_interruptions: int = setting(3, "ABRAR_JOB_MAX_INTERRUPTIONS",
                                     "restarts a job may be interrupted by before it is failed (stops crash loops)")

    @property
    def max_video_frames(self) -> int:
        return int(self.max_video_seconds * self.max_video_fps)

    @property
    def min_free_bytes(self) -> int:
        return int(self.min_free_mb * 1024 * 1024)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)
