"""Admission by capacity: how many live streams the live lane can keep at a target rate.

Every live WebRTC session and every matting RTSP stream holds a share of the live lane.
The lane's workers matte one frame each at a time. Each frame is charged its share of
the lane: the time it spent there, divided at every moment by the number of frames in the
lane then (so two frames side by side on two workers are charged half their time each).
The charges add up to the time the lane was busy, so with a charge of ``c`` ms a frame the
lane sustains ``1000 / (c * target_fps)`` streams at ``target_fps``, whatever two workers
on shared cores really gain over one (on two CPU cores about 1.5x, not 2x). The charge is
measured on every live frame, at the size the frame ran, and scaled to the adaptive floor
(the smallest internal size a stream may drop to, matting.speed.MIN_NETWORK_SIDE): a
stream given less time than it uses now shrinks to that size before it drops frames.

A frame alone in a lane of several workers leaves the others idle, so its wall time says
nothing of what running side by side gains. With the lane's measured ``speedup`` (the
frames all its workers carry side by side over those one carries alone; warm-up measures
it, server.lane_calibration) such a frame is charged ``1 / speedup`` of its time, what it
would be charged in a full lane: one stream's frames then predict the capacity that
several streams' frames measure, instead of refusing the second stream a lane that would
carry it. The prediction goes no further than the workers measured side by side: until
frames have run in a full lane (every worker busy) within the last FULL_LANE_MEMORY_S, a
measured speedup admits at most as many streams as there are workers, since on shared
cores a lone stream's codecs (and its client, on the same machine) also use the cores
that the speedup was measured on.

API, for every kind of live producer (sessions, RTSP streams, a WHIP endpoint)::

    capacity.admit(key)      # before taking the stream on: raises ApiError 503 when full
    entered = capacity.enter_lane()   # a frame starts in the lane (thread-safe) ...
    share = capacity.leave_lane(entered)  # ... and ends: its charge = wall time * share
    capacity.observe(...)    # every frame's charged cost, from the lane (thread-safe)
    capacity.set_speedup(s)  # what the lane's workers gain side by side (warm-up)
    capacity.release(key)    # when the stream stops matting (idempotent)
    capacity.report()        # CapacityReport for listings, metrics and the 503 body

A producer that mattes only part of the time (an RTSP stream matted on demand) holds a
:class:`Share` and takes it while it mattes, gives it back while it idles.

One stream is always admitted when none is: the server stays usable when the target is
set beyond what the machine can do (its frames then arrive at the rate it can).
"""
from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from matting.speed import network_megapixels, usable_ratios
from server.errors import ApiError

# Weight of the newest frame in the running cost: ~50 frames of memory, so a burst of
# contention moves it within seconds but one slow frame does not. The first frames are
# averaged plainly, so a start-up estimate gives way to real frames quickly.
SMOOTHING = 0.02
RETRY_AFTER_S = 5
# How long a full lane (every worker busy) counts as seen: the running cost's memory of
# about 50 frames is a few seconds of two streams.
FULL_LANE_MEMORY_S = 10.0
# Targets when ABRAR_LIVE_TARGET_FPS is 0 (auto).
CPU_TARGET_FPS = 15.0
GPU_TARGET_FPS = 30.0


@dataclass(frozen=True)
class FrameCost:
    """One live frame's cost in the lane, split so it can be scaled to another size."""
    total_ms: float        # the whole frame's charge: convert, matte, composite, record
    network_ms: float      # the part charged for RVM (scales with the network's pixels)
    height: int
    width: int
    ratio: float           # the downsample ratio the frame ran at

    def at_floor_ms(self) -> float:
        """The frame's cost had it run at the smallest usable ratio."""
        floor = usable_ratios(self.height, self.width)[0]
        ran = network_megapixels(self.height, self.width, self.ratio)
        scale = min(1.0, network_megapixels(self.height, self.width, floor) / ran) if ran > 0 else 1.0
        return max(self.total_ms - self.network_ms, 0.0) + self.network_ms * scale


@dataclass(frozen=True)
class CapacityReport:
    target_fps: float
    workers: int                   # live-lane threads
    lane_speedup: float            # frames the workers carry side by side over one alone (1: not measured)
    frame_cost_ms: float | None    # running per-frame charge at the adaptive floor; None before any frame
    capacity: int | None           # streams the lane can keep at target_fps; None before any frame
    ceiling: int | None            # ABRAR_LIVE_MAX_SESSIONS, when set
    admitted: int                  # sessions and streams holding a share now
    headroom: int | None           # how many more would be admitted now

    def to_json(self) -> dict:
        return asdict(self)


class Capacity:
    """Thread-safe: ``observe`` is called from lane threads, the rest from the event loop."""

    def __init__(self, target_fps: float, workers: int, ceiling: int | None = None, *,
                 clock: Callable[[], float] = time.monotonic):
        if target_fps <= 0:
            raise ValueError(f"target_fps must be positive, not {target_fps}")
        self.target_fps = target_fps
        self.workers = max(1, workers)
        self.ceiling = ceiling or None
        self.rejected_total = 0
        self._cost_ms: float | None = None
        self._samples = 0
        self._admitted: set[str] = set()
        self._lock = threading.Lock()
        self._clock = clock
        self.speedup = 1.0
        self._full_at: float | None = None  # when a frame last entered a lane with every worker busy
        self._in_lane = 0
        self._shared_s = 0.0       # integral over time of the charge rate (_rate), while any frame is in the lane
        self._shared_at = clock()  # when _shared_s was last brought up to date

    def set_speedup(self, speedup: float) -> None:
        """The lane's workers carry ``speedup`` times the frames of one worker when all run
        side by side (clamped to 1 .. workers)."""
        with self._lock:
            self._advance()
            self.speedup = min(max(speedup, 1.0), float(self.workers))

    def _rate(self, in_lane: int) -> float:
        """The charge per second of each of ``in_lane`` frames: its share of a full lane.
        Below ``workers`` frames the gain is taken to grow linearly from 1 (one frame)
        to ``speedup`` (every worker busy)."""
        if in_lane >= self.workers:
            return 1.0 / in_lane
        gain = 1.0 + (self.speedup - 1.0) * (in_lane - 1) / (self.workers - 1)
        return gain / (in_lane * self.speedup)

    def _advance(self) -> float:
        now = self._clock()
        if self._in_lane:
            self._shared_s += (now - self._shared_at) * self._rate(self._in_lane)
        self._shared_at = now
        return self._shared_s

    def enter_lane(self) -> tuple[float, float]:
        """A frame starts in the lane; pass what this returns to :meth:`leave_lane`."""
        with self._lock:
            shared = self._advance()
            self._in_lane += 1
            if self._in_lane >= self.workers:
                self._full_at = self._shared_at
            return self._shared_at, shared

    def leave_lane(self, entered: tuple[float, float]) -> float:
        """The frame is done: the fraction of its time in the lane that it is charged
        (with two workers: 0.5 when another frame ran beside it throughout, 1 / speedup
        when it had the lane to itself)."""
        started, shared_before = entered
        with self._lock:
            rate = self._rate(max(1, self._in_lane))
            shared = self._advance() - shared_before
            self._in_lane = max(0, self._in_lane - 1)
            wall = self._shared_at - started
        return min(1.0, shared / wall) if wall > 0 else rate

    def observe(self, cost: FrameCost) -> None:
        ms = cost.at_floor_ms()
        with self._lock:
            self._samples += 1
            weight = max(SMOOTHING, 1.0 / self._samples)
            self._cost_ms = ms if self._cost_ms is None else (1 - weight) * self._cost_ms + weight * ms

    def calibrate(self, cost: FrameCost) -> None:
        """Start from a measured frame (e.g. at warm-up) when nothing ran yet."""
        with self._lock:
            if self._cost_ms is None:
                self._cost_ms = cost.at_floor_ms()
                self._samples = 1

    def capacity(self) -> int | None:
        with self._lock:
            cost = self._cost_ms
            full_at = self._full_at
        if cost is None:
            return None
        streams = max(1, math.floor(1000.0 / (max(cost, 1e-3) * self.target_fps)))
        if self.speedup > 1 and (full_at is None or self._clock() - full_at > FULL_LANE_MEMORY_S):
            # The speedup was measured with every worker busy: it predicts up to that many
            # streams; beyond them only frames run in a full lane tell.
            streams = min(streams, self.workers)
        return streams

    def lane_share_ms(self) -> float:
        """Lane time per frame each admitted stream may use for all of them to keep the
        target rate; live streams fit their frames into it by shrinking toward the
        adaptive floor, which is what admission counted on."""
        with self._lock:
            streams = max(self.workers, len(self._admitted))
        # a stream has at most one worker: its frames run one after another
        return self.workers * 1000.0 / (streams * self.target_fps)

    def limit(self) -> int | None:
        """Most streams admitted at once now (None: no measurement and no ceiling yet)."""
        limits = [n for n in (self.capacity(), self.ceiling) if n is not None]
        return min(limits) if limits else None

    def report(self) -> CapacityReport:
        capacity, limit = self.capacity(), self.limit()
        with self._lock:
            cost, admitted = self._cost_ms, len(self._admitted)
        return CapacityReport(
            target_fps=self.target_fps, workers=self.workers, lane_speedup=round(self.speedup, 2),
            frame_cost_ms=None if cost is None else round(cost, 2), capacity=capacity, ceiling=self.ceiling,
            admitted=admitted, headroom=None if limit is None else max(0, limit - admitted))

    def admit(self, key: str, *, force: bool = False) -> None:
        """Take ``key`` on, or raise a 503 (Retry-After, the capacity in the body).
        ``force``: take it on regardless (a stream restored at start-up must not be lost)."""
        limit = self.limit()
        with self._lock:
            if key in self._admitted:
                return
            if force or limit is None or not self._admitted or len(self._admitted) < limit:
                self._admitted.add(key)
                return
            self.rejected_total += 1
        report = self.report()
        if report.ceiling is not None and report.ceiling == limit:
            why = f"the server is at its limit of {limit} live session{'s' if limit != 1 else ''}"
        else:
            why = (f"the server is at capacity: {report.admitted} live stream(s) use what it can keep at "
                   f"{self.target_fps:g} fps ({report.frame_cost_ms} ms a frame)")
        raise ApiError(503, f"{why}; try again when one ends", code="at_capacity",
                       headers={"Retry-After": str(RETRY_AFTER_S)}, retry_after_s=RETRY_AFTER_S,
                       capacity=report.to_json())

    def release(self, key: str) -> None:
        with self._lock:
            self._admitted.discard(key)

    def holds(self, key: str) -> bool:
        with self._lock:
            return key in self._admitted


@dataclass(frozen=True)
class Share:
    """One producer's share of a :class:`Capacity`, under ``key``."""
    capacity: Capacity
    key: str

    def take(self, *, force: bool = False) -> None:
        """Hold the share (a no-op while held); ApiError 503 when the capacity is full."""
        self.capacity.admit(self.key, force=force)

    def give_back(self) -> None:
        self.capacity.release(self.key)


def default_target_fps(device_type: str) -> float:
    return GPU_TARGET_FPS if device_type == "cuda" else CPU_TARGET_FPS
