"""What a live session's video codecs cost the server's CPU, per frame and per core.

Every live session makes the server decode the client's video and encode the matted
video back, in software, with aiortc's own encoders and decoders (the settings a real
session gets). On a GPU server those run on the CPU while RVM runs on the GPU, so they
bound how many sessions one machine sustains whatever the GPU can matte. For each codec:
ms per frame (p50 / p95) to encode the real clip (resized to ``--size``) and to decode
what was encoded, the Y-PSNR of the decoded frames against those encoded (dB, at
``--bitrate``), and the sessions at ``--fps`` one core carries for the codecs alone.
``vp8`` is aiortc's VP8 encoder as it comes, ``vp8_server`` the one the server sends with
(server/rtp_senders.py: no denoiser, a faster speed). Encoders run with the thread count
aiortc picks for the size on this machine. Prints JSON.

    python bench/bench_codecs.py --size 1280x720
    python bench/bench_codecs.py --size 640x480 --frames 150 --bitrate 500000
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import av
import numpy as np
from aiortc.codecs.h264 import H264Decoder, H264Encoder, H264PayloadDescriptor
from aiortc.codecs.vpx import Vp8Decoder, Vp8Encoder, VpxPayloadDescriptor
from aiortc.jitterbuffer import JitterFrame

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the clip loader the live benches and tests use
sys.path.insert(0, str(REPO))
SHARED = Path(os.environ.get("ABRAR_SHARED_DIR", REPO.parent / "shared"))

from server.rtp_senders import RealtimeVp8Encoder  # noqa: E402
from webrtc_client import load_clip, y_psnr, yuv_frames  # noqa: E402

VIDEO = SHARED / "media/video/pixabay_thoughtful_35590_8s_640x360.mp4"
WARMUP = 30


def parse_args() -> argparse.Namespace:
    summary, details = (__doc__ or "").split("\n\n", 1)
    p = argparse.ArgumentParser(description=summary, epilog=details,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="1280x720", help="WIDTHxHEIGHT the clip is resized to")
    p.add_argument("--frames", type=int, default=120, help="frames encoded and decoded per codec (after warm-up)")
    p.add_argument("--fps", type=float, default=30.0, help="session frame rate for the sessions-per-core figure")
    p.add_argument("--bitrate", type=int, default=1_500_000,
                   help="encoder target, bit/s (default: aiortc's ceiling; it starts sessions at 500000)")
    return p.parse_args()


def percentiles(ms: list[float]) -> dict:
    return {"p50": round(float(np.percentile(ms, 50)), 2), "p95": round(float(np.percentile(ms, 95)), 2)}


def measure(name: str, encoder, decoder, descriptor, frames: list[av.VideoFrame], fps: float, bitrate: int) -> dict:
    encoder.target_bitrate = bitrate
    encoded, encode_ms = [], []
    for frame in frames:
        started = time.perf_counter()
        payloads, timestamp = encoder.encode(frame)
        encode_ms.append((time.perf_counter() - started) * 1e3)
        encoded.append((b"".join(descriptor.parse(p)[1] for p in payloads), timestamp))
    decode_ms, decoded = [], []
    for data, timestamp in encoded:
        started = time.perf_counter()
        decoded += decoder.decode(JitterFrame(data=data, timestamp=timestamp))
        decode_ms.append((time.perf_counter() - started) * 1e3)
    if len(decoded) < len(frames) - 2:  # a decoder may hold a frame or two back
        raise RuntimeError(f"{name}: {len(decoded)} of {len(frames)} frames decoded; the timing would mean nothing")
    encode, decode = encode_ms[WARMUP:], decode_ms[WARMUP:]
    per_frame = float(np.mean(encode) + np.mean(decode))
    # Decoders keep frame order; one that held frames back holds the last ones.
    quality = [y_psnr(d, s) for d, s in zip(decoded[WARMUP:], frames[WARMUP:], strict=False)]
    return {"codec": name, "encode_ms": percentiles(encode), "decode_ms": percentiles(decode),
            "y_psnr_db": round(float(np.mean(quality)), 2),
            "kbit_s": round(sum(len(d) for d, _ in encoded[WARMUP:]) * 8 * fps / len(encoded[WARMUP:]) / 1e3),
            "sessions_per_core": round(1000.0 / (per_frame * fps), 2)}


def main() -> None:
    args = parse_args()
    width, height = map(int, args.size.split("x"))
    frames = yuv_frames(load_clip(VIDEO, (width, height)), args.frames + WARMUP)
    cases = [("vp8", Vp8Encoder(), Vp8Decoder(), VpxPayloadDescriptor),
             ("vp8_server", RealtimeVp8Encoder(), Vp8Decoder(), VpxPayloadDescriptor),
             ("h264", H264Encoder(), H264Decoder(), H264PayloadDescriptor)]
    results = [measure(*case, frames, args.fps, args.bitrate) for case in cases]
    print(json.dumps({
        "bench": f"aiortc's software codecs at {args.size}: encode the clip, decode it back",
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "load_avg_1min": os.getloadavg()[0]},
        "size": args.size, "frames": args.frames, "fps": args.fps, "bitrate": args.bitrate, "pyav": av.__version__,
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "results": results,
    }, indent=2))


if __name__ == "__main__":
    main()
