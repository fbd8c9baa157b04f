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


def colour_share_script(video_id: str) -> str:
    """A page function for ``page.evaluate(script, [r, g, b])``: the share of the pixels of
    the <video id=video_id> now showing within 40 levels of that colour."""
    return """([r, g, b]) => {
  const v = document.getElementById("%s");
  const c = Object.assign(document.createElement("canvas"), { width: v.videoWidth, height: v.videoHeight });
  const ctx = c.getContext("2d");
  ctx.drawImage(v, 0, 0);
  const d = ctx.getImageData(0, 0, c.width, c.height).data;
  let near = 0;
  for (let i = 0; i < d.length; i += 4) {
    if (Math.abs(d[i] - r) < 40 && Math.abs(d[i + 1] - g) < 40 && Math.abs(d[i + 2] - b) < 40) near++;
  }
  return near / (d.length / 4);
}""" % video_id
