"""Warm start: load every model in the background at start-up, each in its own lane.

The live lane loads RVM and times one frame at the adaptive floor, so admission has a
measured cost before the first session; the heavy lane starts the cut-out process
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
from server.capacity import FrameCost
from server.context import AppContext

log = logging.getLogger(__name__)

# The calibration frame: the live page's default camera size.
CALIBRATION_SIZE = (480, 640)
CALIBRATION_FRAMES = 5


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
            ctx.capacity.calibrate(_calibration_cost(ctx))
        except Exception:  # noqa: BLE001 - admission then waits for the first real frames
            log.exception("could not time a calibration frame")

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


def _calibration_cost(ctx: AppContext) -> FrameCost:
    """One live frame's cost at the adaptive floor, timed like LivePipeline times frames."""
    from server.live.backgrounds import parse_client_background

    height, width = CALIBRATION_SIZE
    ratio = usable_ratios(height, width)[0]
    session = ctx.runtime.new_session(ratio)
    background = parse_client_background(ctx.config.live.default_background)
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    costs = []
    for _ in range(CALIBRATION_FRAMES):
        started = time.perf_counter()
        matte = session.process(rgb)
        network = time.perf_counter() - started
        composite(rgb, matte, background)
        costs.append(FrameCost(total_ms=(time.perf_counter() - started) * 1e3, network_ms=network * 1e3,
                               height=height, width=width, ratio=ratio))
    # the median of the last runs: the first ones pay for ONNX Runtime's own warm-up
    cost = sorted(costs[2:], key=FrameCost.at_floor_ms)[len(costs[2:]) // 2]
    log.info("live frame cost at the adaptive floor (%dx%d): %.1f ms", width, height, cost.at_floor_ms())
    return cost
