"""Prometheus view of RTSP streams, read from the manager at scrape time (so a deleted
stream leaves no series behind)."""
from __future__ import annotations

import time

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from server.streams.manager import StreamManager
from server.streams.stream import StreamState


class StreamsCollector(Collector):
    def __init__(self, manager: StreamManager):
        self._manager = manager

    def collect(self):
        streams = self._manager.all()
        yield GaugeMetricFamily("abrar_streams", "RTSP streams configured", value=len(streams))
        yield GaugeMetricFamily("abrar_streams_limit", "Most RTSP streams allowed at once",
                                value=self._manager.config.max_streams)
        state = GaugeMetricFamily("abrar_stream_state", "1 for the stream's current state",
                                  labels=["stream", "state"])
        fps = GaugeMetricFamily("abrar_stream_fps", "Frames per second read from the camera (in) and matted (out)",
                                labels=["stream", "direction"])
        latency = GaugeMetricFamily("abrar_stream_latency_seconds",
                                    "Frame decoded to matted frame ready, over the last 300 frames",
                                    labels=["stream", "quantile"])
        age = GaugeMetricFamily("abrar_stream_last_frame_age_seconds", "Seconds since the camera's last frame",
                                labels=["stream"])
        reconnects = CounterMetricFamily("abrar_stream_reconnects", "Times the camera came back after a loss",
                                         labels=["stream"])
        gaps = CounterMetricFamily("abrar_stream_gaps", "Interruptions of the video (drops and stalls)",
                                   labels=["stream"])
        frames = CounterMetricFamily("abrar_stream_frames",
                                     "Frames decoded (in), matted (out), skipped as stale (dropped) "
                                     "or not matted with nobody watching (idle)",
                                     labels=["stream", "kind"])
        viewers = GaugeMetricFamily("abrar_stream_viewers", "WebRTC viewers watching", labels=["stream"])
        matting = GaugeMetricFamily("abrar_stream_matting",
                                    "1 while the stream's frames are matted (a viewer, a recording or matte=always)",
                                    labels=["stream"])
        recording = GaugeMetricFamily("abrar_stream_recording", "1 while a segment is being recorded",
                                      labels=["stream"])
        now = time.time()
        for s in streams:
            for st in StreamState:
                state.add_metric([s.id, st.value], 1.0 if s.state == st else 0.0)
            stats = s.pipeline.stats
            fps.add_metric([s.id, "in"], s.fps_in())
            fps.add_metric([s.id, "out"], stats.fps)
            for q, value in (("0.5", stats.latency_p50_ms), ("0.95", stats.latency_p95_ms)):
                if value is not None:
                    latency.add_metric([s.id, q], value / 1000.0)
            if s.last_frame_at is not None:
                age.add_metric([s.id], now - s.last_frame_at)
            reconnects.add_metric([s.id], s.reconnects)
            gaps.add_metric([s.id], s.gap_count)
            for kind, value in (("in", s.frames_in), ("out", stats.frames), ("dropped", stats.dropped),
                                ("idle", s.frames_idle)):
                frames.add_metric([s.id, kind], value)
            viewers.add_metric([s.id], len(s.viewers))
            matting.add_metric([s.id], 1.0 if s.matting else 0.0)
            recording.add_metric([s.id], 1.0 if stats.recording else 0.0)
        yield from (state, fps, latency, age, reconnects, gaps, frames, viewers, matting, recording)
