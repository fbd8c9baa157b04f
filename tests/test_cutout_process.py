"""Still cut-outs in their own process: the same cut-out, a clear error if the process dies, and a
new process for the next call."""
from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest

from conftest import load_rgb
from matting.config import RuntimeConfig
from matting.cutout_process import CutoutProcess, CutoutProcessDied


def spawned_children() -> set[int]:
    kids = {int(c) for task in Path(f"/proc/{os.getpid()}/task").iterdir()
            for c in (task / "children").read_text().split()}
    return {k for k in kids if b"spawn_main" in Path(f"/proc/{k}/cmdline").read_bytes()}


@pytest.mark.timeout(240)
def test_cutout_process_answers_fails_clearly_when_killed_and_restarts(media):
    import cv2

    rgb = cv2.resize(load_rgb(media / "images" / "p3m_0a78cf02.png"), (270, 405))
    gt = cv2.resize(load_rgb(media / "alpha" / "p3m_0a78cf02.png")[:, :, 0], (270, 405)) / 255.0
    before = spawned_children()
    process = CutoutProcess(RuntimeConfig(device="cpu", download=False), threads=1)
    try:
        alpha = process.still_matte(rgb, "rmbg").alpha
        assert alpha.shape == rgb.shape[:2] and alpha.dtype == np.float32
        assert float(np.abs(alpha - gt).mean()) < 0.1, "not a cut-out of the person"
        (child,) = spawned_children() - before
        assert os.getpriority(os.PRIO_PROCESS, child) >= 10, "the cut-out process runs at normal priority"
        policies = {int(tid): os.sched_getscheduler(int(tid)) for tid in os.listdir(f"/proc/{child}/task")}
        assert set(policies.values()) == {os.SCHED_IDLE}, f"threads outside the idle class: {policies}"
        os.kill(child, signal.SIGKILL)
        with pytest.raises(CutoutProcessDied, match="restarts on the next request"):
            process.still_matte(rgb, "rmbg")
        again = process.still_matte(rgb, "rmbg").alpha
        assert process.restarts == 1 and float(np.abs(again - alpha).max()) < 1e-4
    finally:
        process.shutdown()
