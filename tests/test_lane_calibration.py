"""Timing the live lane at start-up: a stream's frames alone and several side by side,
with stand-in frames whose parallelism is known (sleeping frames run fully side by side,
frames holding one lock cannot), then the real network through the server's warm-up."""
from __future__ import annotations

import asyncio
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import aiohttp
import pytest

from server.capacity import FrameCost
from server.lane_calibration import WARM_FRAMES, calibrate_lane, frames_side_by_side, timed
from server_process import running_server

FRAME_S = 0.02


def sleeping_frame():
    def run() -> float:
        time.sleep(FRAME_S)
        return FRAME_S * 1e3
    return timed(run, 480, 640, 0.375)


def test_frames_that_run_fully_side_by_side_gain_one_worker_each():
    calibration = calibrate_lane(sleeping_frame, workers=2)
    assert calibration.speedup > 1.6, calibration
    # the charge with both workers busy is half a frame's time
    assert calibration.cost.total_ms == pytest.approx(FRAME_S * 1e3 / 2, rel=0.35)


def test_frames_that_cannot_overlap_gain_nothing():
    one_core = ThreadPoolExecutor(1)  # first come, first served: the streams take turns

    def serial_frame():
        def run() -> float:
            one_core.submit(time.sleep, FRAME_S).result()
            return FRAME_S * 1e3
        return timed(run, 480, 640, 0.375)

    with one_core:
        calibration = calibrate_lane(serial_frame, workers=2)
    assert calibration.speedup < 1.3, calibration
    # two frames side by side each wait for the other: the charge is a whole frame
    assert calibration.cost.total_ms == pytest.approx(FRAME_S * 1e3, rel=0.35)


def test_one_worker_is_timed_alone_and_errors_reach_the_caller():
    calls = []

    def counting_frame():
        def step() -> FrameCost:
            calls.append(threading.get_ident())
            return FrameCost(10.0, 8.0, 480, 640, 0.375)
        return step

    calibration = calibrate_lane(counting_frame, workers=1, count=5)
    assert calibration.speedup == 1.0 and calibration.cost.total_ms == 10.0
    assert len(calls) == 5 and set(calls) == {threading.get_ident()}

    def failing(index: int):
        def step() -> FrameCost:
            if index == 1:
                raise RuntimeError("network failed")
            return FrameCost(10.0, 8.0, 480, 640, 0.375)
        return step

    with pytest.raises(RuntimeError, match="network failed"):
        frames_side_by_side([failing(0), failing(1)], 5)
    # only the frames that ran while the others did: each thread's first and last left out
    kept = frames_side_by_side([counting_frame(), counting_frame(), counting_frame()], 6)
    assert len(kept) == 3 * (6 - WARM_FRAMES - 1)
    with pytest.raises(ValueError):
        calibrate_lane(counting_frame, workers=2, count=WARM_FRAMES + 1)


@pytest.mark.timeout(240)
async def test_warm_up_measures_the_lane_before_any_session(tmp_path):
    with running_server(tmp_path / "data", args=["--model-inference-workers", "2"]) as server:
        async with aiohttp.ClientSession() as http:
            deadline = time.monotonic() + 180  # models load (and, on a fresh machine, int8 calibrates) first
            while True:
                async with http.get(f"{server.url}/sessions") as resp:
                    capacity = (await resp.json())["capacity"]
                if capacity["frame_cost_ms"] is not None or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
            async with http.get(f"{server.url}/metrics") as resp:
                metrics = await resp.text()
        log = server.log(tail=100_000)
    assert capacity["admitted"] == 0 and capacity["workers"] == 2
    assert capacity["frame_cost_ms"] is not None, "warm-up measured no live frame"
    # the two workers' frames were timed side by side, and what they gain is what admission uses
    measured = re.search(r"side by side they carry ([0-9.]+)x the frames of one", log)
    assert measured, log[-3000:]
    assert capacity["lane_speedup"] == pytest.approx(max(1.0, float(measured.group(1))), abs=0.01)
    assert f"abrar_live_lane_speedup {float(capacity['lane_speedup'])}" in metrics
    print(f"\nwarm-up: {capacity}")


def test_the_lane_is_timed_only_while_no_stream_runs(runtime):
    from types import SimpleNamespace

    from server.capacity import Capacity
    from server.live.config import LiveConfig
    from server.warmup import calibrate_idle_lane

    def context(capacity: Capacity, runtime_=runtime):
        return SimpleNamespace(capacity=capacity, runtime=runtime_, config=SimpleNamespace(live=LiveConfig()))

    busy = Capacity(target_fps=15, workers=2)
    busy.admit("a stream")
    assert not calibrate_idle_lane(context(busy))
    assert busy.speedup == 1.0 and busy.report().frame_cost_ms is None

    idle = Capacity(target_fps=15, workers=2)
    assert calibrate_idle_lane(context(idle))
    assert idle.report().frame_cost_ms is not None and idle.speedup >= 1.0

    class StreamArrives:
        """The real runtime; a stream is admitted as the timed frames start."""

        def new_session(self, *args, **kwargs):
            late.admit("a stream that came during the timing")
            return runtime.new_session(*args, **kwargs)

    late = Capacity(target_fps=15, workers=2)
    assert not calibrate_idle_lane(context(late, StreamArrives()))
    assert late.speedup == 1.0 and late.report().frame_cost_ms is None
