"""RVM speed: fps and per-frame latency of a VideoMattingSession (uint8 frame in, alpha
and foreground out, recurrent state carried) at several sizes and downsample ratios, on
real video frames resized to each size. Prints JSON; warm-up frames are not timed.

    python bench/bench_rvm.py --device cpu --frames 20
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import av
import numpy as np
import torch
from PIL import Image

from matting import weights
from matting.device import select_device
from matting.rvm import REFINER_CHOICES, load_rvm
from matting.rvm.network import network_size
from matting.session import VideoMattingSession, auto_downsample_ratio

SHARED = Path(os.environ.get("ABRAR_SHARED_DIR", Path(__file__).resolve().parents[2] / "shared"))
VIDEO = SHARED / "media/video/pixabay_thoughtful_35590_8s_640x360.mp4"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--precision", default="auto", help="auto | fp32 | fp16")
    p.add_argument("--refiner", default="auto", choices=REFINER_CHOICES)
    p.add_argument("--frames", type=int, default=20, help="timed frames per configuration")
    p.add_argument("--warmup", type=int, default=3, help="untimed frames per configuration")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--sizes", default="640x480,1280x720,1920x1080")
    p.add_argument("--ratios", default="auto,0.25,0.375,0.5")
    p.add_argument("--weights", type=Path, default=None, help="checkpoint (default: resolver, then shared/models)")
    return p.parse_args()


def source_frames(count: int) -> list[np.ndarray]:
    with av.open(str(VIDEO)) as container:
        return [f.to_ndarray(format="rgb24") for _, f in zip(range(count), container.decode(video=0), strict=False)]


def ratios_for(height: int, width: int, spec: str) -> list[tuple[float, bool]]:
    """(ratio, is_auto) pairs, without duplicates (auto often equals a listed ratio)."""
    auto = auto_downsample_ratio(height, width)
    pairs: dict[float, bool] = {}
    for item in spec.split(","):
        ratio = auto if item == "auto" else float(item)
        pairs[ratio] = pairs.get(ratio, False) or ratio == auto
    return sorted(pairs.items())


def run(model, frames: list[np.ndarray], ratio: float, warmup: int, timed: int) -> list[float]:
    session = VideoMattingSession(model, downsample_ratio=ratio)
    latencies = []
    for i in range(warmup + timed):
        start = time.perf_counter()
        session.process(frames[i % len(frames)])  # returns host arrays, so CUDA is synced
        if i >= warmup:
            latencies.append(time.perf_counter() - start)
    return latencies


def main() -> None:
    args = parse_args()
    choice = select_device(args.device, args.precision)
    if args.threads:
        torch.set_num_threads(args.threads)
    fallback = SHARED / "models" / weights.MODELS["rvm"].filename
    path = weights.find_local("rvm", args.weights) or fallback
    model = load_rvm(path, device=choice.device, dtype=choice.dtype, refiner=args.refiner)
    source = source_frames(16)
    load_before = os.getloadavg()[0]  # other processes on the CPU skew every figure
    results = []
    for size in args.sizes.split(","):
        width, height = map(int, size.split("x"))
        frames = [np.asarray(Image.fromarray(f).resize((width, height), Image.BILINEAR)) for f in source]
        for ratio, is_auto in ratios_for(height, width, args.ratios):
            ms = np.array(run(model, frames, ratio, args.warmup, args.frames)) * 1e3
            row = {"size": size, "downsample_ratio": ratio, "auto": is_auto,
                   "network_input": "x".join(map(str, network_size(height, width, ratio)[::-1])),
                   "fps": round(1e3 / ms.mean(), 2), "latency_ms_p50": round(float(np.percentile(ms, 50)), 1),
                   "latency_ms_p95": round(float(np.percentile(ms, 95)), 1)}
            print(json.dumps(row), file=sys.stderr)
            results.append(row)
    report = {
        "model": "rvm_mobilenetv3", "weights": str(path), "refiner": model.refiner_name,
        "device": choice.describe(), "torch": torch.__version__, "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average_1m": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
        "warmup_frames": args.warmup, "timed_frames": args.frames,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "results": results,
    }
    if choice.device.type == "cuda":
        report["gpu"] = torch.cuda.get_device_name(choice.device)
        report["cuda_peak_allocated_mb"] = round(torch.cuda.max_memory_allocated(choice.device) / 2**20, 1)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
