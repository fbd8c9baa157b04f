"""Timing the live lane before the first stream: what a frame costs, and what the lane's
workers gain by running frames side by side.

Admission (server.capacity) charges each live frame its share of the lane. Before any
stream runs it needs a starting cost, and a lone stream's frames never show what the
other workers would add: on two shared CPU cores two frames side by side take longer
each than one alone, but the two together finish sooner (about 1.5x the frames). Both are
measured here, on the real network at the adaptive floor, by :func:`calibrate_lane`.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from server.capacity import FrameCost

# One stream's frame, timed: what a LivePipeline does to a frame, less the codecs.
FrameStep = Callable[[], FrameCost]
# The first frames of a run pay for waking threads and ONNX Runtime's own warm-up.
WARM_FRAMES = 2


@dataclass(frozen=True)
class LaneCalibration:
    cost: FrameCost   # one frame's charge with every worker busy (its wall time / workers)
    speedup: float    # frames the workers carry side by side over one worker alone (>= 1)


def frames_alone(step: FrameStep, count: int) -> list[FrameCost]:
    """``count`` frames one after another, less the first WARM_FRAMES."""
    return [step() for _ in range(count)][WARM_FRAMES:]


def frames_side_by_side(steps: list[FrameStep], count: int) -> list[FrameCost]:
    """``count`` frames of each step, every step in its own thread, all started together;
    the frames that ran while all the others did (less each thread's first WARM_FRAMES
    and its last, which may have run after another thread finished)."""
    start = threading.Barrier(len(steps))
    costs: list[list[FrameCost]] = [[] for _ in steps]
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            start.wait()
            for _ in range(count):
                costs[index].append(steps[index]())
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            errors.append(exc)
            start.abort()

    threads = [threading.Thread(target=run, args=(i,), name=f"lane-calibration-{i}") for i in range(1, len(steps))]
    for thread in threads:
        thread.start()
    run(0)
    for thread in threads:
        thread.join()
    if errors:
        raise next((e for e in errors if not isinstance(e, threading.BrokenBarrierError)), errors[0])
    return [cost for thread_costs in costs for cost in thread_costs[WARM_FRAMES:-1]]


def median_cost(costs: list[FrameCost]) -> FrameCost:
    return sorted(costs, key=FrameCost.at_floor_ms)[len(costs) // 2]


def calibrate_lane(make_step: Callable[[], FrameStep], workers: int, count: int = 8) -> LaneCalibration:
    """Time ``count`` frames of one stream alone, then of ``workers`` streams side by side
    (``make_step`` makes one stream; each gets its own). With one worker there is nothing
    to gain: the speedup is 1 and the cost is a frame's alone."""
    if count < WARM_FRAMES + 2:
        raise ValueError(f"count must be at least {WARM_FRAMES + 2}, not {count}")
    alone = median_cost(frames_alone(make_step(), count))
    if workers <= 1:
        return LaneCalibration(alone, 1.0)
    side = median_cost(frames_side_by_side([make_step() for _ in range(workers)], count))
    charged = FrameCost(total_ms=side.total_ms / workers, network_ms=side.network_ms / workers,
                        height=side.height, width=side.width, ratio=side.ratio)
    return LaneCalibration(charged, max(1.0, alone.total_ms / charged.total_ms))


def timed(run: Callable[[], float], height: int, width: int, ratio: float) -> FrameStep:
    """A FrameStep from ``run``, which does one frame and returns the milliseconds of it
    spent in the network."""
    def step() -> FrameCost:
        started = time.perf_counter()
        network_ms = run()
        return FrameCost(total_ms=(time.perf_counter() - started) * 1e3, network_ms=network_ms,
                         height=height, width=width, ratio=ratio)
    return step
