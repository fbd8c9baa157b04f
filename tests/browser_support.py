"""Headless Chromium (Debian's, never a downloaded one) with a fake camera playing a y4m."""
from __future__ import annotations

import shutil
from pathlib import Path

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def fake_camera_args(y4m: Path) -> list[str]:
    """Launch flags: no sandbox/GPU/background traffic; camera and microphone granted and faked,
    the camera playing (and looping) ``y4m``."""
    return ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
            f"--use-file-for-fake-video-capture={y4m}"]
