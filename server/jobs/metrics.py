"""Prometheus metrics of the upload API, on the app's registry."""
from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from server.jobs.store import STATUSES

_SECONDS_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass(frozen=True)
class JobMetrics:
    jobs: Gauge
    frames: Counter
    inference: Histogram
    rejected: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> JobMetrics:
        return cls(
            jobs=Gauge("abrar_jobs", "Video jobs by state", ["state"], registry=registry),
            frames=Counter("abrar_job_frames_processed", "Video frames processed by jobs", registry=registry),
            inference=Histogram(
                "abrar_upload_inference_seconds",
                "Processing time: one /remove-bg image (kind=image) or one video job frame (kind=video_frame)",
                ["kind"], buckets=_SECONDS_BUCKETS, registry=registry),
            rejected=Counter("abrar_upload_rejected", "Uploads refused because a queue was full",
                             ["queue"], registry=registry),
        )

    def set_counts(self, counts: dict[str, int]) -> None:
        for state in STATUSES:
            self.jobs.labels(state=state).set(counts.get(state, 0))
