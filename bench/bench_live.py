"""Live path end to end at 640x480, as a WebRTC session runs it on this machine.

A 30 fps VP8 stream (the real clip, resized to 640x480) arrives in real time; a decoder
thread decodes each packet as it "arrives" and puts the frame in the session's one-slot
mailbox (stale frames are replaced, as in server.live.tracks); the consumer takes the
newest frame through ``LivePipeline.process`` (RGB conversion, RVM, blur background
composite) and encodes the result with the server's VP8 encoder (server/rtp_senders.py)
or aiortc's H.264 one, the way aiortc's sender does: recv, then encode, then the next
recv. OpenCV runs without its own threads, as in the server.

Added latency = packet arrival -> encoded output (decode, wait, matte, composite,
encode; no network). Each configuration runs in its own child process (thread settings
and peak RSS are per process), round-robin for ``--rounds`` rounds. Prints JSON.

    python bench/bench_live.py --seconds 10 --rounds 3
    python bench/bench_live.py --configs ort_0.375 --codec h264
    python bench/bench_live.py --configs ort_int8_adaptive_45ms --sessions 2   # two sessions, one lane
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ABRAR_SHARED_DIR", REPO.parent / "shared"))
VIDEO = SHARED / "media/video/pixabay_thoughtful_35590_8s_640x360.mp4"
SIZE = (640, 480)
SOURCE_FPS = 30
os.environ.setdefault("ABRAR_MODELS_DIR", str(SHARED / "models"))

# name -> (backend, downsample ratio or None for auto, latency budget ms for the adaptive
# ratio, precision)
CONFIGS = {
    "before_torch_auto": ("torch", None, None, "auto"),   # the defaults before this work: ratio 0.75
    "torch_0.5": ("torch", 0.5, None, "auto"),
    "torch_0.375": ("torch", 0.375, None, "auto"),
    "ort_0.5": ("onnxruntime", 0.5, None, "fp32"),
    "ort_0.375": ("onnxruntime", 0.375, None, "fp32"),
    "ort_0.25": ("onnxruntime", 0.25, None, "fp32"),
    "ort_adaptive_45ms": ("onnxruntime", None, 45.0, "fp32"),
    "ort_int8_0.5": ("onnxruntime", 0.5, None, "int8"),
    "ort_int8_0.375": ("onnxruntime", 0.375, None, "int8"),
    "ort_int8_adaptive_45ms": ("onnxruntime", None, 45.0, "int8"),
}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated, of {', '.join(CONFIGS)}")
    p.add_argument("--seconds", type=float, default=10.0, help="measured seconds per config per round")
    p.add_argument("--warmup-seconds", type=float, default=2.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch/ORT threads (default: cores)")
    p.add_argument("--codec", choices=("vp8", "h264"), default="vp8")
    p.add_argument("--lane-workers", type=int, default=2,
                   help="live-lane threads (the server's ABRAR_INFERENCE_WORKERS; 2 on a CPU by default)")
    p.add_argument("--sessions", type=int, default=1,
                   help="concurrent sessions sharing the live lane (figures are the slowest one's)")
    p.add_argument("--background", default="blur", help="as the live page: blur, green, ...")
    p.add_argument("--child", help=argparse.SUPPRESS)
    return p.parse_args()


def vp8_packets(seconds: float) -> list[bytes]:
    """The clip at 640x480 as VP8 packets (libvpx realtime, like a browser sends), looped."""
    import av
    import cv2

    with av.open(str(VIDEO)) as src:
        frames = [cv2.resize(f.to_ndarray(format="rgb24"), SIZE) for f in src.decode(video=0)]
    enc = av.CodecContext.create("libvpx", "w")
    enc.width, enc.height, enc.pix_fmt = *SIZE, "yuv420p"
    enc.bit_rate = 1_500_000
    enc.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    packets = []
    for i in range(int(seconds * SOURCE_FPS)):
        frame = av.VideoFrame.from_ndarray(frames[i % len(frames)], format="rgb24").reformat(format="yuv420p")
        frame.pts = i
        packets += [bytes(p) for p in enc.encode(frame)]
    packets += [bytes(p) for p in enc.encode(None)]
    return packets


async def run_live(config: str, args: argparse.Namespace) -> dict:
    import av
    import numpy as np
    from aiortc.codecs.h264 import H264Encoder

    from matting.compositing import parse_background
    from matting.config import RuntimeConfig
    from matting.runtime import MattingRuntime
    from server.lanes import serial_opencv
    from server.live.latest import LatestFrame
    from server.live.pipeline import LivePipeline
    from server.rtp_senders import RealtimeVp8Encoder

    backend, ratio, budget, precision = CONFIGS[config]
    serial_opencv()
    runtime = MattingRuntime(RuntimeConfig(device="cpu", backend=backend, precision=precision,
                                           threads=args.threads, download=False))
    runtime.video_model()
    total_s = args.warmup_seconds + args.seconds
    packets = vp8_packets(total_s + 1)
    # the live lane's threads: two by default, as the server has on a CPU (ABRAR_INFERENCE_WORKERS auto)
    executor = ThreadPoolExecutor(args.lane_workers, thread_name_prefix="inference")
    loop = asyncio.get_running_loop()
    stop = threading.Event()
    cpu_start = time.process_time()
    started = time.monotonic()

    async def session(k: int) -> dict:
        pipeline = LivePipeline(runtime, executor, parse_background(args.background),
                                recordings_dir=Path(tempfile.gettempdir()), name=f"bench-{k}",
                                downsample_ratio=ratio, matte_budget_ms=budget)
        slot: LatestFrame = LatestFrame()
        dropped = [0]

        def receive() -> None:  # aiortc decodes in its own thread as packets arrive
            decoder = av.CodecContext.create("vp8", "r")
            start = time.monotonic() + k / (SOURCE_FPS * args.sessions)  # cameras not in step
            for i, data in enumerate(packets):
                due = start + i / SOURCE_FPS
                if stop.is_set():
                    return
                time.sleep(max(0.0, due - time.monotonic()))
                arrived = time.monotonic()
                for frame in decoder.decode(av.Packet(data)):
                    frame.pts, frame.time_base = i * 3000, Fraction(1, 90000)
                    loop.call_soon_threadsafe(deliver, frame, arrived)
            loop.call_soon_threadsafe(slot.end, EOFError())

        def deliver(frame, arrived: float) -> None:
            dropped[0] += slot.put((frame, arrived))

        encoder = H264Encoder() if args.codec == "h264" else RealtimeVp8Encoder()
        receiver = threading.Thread(target=receive, daemon=True)
        receiver.start()
        latencies, outputs, ratios = [], [], []
        try:
            while True:
                (frame, arrived), _ = await slot.get()
                out = await pipeline.process(frame, received_at=arrived)
                await loop.run_in_executor(None, encoder.encode, out)
                done = time.monotonic()
                if done - started >= args.warmup_seconds:
                    latencies.append((done - arrived) * 1e3)
                    outputs.append(done)
                    ratios.append(pipeline._session.ratio_for(frame.height, frame.width))  # read-only peek
                if done - started >= total_s:
                    break
        except EOFError:
            pass
        stop.set()
        receiver.join(timeout=5)
        lat = np.asarray(latencies)
        span = outputs[-1] - outputs[0] if len(outputs) > 1 else float("nan")
        return {"fps": round((len(outputs) - 1) / span, 2), "ratios_used": sorted(set(ratios)),
                "added_latency_ms": {"p50": round(float(np.percentile(lat, 50)), 1),
                                     "p95": round(float(np.percentile(lat, 95)), 1),
                                     "max": round(float(lat.max()), 1)},
                "frames_out": len(outputs), "frames_dropped_total": dropped[0]}

    sessions = await asyncio.gather(*(session(k) for k in range(args.sessions)))
    cpu_s = time.process_time() - cpu_start
    executor.shutdown()
    slowest = min(sessions, key=lambda r: r["fps"])
    return {
        "config": config, "backend": runtime.backend, "precision": runtime.onnx_precision,
        "downsample_ratio": ratio, "adaptive_budget_ms": budget, "sessions": args.sessions,
        **{k: slowest[k] for k in ("fps", "ratios_used", "added_latency_ms", "frames_out", "frames_dropped_total")},
        "per_session": sessions if args.sessions > 1 else None,
        "cpu_cores_busy": round(cpu_s / (time.monotonic() - started), 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def main() -> None:
    args = parse_args()
    if args.child:
        print(json.dumps(asyncio.run(run_live(args.child, args))))
        return
    configs = args.configs.split(",")
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        sys.exit(f"unknown config(s) {unknown}; choose from {list(CONFIGS)}")
    load = [os.getloadavg()[0]]
    runs: dict[str, list[dict]] = {c: [] for c in configs}
    passthrough = ["--seconds", str(args.seconds), "--warmup-seconds", str(args.warmup_seconds),
                   "--codec", args.codec, "--background", args.background, "--sessions", str(args.sessions),
                   "--lane-workers", str(args.lane_workers)]
    if args.threads:
        passthrough += ["--threads", str(args.threads)]
    for r in range(args.rounds):
        for config in configs if r % 2 == 0 else configs[::-1]:
            child = subprocess.run([sys.executable, __file__, "--child", config, *passthrough],
                                   cwd=REPO, capture_output=True, text=True, check=False)
            if child.returncode:
                sys.exit(f"{config} failed:\n{child.stderr[-4000:]}")
            runs[config].append(json.loads(child.stdout.strip().splitlines()[-1]))
            load.append(os.getloadavg()[0])
            print(json.dumps(runs[config][-1]), file=sys.stderr)
    import statistics

    import torch

    summary = []
    for config, rs in runs.items():
        summary.append({
            "config": config, "backend": rs[0]["backend"], "downsample_ratio": rs[0]["downsample_ratio"],
            "adaptive_budget_ms": rs[0]["adaptive_budget_ms"],
            "fps_median": statistics.median(r["fps"] for r in rs),
            "latency_p50_ms_median": statistics.median(r["added_latency_ms"]["p50"] for r in rs),
            "latency_p95_ms_median": statistics.median(r["added_latency_ms"]["p95"] for r in rs),
            "peak_rss_mb_max": max(r["peak_rss_mb"] for r in rs),
            "runs": rs,
        })
    print(json.dumps({
        "bench": f"live path 640x480 @ {SOURCE_FPS} fps in: VP8 decode -> LivePipeline "
                 f"(RVM + {args.background} composite) -> {args.codec} encode (the server's encoder)",
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "torch": torch.__version__, "threads": args.threads or "default (cores)",
                    "load_avg_1min": {"min": min(load), "max": max(load)}},
        "seconds_per_run": args.seconds, "rounds": args.rounds, "configs": summary,
    }, indent=2))


if __name__ == "__main__":
    main()
