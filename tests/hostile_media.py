"""Hostile inputs crafted with PyAV, FFmpeg and Pillow: videos that change size mid-stream or
squeeze their timestamps, short videos with hours of audio, tiny images whose headers lie."""
from __future__ import annotations

import io
import struct
import subprocess
import zlib
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image


def _frame(photo: np.ndarray, width: int, height: int) -> av.VideoFrame:
    frame = av.VideoFrame.from_ndarray(photo, format="rgb24")
    return frame.reformat(width=width, height=height, format="yuvj420p")


def size_switch_video(path: Path, photo: np.ndarray, small: tuple[int, int], big: tuple[int, int],
                      n_small: int = 3, n_big: int = 3) -> Path:
    """MJPEG in Matroska: ``n_small`` frames at ``small`` then ``n_big`` at ``big`` (every
    MJPEG frame carries its own size, so the container still declares the small one)."""
    rate = Fraction(10)
    with av.open(str(path), "w", format="matroska") as out:
        stream = out.add_stream("mjpeg", rate=rate)
        stream.width, stream.height = small
        stream.pix_fmt = "yuvj420p"
        big_codec = av.CodecContext.create("mjpeg", "w")
        big_codec.width, big_codec.height = big
        big_codec.pix_fmt = "yuvj420p"
        big_codec.time_base = 1 / rate
        for i in range(n_small + n_big):
            codec, size = (stream.codec_context, small) if i < n_small else (big_codec, big)
            frame = _frame(photo, *size)
            frame.pts, frame.time_base = i, 1 / rate
            for packet in codec.encode(frame):
                packet.stream = stream
                out.mux(packet)
        for codec in (stream.codec_context, big_codec):
            for packet in codec.encode(None):
                packet.stream = stream
                out.mux(packet)
    return path


def squeezed_video(path: Path, photo: np.ndarray, frames: int, size: tuple[int, int] = (64, 64),
                   container: str = "mp4") -> Path:
    """``frames`` frames one 90 kHz tick apart: the container declares a fraction of a millisecond
    (MP4 also declares the frame count; NUT does not)."""
    tick = Fraction(1, 90000)
    with av.open(str(path), "w", format=container) as out:
        stream = out.add_stream("mjpeg", rate=30)
        stream.width, stream.height = size
        stream.pix_fmt = "yuvj420p"
        stream.time_base = tick
        packets = []
        for i in range(frames):
            frame = _frame(photo, *size)
            frame.pts = i
            packets += stream.encode(frame)
        packets += stream.encode(None)
        for i, packet in enumerate(packets):  # retimed as they are muxed
            packet.pts = packet.dts = i
            packet.time_base = tick
            out.mux(packet)
    return path


def long_audio_video(path: Path, video_s: float, audio_s: float, size: tuple[int, int] = (64, 64)) -> Path:
    """``video_s`` seconds of test pattern with ``audio_s`` seconds of a sine tone."""
    subprocess.run(["ffmpeg", "-v", "error", "-y",
                    "-f", "lavfi", "-i", f"testsrc=size={size[0]}x{size[1]}:rate=10:duration={video_s}",
                    "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={audio_s}",
                    "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
                    "-c:a", "aac", "-b:a", "32k", str(path)], check=True, timeout=60)
    return path


def lying_jpeg(width: int, height: int) -> bytes:
    """A complete 16x16 JPEG whose frame header is patched to say ``width`` x ``height``."""
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 30, 30)).save(buf, "JPEG")
    data = bytearray(buf.getvalue())
    sof = data.find(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


def lying_png(width: int, height: int) -> bytes:
    """A valid PNG header for ``width`` x ``height`` RGB followed by one row of pixel data."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    one_row = zlib.compress(b"\0" + b"\x80" * (3 * width), 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", one_row) + chunk(b"IEND", b"")
