"""Many streams on one model: throughput and latency with and without cross-session
batching (matting.batching.FrameBatcher), for 1..N concurrent sessions.

Each session is a thread feeding real video frames (resized to ``--size``) through its
own VideoMattingSession. With ``--pace-fps`` each stream is a camera: a frame is due
every 1/fps s, a session that falls behind skips to the newest frame (as the live
path does), and latency counts from when the frame was due. A case is "sustained" when
every stream keeps >= 95 % of the pace with p95 latency under ``--budget-ms``.

    python bench/bench_batching.py --device cpu --sessions 1,2,4 --seconds 8
    python bench/bench_batching.py --device cuda --size 1280x720 --pace-fps 30 --budget-ms 100 \\
        --sessions 1,2,4,8,12,16,24,32 --ratio 0.375
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import threading
import time
from pathlib import Path

import av
import cv2
import numpy as np
import torch

from matting.config import RuntimeConfig
from matting.runtime import MattingRuntime
from matting.session import VideoMattingSession

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ABRAR_SHARED_DIR", REPO.parent / "shared"))
VIDEO = SHARED / "media/video/pixabay_thoughtful_35590_8s_640x360.mp4"
os.environ.setdefault("ABRAR_MODELS_DIR", str(SHARED / "models"))


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--precision", default="auto", help="auto | fp32 | fp16 | int8 (CPU, onnxruntime)")
    p.add_argument("--backend", default="torch", help="torch | onnxruntime | auto")
    p.add_argument("--size", default="640x480")
    p.add_argument("--ratio", type=float, default=0.5)
    p.add_argument("--sessions", default="1,2,4", help="comma-separated session counts")
    p.add_argument("--modes", default="alone,batched", help="alone (one forward per frame) and/or batched")
    p.add_argument("--window-ms", type=float, default=5.0, help="batcher window")
    p.add_argument("--seconds", type=float, default=8.0, help="measured seconds per case")
    p.add_argument("--warmup-seconds", type=float, default=2.0)
    p.add_argument("--pace-fps", type=float, default=0.0, help="camera rate per stream; 0 = as fast as possible")
    p.add_argument("--threads", type=int, default=None,
                   help="model threads on a CPU (default: one per core); 1 runs streams' frames side by side")
    p.add_argument("--budget-ms", type=float, default=100.0, help="p95 latency limit for 'sustained'")
    p.add_argument("--cuda-graphs", action=argparse.BooleanOptionalAction, default=True,
                   help="replay RVM from CUDA graphs on a GPU (the server's default)")
    return p.parse_args()


def stream(session: VideoMattingSession, frames: list[np.ndarray], offset: int, args, t0: float,
           out: dict, barrier: threading.Barrier) -> None:
    barrier.wait()
    lat, done, skipped, i = [], 0, 0, 0
    end = t0 + args.warmup_seconds + args.seconds
    period = 1 / args.pace_fps if args.pace_fps else 0.0
    while True:
        now = time.monotonic()
        if now >= end:
            break
        if period:
            newest = int((now - t0) / period)  # the camera's latest frame
            if newest < i:
                time.sleep(t0 + i * period - now)
                continue
            skipped += newest - i
            i, due = newest, t0 + newest * period
        else:
            due = now
        session.process(frames[(offset + i) % len(frames)])
        finished = time.monotonic()
        if due >= t0 + args.warmup_seconds:
            lat.append((finished - due) * 1e3)
            done += 1
        i += 1
    out.update(latencies=lat, frames=done, skipped=skipped)


def warm_batches(model, frames, n: int, ratio: float) -> None:
    """Run every batch size up to n once, so that no CUDA graph capture lands in a timed frame."""
    from matting.session import EMPTY_STATE, network_input, step

    weight = next(model.parameters())
    src = network_input(frames[0], weight.device, weight.dtype)
    for b in range(1, n + 1):
        step(model, src.expand(b, -1, -1, -1).contiguous(), EMPTY_STATE, ratio)


def run_case(runtime: MattingRuntime, frames, n: int, mode: str, args) -> dict:
    from matting.batching import FrameBatcher

    model = runtime.video_model()
    batcher = FrameBatcher(model, max_batch=n, window_ms=args.window_ms) if mode == "batched" else None
    if batcher:
        warm_batches(model, frames, n, args.ratio)
    sessions = [VideoMattingSession(model, args.ratio, batcher=batcher) for _ in range(n)]
    results: list[dict] = [{} for _ in range(n)]
    barrier = threading.Barrier(n + 1)
    t0 = time.monotonic() + 0.2
    threads = [threading.Thread(target=stream, args=(s, frames, 7 * k, args, t0, r, barrier))
               for k, (s, r) in enumerate(zip(sessions, results, strict=False))]
    for t in threads:
        t.start()
    barrier.wait()
    for t in threads:
        t.join()
    if batcher:
        batcher.close()
    lat = np.concatenate([r["latencies"] for r in results])
    per_stream_fps = [r["frames"] / args.seconds for r in results]
    # no frame finished inside the measured window: the case is far beyond this machine
    p50, p95 = np.percentile(lat, [50, 95]) if lat.size else (float("inf"), float("inf"))
    row = {"sessions": n, "mode": mode, "total_fps": round(sum(per_stream_fps), 2),
           "per_stream_fps_min": round(min(per_stream_fps), 2),
           "latency_ms_p50": round(float(p50), 1), "latency_ms_p95": round(float(p95), 1),
           "skipped_frames": sum(r["skipped"] for r in results)}
    if batcher:
        row["mean_batch"] = round(batcher.stats.mean_batch, 2)
    if args.pace_fps:
        row["sustained"] = bool(min(per_stream_fps) >= 0.95 * args.pace_fps and p95 <= args.budget_ms)
    return row


def main() -> None:
    args = parse_args()
    runtime = MattingRuntime(RuntimeConfig(device=args.device, precision=args.precision, backend=args.backend,
                                           download=False, cuda_graphs=args.cuda_graphs, threads=args.threads))
    width, height = map(int, args.size.split("x"))
    with av.open(str(VIDEO)) as src:
        frames = [cv2.resize(f.to_ndarray(format="rgb24"), (width, height)) for _, f in
                  zip(range(32), src.decode(video=0), strict=False)]
    VideoMattingSession(runtime.video_model(), args.ratio).process(frames[0])  # warm-up
    load = [os.getloadavg()[0]]
    rows = []
    for n in map(int, args.sessions.split(",")):
        for mode in args.modes.split(","):
            rows.append(run_case(runtime, frames, n, mode, args))
            load.append(os.getloadavg()[0])
            print(json.dumps(rows[-1]), flush=True, file=sys.stderr)
    report = {
        "bench": "concurrent sessions, one shared model, with and without cross-session batching",
        "size": args.size, "downsample_ratio": args.ratio, "backend": runtime.backend,
        "device": runtime.choice.describe(), "cuda_graphs": args.cuda_graphs and runtime.device.type == "cuda",
        "pace_fps": args.pace_fps or None,
        "budget_ms": args.budget_ms, "window_ms": args.window_ms, "seconds": args.seconds,
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "torch": torch.__version__, "threads": torch.get_num_threads(),
                    "load_avg_1min": {"min": min(load), "max": max(load)}},
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "cases": rows,
    }
    if runtime.device.type == "cuda":
        report["gpu"] = torch.cuda.get_device_name(runtime.device)
        report["cuda_peak_allocated_mb"] = round(torch.cuda.max_memory_allocated(runtime.device) / 2**20)
    if args.pace_fps:
        report["max_sustained_sessions"] = {
            mode: max((r["sessions"] for r in rows if r["mode"] == mode and r["sustained"]), default=0)
            for mode in args.modes.split(",")}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
