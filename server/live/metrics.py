"""Prometheus view of live sessions, read from the registry at scrape time.

A collector (rather than labelled gauges updated as sessions change) cannot leave
a closed session's series behind.
"""
from __future__ import annotations

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from server.live.sessions import LiveSessions


class LiveCollector(Collector):
    def __init__(self, sessions: LiveSessions):
        self._sessions = sessions

    def collect(self):
        sessions = self._sessions.all()
        yield GaugeMetricFamily("abrar_live_sessions", "Open live WebRTC sessions", value=len(sessions))
        capacity = self._sessions.capacity.report()
        yield GaugeMetricFamily("abrar_live_target_fps", "Rate every admitted live stream must be able to keep",
                                value=capacity.target_fps)
        yield GaugeMetricFamily("abrar_live_lane_speedup",
                                "Frames the live-lane threads carry side by side over one thread alone",
                                value=capacity.lane_speedup)
        if capacity.frame_cost_ms is not None:
            yield GaugeMetricFamily("abrar_live_frame_cost_seconds",
                                    "Running per-frame cost in the live lane, at the adaptive floor",
                                    value=capacity.frame_cost_ms / 1000.0)
        if capacity.capacity is not None:
            yield GaugeMetricFamily("abrar_live_capacity", "Live streams the live lane can keep at the target rate",
                                    value=capacity.capacity)
        if capacity.ceiling is not None:
            yield GaugeMetricFamily("abrar_live_sessions_limit", "Configured ceiling on live streams",
                                    value=capacity.ceiling)
        yield GaugeMetricFamily("abrar_live_admitted", "Live sessions and streams holding a share of capacity",
                                value=capacity.admitted)
        if capacity.headroom is not None:
            yield GaugeMetricFamily("abrar_live_headroom", "More live streams that would be admitted now",
                                    value=capacity.headroom)
        yield CounterMetricFamily("abrar_live_sessions_closed", "Live sessions closed since start",
                                  value=self._sessions.closed_total)
        yield CounterMetricFamily("abrar_live_sessions_rejected", "Offers refused at capacity or the ceiling",
                                  value=self._sessions.rejected_total)
        fps = GaugeMetricFamily("abrar_live_session_fps", "Matted frames per second", labels=["session"])
        latency = GaugeMetricFamily("abrar_live_session_latency_seconds",
                                    "Frame received to matted frame ready, over the last 300 frames",
                                    labels=["session", "quantile"])
        frames = CounterMetricFamily("abrar_live_session_frames", "Frames matted", labels=["session"])
        dropped = CounterMetricFamily("abrar_live_session_dropped_frames",
                                      "Stale frames skipped to keep latency bounded", labels=["session"])
        recording = GaugeMetricFamily("abrar_live_session_recording", "1 while recording", labels=["session"])
        for session in sessions:
            stats = session.pipeline.stats
            fps.add_metric([session.id], stats.fps)
            for q, value in (("0.5", stats.latency_p50_ms), ("0.95", stats.latency_p95_ms)):
                if value is not None:
                    latency.add_metric([session.id, q], value / 1000.0)
            frames.add_metric([session.id], stats.frames)
            dropped.add_metric([session.id], stats.dropped)
            recording.add_metric([session.id], 1.0 if stats.recording else 0.0)
        yield from (fps, latency, frames, dropped, recording)

