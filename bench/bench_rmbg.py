"""RMBG-1.4 speed: network latency at 1024x1024 and end-to-end cutout of the same photo.

Prints one JSON object. Example: python bench/bench_rmbg.py --device cpu --runs 5
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

from matting import weights
from matting.cutout import cutout_alpha, network_input
from matting.device import select_device
from matting.rmbg import load_rmbg

SHARED = Path(os.environ.get("ABRAR_SHARED_DIR", Path(__file__).resolve().parents[2] / "shared"))
PHOTO = SHARED / "media" / "images_nogt" / "girl-919048_1280.jpg"


def latency_ms(fn: Callable[[], object], runs: int, warmup: int, device: torch.device) -> dict:
    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - start) * 1e3)
    p50, p95 = np.percentile(times, [50, 95])
    return {"p50_ms": round(float(p50), 1), "p95_ms": round(float(p95), 1),
            "min_ms": round(min(times), 1)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--precision", default="auto", help="auto | fp32 | fp16")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, help="torch and ONNX Runtime intra-op threads (CPU)")
    parser.add_argument("--backend", default="torch", choices=["torch", "onnxruntime"],
                        help="onnxruntime: the server's CPU default (ABRAR_BACKEND=auto)")
    parser.add_argument("--weights", type=Path, help="checkpoint; default: the resolver's")
    parser.add_argument("--image", type=Path, default=PHOTO, help="photo for the end-to-end cutout")
    args = parser.parse_args(argv)

    load_before = os.getloadavg()[0]
    if args.threads:
        torch.set_num_threads(args.threads)
    choice = select_device(args.device, args.precision)
    path = weights.resolve("rmbg", args.weights, download=False)
    start = time.perf_counter()
    model = load_rmbg(path, device=choice.device, dtype=choice.dtype)
    if args.backend == "onnxruntime":
        from matting.rmbg.onnx_backend import OnnxRMBG

        model = OnnxRMBG(model, threads=args.threads)  # the export is part of the load time
    load_s = time.perf_counter() - start

    with Image.open(args.image) as im:
        rgb = np.asarray(im.convert("RGB"))
    with torch.inference_mode():
        x = network_input(rgb, choice.device, choice.dtype)
        network = latency_ms(lambda: model(x), args.runs, args.warmup, choice.device)
    cutout = latency_ms(lambda: cutout_alpha(model, rgb), args.runs, args.warmup, choice.device)

    result = {
        "model": "rmbg-1.4 (IS-Net)",
        "weights": path.name,
        "backend": args.backend,
        "device": str(choice.device),
        "dtype": str(choice.dtype).removeprefix("torch."),
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        # Other processes on the machine skew CPU numbers; record how busy it was.
        "loadavg_1m_at_start": round(load_before, 2),
        "torch": torch.__version__,
        "runs": args.runs,
        "warmup": args.warmup,
        "load_s": round(load_s, 2),
        "network_1024x1024": network,
        "cutout_end_to_end": {"image": args.image.name, "width": rgb.shape[1], "height": rgb.shape[0],
                              **cutout},
        # ru_maxrss is in KiB on Linux.
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    if choice.device.type == "cuda":
        result["device_name"] = torch.cuda.get_device_name(choice.device)
        result["peak_cuda_mib"] = round(torch.cuda.max_memory_allocated(choice.device) / 2**20, 1)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
