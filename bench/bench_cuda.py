"""RVM on a CUDA GPU: fp32 vs fp16, eager vs CUDA graphs (vs torch.compile), each with
its quality, plus batched throughput. Prints JSON.

Per setting and case (frame size @ downsample ratio):
- ``end_to_end``: ``VideoMattingSession.process`` (uint8 frame from the host in, float32
  alpha and foreground on the host out, state carried): what a live session pays.
- ``network``: the network alone on a frame already on the GPU, synchronised per frame.
Batched throughput: the network on B frames of B streams at once (``--batch-case``).
Quality: MAD (x1e3) and dtSSD (x1e2) on ``shared/media/temporal/p3m_00a7a27c_porch_512x288``
(60 frames, state carried), resized to 640x360, at each ``--quality-ratios``.

    python bench/bench_cuda.py --frames 200 --warmup 20
    python bench/bench_cuda.py --modes eager,graphs,compile --cases 1920x1080@0.25
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ABRAR_SHARED_DIR", REPO.parent / "shared"))
VIDEO = SHARED / "media/video/pixabay_thoughtful_35590_8s_640x360.mp4"
CLIP = SHARED / "media/temporal/p3m_00a7a27c_porch_512x288"
QUALITY_SIZE = (640, 360)
os.environ.setdefault("ABRAR_MODELS_DIR", str(SHARED / "models"))


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", help="cuda | cuda:N (cpu only to try the script)")
    p.add_argument("--precisions", default="fp32,fp16")
    p.add_argument("--modes", default="eager,graphs", help="eager, graphs (CUDA graphs), compile (torch.compile)")
    p.add_argument("--cases", default="640x480@0.75,1280x720@0.375,1280x720@0.5,1920x1080@0.25,1920x1080@0.5")
    p.add_argument("--frames", type=int, default=200, help="timed frames per case")
    p.add_argument("--warmup", type=int, default=20, help="untimed frames per case")
    p.add_argument("--batches", default="1,2,4,8,16,32", help="batch sizes for the throughput table")
    p.add_argument("--batch-case", default="1280x720@0.375")
    p.add_argument("--batch-iters", type=int, default=30)
    p.add_argument("--quality-ratios", default="0.75,0.5")
    p.add_argument("--quality-frames", type=int, default=60)
    return p.parse_args()


def load_frames(path: Path, size: tuple[int, int], count: int) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))  # OpenCV's FFmpeg: no PyAV needed on a bare GPU box
    frames = []
    while len(frames) < count:
        ok, bgr = capture.read()
        if not ok:
            break
        frames.append(cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), size, interpolation=cv2.INTER_LINEAR))
    capture.release()
    if not frames:
        sys.exit(f"no frames decoded from {path}")
    return frames


def parse_case(case: str) -> tuple[int, int, float]:
    size, ratio = case.split("@")
    width, height = map(int, size.split("x"))
    return width, height, float(ratio)


def build(model: torch.nn.Module, mode: str) -> torch.nn.Module:
    if mode == "eager":
        return model
    if mode == "graphs":
        from matting.cuda_graphs import CudaGraphMattingNetwork

        return CudaGraphMattingNetwork(model)
    if mode == "compile":
        compiled = copy.deepcopy(model)
        compiled.coarse = torch.compile(compiled.coarse, dynamic=False)
        return compiled
    raise ValueError(f"unknown mode {mode!r}")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def summary(ms: list[float]) -> dict:
    a = np.asarray(ms)
    return {"fps": round(1e3 / a.mean(), 1), "ms_p50": round(float(np.percentile(a, 50)), 2),
            "ms_p95": round(float(np.percentile(a, 95)), 2)}


def time_end_to_end(net, frames, ratio: float, warmup: int, timed: int) -> dict:
    from matting.session import VideoMattingSession

    session = VideoMattingSession(net, downsample_ratio=ratio)
    ms = []
    for i in range(warmup + timed):
        start = time.perf_counter()
        session.process(frames[i % len(frames)])  # host arrays out: synchronised
        if i >= warmup:
            ms.append((time.perf_counter() - start) * 1e3)
    return summary(ms)


def to_device(frames, device, dtype) -> list[torch.Tensor]:
    from matting.session import network_input

    return [network_input(f, device, dtype) for f in frames]


def time_network(net, srcs: list[torch.Tensor], ratio: float, warmup: int, timed: int) -> dict:
    from matting.session import EMPTY_STATE, step

    state, ms = EMPTY_STATE, []
    device = srcs[0].device
    for i in range(warmup + timed):
        sync(device)
        start = time.perf_counter()
        _, _, state = step(net, srcs[i % len(srcs)], state, ratio)
        sync(device)
        if i >= warmup:
            ms.append((time.perf_counter() - start) * 1e3)
    return summary(ms)


def batch_throughput(net, srcs: list[torch.Tensor], ratio: float, batches: list[int], iters: int) -> list[dict]:
    from matting.session import EMPTY_STATE, step

    rows = []
    device = srcs[0].device
    for b in batches:
        batch = [torch.cat([srcs[(k * 7 + i) % len(srcs)] for k in range(b)]) for i in range(4)]
        state = EMPTY_STATE
        for i in range(5):
            _, _, state = step(net, batch[i % 4], state, ratio)
        sync(device)
        start = time.perf_counter()
        for i in range(iters):
            _, _, state = step(net, batch[i % 4], state, ratio)
        sync(device)
        per_pass = (time.perf_counter() - start) / iters
        rows.append({"batch": b, "ms_per_pass": round(per_pass * 1e3, 2), "frames_per_s": round(b / per_pass, 1)})
    return rows


def quality(net, frames, truths, ratio: float) -> dict:
    from matting import metrics
    from matting.session import VideoMattingSession

    session = VideoMattingSession(net, downsample_ratio=ratio)
    alphas = [session.process(f).alpha for f in frames]
    mad = [metrics.mad(a, t) for a, t in zip(alphas, truths, strict=False)]
    return {"mad": round(float(np.mean(mad)), 3), "dtssd": round(metrics.dtssd(alphas, truths), 3)}


def quality_inputs(count: int):
    from PIL import Image

    frames = load_frames(CLIP / "com.mkv", QUALITY_SIZE, count)
    truths = []
    for i in range(len(frames)):
        with Image.open(CLIP / "pha" / f"{i:04d}.png") as im:
            truths.append(np.asarray(im.convert("L").resize(QUALITY_SIZE, Image.BILINEAR), np.float32) / 255)
    return frames, truths


def main() -> None:
    args = parse_args()
    from matting import weights
    from matting.device import select_device
    from matting.rvm import load_rvm
    from matting.rvm.network import network_size

    source = load_frames(VIDEO, (640, 360), 16)
    clip_frames, truths = quality_inputs(args.quality_frames)
    path = weights.resolve("rvm", download=False)
    settings = []
    for precision in args.precisions.split(","):
        choice = select_device(args.device, precision)
        base = load_rvm(path, device=choice.device, dtype=choice.dtype)
        for mode in args.modes.split(","):
            started = time.perf_counter()
            net = build(base, mode)
            row = {"precision": precision, "mode": mode, "cases": []}
            for case in args.cases.split(","):
                width, height, ratio = parse_case(case)
                frames = [cv2.resize(f, (width, height), interpolation=cv2.INTER_LINEAR) for f in source]
                srcs = to_device(frames, choice.device, choice.dtype)
                row["cases"].append({
                    "case": case, "network_input": "x".join(map(str, network_size(height, width, ratio)[::-1])),
                    "end_to_end": time_end_to_end(net, frames, ratio, args.warmup, args.frames),
                    "network": time_network(net, srcs, ratio, args.warmup, args.frames)})
                print(json.dumps({"precision": precision, "mode": mode, **row["cases"][-1]}), file=sys.stderr,
                      flush=True)
            width, height, ratio = parse_case(args.batch_case)
            srcs = to_device([cv2.resize(f, (width, height)) for f in source], choice.device, choice.dtype)
            row["batched"] = {"case": args.batch_case, "rows": batch_throughput(
                net, srcs, ratio, [int(b) for b in args.batches.split(",")], args.batch_iters)}
            print(json.dumps({"precision": precision, "mode": mode, "batched": row["batched"]}), file=sys.stderr,
                  flush=True)
            row["quality"] = {str(r): quality(net, clip_frames, truths, float(r))
                              for r in args.quality_ratios.split(",")}
            row["seconds_incl_capture_or_compile"] = round(time.perf_counter() - started, 1)
            if mode == "graphs":
                row["graphs_captured"] = net.graph_count
            print(json.dumps({"precision": precision, "mode": mode, "quality": row["quality"]}), file=sys.stderr,
                  flush=True)
            settings.append(row)
        del base
    report = {"bench": "RVM on CUDA: precision x execution mode", "weights": path.name,
              "torch": torch.__version__, "frames": args.frames, "warmup": args.warmup, "settings": settings}
    device = torch.device(args.device)
    if device.type == "cuda":
        report["gpu"] = torch.cuda.get_device_name(device)
        report["cuda_peak_allocated_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
