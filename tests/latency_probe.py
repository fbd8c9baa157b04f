"""Camera-to-screen latency of the live page, measured in the browser itself.

The fake camera plays a y4m whose frames carry their own number as a row of large
black and white blocks along the bottom (``BITS`` bits and one parity block): big
enough to survive VP8 at a low bitrate, the server's background blur and the matte
(the band is kept or blurred, either way its blocks stay readable). The page reads
the number of every frame the local preview shows and of every frame the returned
video shows (``requestVideoFrameCallback`` and a small canvas), so

    latency of frame k = when the returned video shows k - when the preview shows k

on one clock (``expectedDisplayTime``). That is camera to screen minus the
preview's own display delay, which a real camera has as well.

Used by ``bench/bench_browser_latency.py`` (the figures) and
``tests/test_browser_latency.py`` (that the measurement works).
"""
from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BITS = 9                      # frame numbers 0..511; the clip is shorter, so each number is unique
BLOCKS = BITS + 1             # + an even-parity block: a misread block fails the check
BAND = 0.17                   # bottom share of the frame height that carries the code
FPS = 30


def paint_code(rgb: np.ndarray, number: int) -> None:
    """Paint ``number`` (LSB first) and its parity as blocks across the bottom band, in place."""
    h, w = rgb.shape[:2]
    top = round(h * (1 - BAND))
    bits = [(number >> i) & 1 for i in range(BITS)]
    bits.append(sum(bits) % 2)
    edges = np.linspace(0, w, BLOCKS + 1).round().astype(int)
    for i, bit in enumerate(bits):
        rgb[top:, edges[i]:edges[i + 1]] = 235 if bit else 16


def read_code(rgb: np.ndarray) -> int | None:
    """The number painted by :func:`paint_code`, or None where a block is unsure or the parity fails."""
    h, w = rgb.shape[:2]
    y = int(h * (1 - BAND / 2))
    edges = np.linspace(0, w, BLOCKS + 1)
    xs = ((edges[:-1] + edges[1:]) / 2).astype(int)
    lum = rgb[y, xs].astype(np.float32).mean(axis=1)
    if (np.abs(lum - 125) < 45).any():
        return None
    bits = (lum > 125).astype(int)
    if bits.sum() % 2:
        return None
    return int(sum(int(b) << i for i, b in enumerate(bits[:BITS])))


def make_coded_y4m(source: Path, out: Path, *, size: tuple[int, int] = (640, 480), frames: int = 300) -> Path:
    """``frames`` frames of ``source`` (looped, resized to ``size``), numbered, as a 30 fps y4m."""
    import av
    import cv2

    with av.open(str(source)) as src:
        clip = [cv2.resize(f.to_ndarray(format="rgb24"), size, interpolation=cv2.INTER_AREA)
                for f in src.decode(video=0)]
    w, h = size
    enc = subprocess.Popen(["ffmpeg", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
                            "-s", f"{w}x{h}", "-r", str(FPS), "-i", "-", "-pix_fmt", "yuv420p",
                            "-f", "yuv4mpegpipe", str(out)], stdin=subprocess.PIPE)
    assert enc.stdin is not None
    for k in range(frames):
        rgb = clip[k % len(clip)].copy()
        paint_code(rgb, k)
        enc.stdin.write(rgb.tobytes())
    enc.stdin.close()
    if enc.wait(timeout=120):
        raise RuntimeError(f"ffmpeg could not write {out}")
    return out


# Installs one reader per video; each keeps [number, expectedDisplayTime] of the frames
# it decoded, and counts the frames whose code failed (blurred mid-transition, cut off).
READER_JS = """([blocks, band]) => {
  const read = (video) => {
    const out = { frames: [], bad: 0 };
    const canvas = Object.assign(document.createElement("canvas"), { width: blocks * 4, height: 4 });
    const ctx = canvas.getContext("2d", { willReadFrequently: true });
    const step = (_, meta) => {
      const w = video.videoWidth, h = video.videoHeight;
      if (w && h) {
        ctx.drawImage(video, 0, h * (1 - band), w, h * band, 0, 0, canvas.width, canvas.height);
        const d = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
        let number = 0, ones = 0, sure = true;
        for (let i = 0; i < blocks; i++) {
          const p = (2 * canvas.width + i * 4 + 2) * 4;  // the centre of block i
          const lum = (d[p] + d[p + 1] + d[p + 2]) / 3;
          if (Math.abs(lum - 125) < 45) sure = false;
          const bit = lum > 125 ? 1 : 0;
          ones += bit;
          if (i < blocks - 1) number |= bit << i;
        }
        if (sure && ones % 2 === 0) out.frames.push([number, meta.expectedDisplayTime]);
        else out.bad++;
      }
      video.requestVideoFrameCallback(step);
    };
    video.requestVideoFrameCallback(step);
    return out;
  };
  window.latencyProbe = { local: read(document.getElementById("local")),
                          remote: read(document.getElementById("remote")) };
}"""

# Everything since the last call: frames (number, ms) per video and the failed reads.
TAKE_JS = """() => {
  const take = (o) => { const r = { frames: o.frames, bad: o.bad }; o.frames = []; o.bad = 0; return r; };
  return { local: take(window.latencyProbe.local), remote: take(window.latencyProbe.remote) };
}"""


# Cumulative WebRTC counters of the page's session (``live.pc``), to split the latency.
STATS_JS = """async () => {
  const r = {};
  (await live.pc.getStats()).forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "video") {
      Object.assign(r, { decoded: s.framesDecoded, jb_delay: s.jitterBufferDelay, jb_count: s.jitterBufferEmittedCount,
                         decode_time: s.totalDecodeTime, processing_delay: s.totalProcessingDelay,
                         in_dropped: s.framesDropped });
    } else if (s.type === "outbound-rtp" && s.kind === "video") {
      Object.assign(r, { encoded: s.framesEncoded, encode_time: s.totalEncodeTime, send_delay: s.totalPacketSendDelay,
                         packets: s.packetsSent, limit: s.qualityLimitationReason, out_w: s.frameWidth,
                         out_fps: s.framesPerSecond });
    } else if (s.type === "candidate-pair" && s.nominated) {
      r.rtt = s.currentRoundTripTime;
    }
  });
  return r;
}"""


def stats_breakdown(before: dict, after: dict) -> dict:
    """Per-frame browser-side shares of the latency between two ``STATS_JS`` readings (ms)."""
    def per(key: str, count: str) -> float | None:
        n = (after.get(count) or 0) - (before.get(count) or 0)
        if n <= 0 or after.get(key) is None or before.get(key) is None:
            return None
        return round((after[key] - before[key]) / n * 1000, 1)

    return {"jitter_buffer_ms": per("jb_delay", "jb_count"), "decode_ms": per("decode_time", "decoded"),
            "receive_to_decoded_ms": per("processing_delay", "decoded"),
            "encode_ms": per("encode_time", "encoded"), "packet_send_delay_ms": per("send_delay", "packets"),
            "rtt_ms": round(after["rtt"] * 1000, 1) if after.get("rtt") is not None else None,
            "sent_width": after.get("out_w"), "sent_fps": after.get("out_fps"),
            "quality_limitation": after.get("limit")}


@dataclass(frozen=True)
class LatencyResult:
    frames_shown: int          # returned frames shown with a readable number
    distinct: int              # of which distinct camera frames
    seconds: float             # between the first and the last of them
    latencies_ms: np.ndarray   # per distinct returned frame, matched to its preview showing
    unreadable_local: int
    unreadable_remote: int

    @property
    def fps(self) -> float:
        return (self.distinct - 1) / self.seconds if self.distinct > 1 and self.seconds > 0 else 0.0

    def to_json(self) -> dict:
        lat = self.latencies_ms

        def q(p: float) -> float | None:
            return round(float(np.percentile(lat, p)), 1) if lat.size else None

        return {"fps_received": round(self.fps, 2), "latency_ms": {"p50": q(50), "p95": q(95), "max": q(100)},
                "frames_matched": int(lat.size), "frames_shown": self.frames_shown,
                "unreadable": {"local": self.unreadable_local, "remote": self.unreadable_remote}}


def match(local: list, remote: list, *, loop_ms: float, bad_local: int = 0, bad_remote: int = 0) -> LatencyResult:
    """Pair each returned frame with the latest preview showing of the same number before it.

    The clip loops every ``loop_ms``; a pairing further apart than that would be a
    frame from an earlier loop, so it is not made.
    """
    shown: dict[int, list[float]] = {}
    for number, t in local:
        shown.setdefault(int(number), []).append(float(t))
    latencies, times, distinct, last = [], [], 0, None
    for number, t in remote:
        number, t = int(number), float(t)
        times.append(t)
        if number == last:  # the same camera frame again (the server had nothing newer): not a new frame
            continue
        last = number
        distinct += 1
        earlier = [s for s in shown.get(number, ()) if s <= t and t - s < loop_ms]
        if earlier:
            latencies.append(t - max(earlier))
    seconds = (max(times) - min(times)) / 1000 if times else 0.0
    return LatencyResult(frames_shown=len(remote), distinct=distinct, seconds=seconds,
                         latencies_ms=np.asarray(latencies, np.float64),
                         unreadable_local=bad_local, unreadable_remote=bad_remote)
