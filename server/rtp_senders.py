"""Matted video goes out through a VP8 encoder set for a server that encodes many streams.

aiortc encodes VP8 with libvpx's temporal denoiser on (noise sensitivity 4) at speed -6.
What the server encodes was already denoised by the sender's own encoder, then decoded
and matted: a second denoising pass smooths away detail the viewer should get, and it is
the dearer part of the encode. Without it, and at speed -10, the encode takes half the
time at 1280x720 and a third less at 640x480, with a higher Y-PSNR against the frames
handed to it at the same bitrate (``bench/bench_codecs.py``; figures in bench/README.md).
Software encoding is a live session's largest CPU cost after matting, and on a GPU server
the one that bounds how many sessions a machine carries.

aiortc has no setting for its encoders, so its sender's encoder factory is wrapped once
at start-up, process-wide: VP8 gets :class:`RealtimeVp8Encoder`, every other codec
aiortc's own.
"""
from __future__ import annotations

import functools
import logging
import os

import av
from aiortc import rtcrtpsender
from aiortc.codecs.vpx import Vp8Encoder, number_of_threads

log = logging.getLogger(__name__)

# libvpx's realtime speed (-16..16, larger magnitude = faster). -10 measured about as
# fast as -12 and -16's quality fell off (bench/README.md).
SPEED = -10


def vp8_options(bitrate: int) -> dict[str, str]:
    """libvpx options for a real-time WebRTC stream at ``bitrate`` bit/s."""
    rate = str(bitrate)
    return {
        "deadline": "realtime", "cpu-used": str(SPEED), "lag-in-frames": "0",
        "noise-sensitivity": "0",
        # Constant bitrate over a one-second buffer: congestion control sets the target.
        "minrate": rate, "maxrate": rate, "bufsize": rate,
        "overshoot-pct": "15", "undershoot-pct": "100",
        "static-thresh": "1", "partitions": "0",
    }


class RealtimeVp8Encoder(Vp8Encoder):
    """aiortc's VP8 encoder (packetisation, keyframes, bitrate changes) with the libvpx
    context made here, before aiortc would make its own: aiortc keeps a context whose
    size and bitrate still fit the frame."""

    def encode(self, frame: av.VideoFrame, force_keyframe: bool = False) -> tuple[list[bytes], int]:  # type: ignore[override]
        if self._needs_context(frame):
            self.codec = self._context(frame.width, frame.height)
        return super().encode(frame, force_keyframe)

    def _needs_context(self, frame: av.VideoFrame) -> bool:
        codec = self.codec
        if codec is None or not codec.bit_rate:
            return True
        # aiortc's own rule for a new context: another size, or the bitrate moved over 10 %.
        return (codec.width != frame.width or codec.height != frame.height
                or abs(self.target_bitrate - codec.bit_rate) / codec.bit_rate > 0.1)

    def _context(self, width: int, height: int) -> av.VideoCodecContext:
        codec = av.CodecContext.create("libvpx", "w")
        codec.width, codec.height = width, height
        codec.bit_rate = self.target_bitrate
        codec.pix_fmt = "yuv420p"
        codec.gop_size = 3000  # keyframes when a viewer asks (PLI), not on a timer
        codec.qmin, codec.qmax = 2, 56
        codec.options = vp8_options(self.target_bitrate)
        codec.thread_count = number_of_threads(width * height, os.cpu_count() or 1)
        return codec


def realtime_vp8() -> None:
    """Idempotent."""
    stock = rtcrtpsender.get_encoder
    if getattr(stock, "abrar_realtime_vp8", False):
        return

    @functools.wraps(stock)
    def get_encoder(codec):
        if codec.mimeType.lower() == "video/vp8":
            return RealtimeVp8Encoder()
        return stock(codec)

    get_encoder.abrar_realtime_vp8 = True  # type: ignore[attr-defined]
    rtcrtpsender.get_encoder = get_encoder
    log.debug("VP8 senders encode with libvpx speed %d and no denoiser", SPEED)
