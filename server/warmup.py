"""Warm start: load every model in the background at start-up, each in its own lane.

The live lane loads RVM and times frames at the adaptive floor, one stream alone and one
per lane worker side by side (server.lane_calibration), so admission has a measured cost
and the lane's gain from its workers before the first session; the heavy lane starts the cut-out process
(matting.cutout_process) and loads RMBG and RVM there. ``/readyz`` follows both.
With ``ABRAR_PRELOAD_MODELS=false`` the models load on first use instead.
"""
from __future__ import annotations

import asyncio
import logging
import time

import numpy as np

from matting.compositing import composite
from matting.speed import usable_ratios
from server.context import AppContext
from server.lane_calibration import FrameStep, LaneCalibration, calibrate_lane, timed

log = logging.getLogger(__name__)

# The calibration frame: the live page's default camera size.
CALIBRATION_SIZE = (480, 640)
# While streams run, the lane is timed again this often until it is idle.
CALIBRATION_RETRY_S = 10.0


def warm_up(ctx: AppContext, loop: asyncio.AbstractEventLoop) -> None:
    """Start loading (returns at once); progress and failures go to ``ctx.readiness``."""
    runtime, readiness = ctx.runtime, ctx.readiness
    for name in ("rvm", "rmbg"):
        readiness.add_model(name, "waiting" if ctx.config.model.preload else "lazy")
    if not ctx.config.model.preload:
        return

    def calibrate() -> None:
        if readiness.report()[1]["models"]["rvm"]["state"] != "ready":
            return
        try:
            done = calibrate_idle_lane(ctx)
        except Exception:  # noqa: BLE001 - admission then waits for the first real frames
            log.exception("could not time a calibration frame")
            return
        if not done:
            try:  # again once the streams that ran beside it have ended
                loop.call_soon_threadsafe(loop.call_later, CALIBRATION_RETRY_S,
                                          lambda: loop.run_in_executor(ctx.inference, calibrate))
            except RuntimeError:  # the server is shutting down
                pass

    def heavy_lane() -> None:
        _load(readiness, "rmbg", lambda: runtime.cutout_process().load())
        # timed once the heavy lane is quiet: a frame timed while RMBG exports costs double
        ctx.inference.submit(calibrate)

    def live_lane() -> None:
        _load(readiness, "rvm", runtime.video_model)

    loop.run_in_executor(ctx.inference, live_lane)
    loop.run_in_executor(ctx.heavy, heavy_lane)


def _load(readiness, name: str, loader) -> None:
    started = time.perf_counter()
    try:
        readiness.load(name, loader)
    except Exception as exc:  # noqa: BLE001 - /readyz says why; requests needing it report it again
        log.error("%s not loaded at start-up: %s", name, exc)
        return
    state = readiness.report()[1]["models"][name]
    if state["state"] == "missing":
        log.error("%s not loaded at start-up: %s", name, state.get("detail"))
    else:
        log.info("%s loaded in %.1f s", name, time.perf_counter() - started)


def calibrate_idle_lane(ctx: AppContext) -> bool:
    """Time the lane (:func:`_calibrate_lane`) and give admission what it measured, only
    while no live stream holds a share: their frames would run beside the timed ones and
    skew both timings (a first session that connects during warm-up made two frames side
    by side look no faster than one). False when it did not measure, to try again later."""
    if ctx.capacity.report().admitted:
        return False
    calibration = _calibrate_lane(ctx)
    if ctx.capacity.report().admitted:  # a stream came meanwhile: its first frames may be in the timings
        return False
    ctx.capacity.set_speedup(calibration.speedup)
    ctx.capacity.calibrate(calibration.cost)
    return True


def _calibrate_lane(ctx: AppContext) -> LaneCalibration:
    """Live frames at the adaptive floor, timed like LivePipeline times them: one stream
    alone, then one per live-lane worker side by side."""
    from server.live.backgrounds import parse_client_background

    height, width = CALIBRATION_SIZE
    ratio = usable_ratios(height, width)[0]
    background = parse_client_background(ctx.config.live.default_background)
    rgb = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)

    def stream() -> FrameStep:
        session = ctx.runtime.new_session(ratio, batched=True)  # as live streams run (on a GPU, batched)

        def frame() -> float:
            started = time.perf_counter()
            matte = session.process(rgb)
            network_ms = (time.perf_counter() - started) * 1e3
            composite(rgb, matte, background)
            return network_ms
        return timed(frame, height, width, ratio)

    calibration = calibrate_lane(stream, ctx.capacity.workers)
    log.info("live frame cost at the adaptive floor (%dx%d): %.1f ms with the lane's %d worker(s) busy; "
             "side by side they carry %.2fx the frames of one", width, height, calibration.cost.at_floor_ms(),
             ctx.capacity.workers, calibration.speedup)
    return calibration
