"""RVM CPU speed levers at 640x480, each with its effect on speed AND on quality.

Speed: ms per frame through the same steps as ``VideoMattingSession.process`` (uint8
frame in, alpha and foreground as numpy out, state carried), on real video frames
resized to 640x480. Settings that share a torch thread count run interleaved, a few
frames each in turn, in one child process; the thread counts alternate between child
processes (torch cannot switch its OpenMP pool reliably inside one process), for
``--rounds`` rounds. Figures are medians over all rounds.

Quality: MAD (x1e3) and dtSSD (x1e2) against the exact ground truth of
``shared/media/temporal/p3m_00a7a27c_porch_512x288`` (60 frames), resized to 640x360
so that a ratio means the same network width as at 640x480.

    python bench/bench_levers.py --rounds 5 --frames 8
    python bench/bench_levers.py --only baseline,ort --compile   # torch.compile takes minutes
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ABRAR_SHARED_DIR", REPO.parent / "shared"))
VIDEO = SHARED / "media/video/pixabay_thoughtful_35590_8s_640x360.mp4"
CLIP = SHARED / "media/temporal/p3m_00a7a27c_porch_512x288"
SIZE = (640, 480)
QUALITY_SIZE = (640, 360)
os.environ.setdefault("ABRAR_MODELS_DIR", str(SHARED / "models"))


@dataclass(frozen=True)
class Setting:
    name: str
    lever: str
    backend: str = "torch"          # torch | onnxruntime
    threads: int = 2                # torch intra-op threads (the whole process)
    ort_threads: int = 2
    ratio: float = 0.5
    refiner: str = "fast_guided_filter"
    grad: str = "inference_mode"    # inference_mode | no_grad
    channels_last: bool = False
    bf16: bool = False              # torch.autocast bfloat16 (a quality trade)
    int8: bool = False              # ORT static int8 (matting.quantize, as ABRAR_PRECISION=int8)
    compile: bool = False           # torch.compile of the encoder/decoder

    @property
    def plain(self) -> bool:
        """Runs through VideoMattingSession unchanged (the product path)."""
        return not (self.grad != "inference_mode" or self.channels_last or self.bf16 or self.compile)


BASE = Setting("baseline", "before: torch eager, 2 threads, ratio 0.5, fast guided filter")
SETTINGS = [
    BASE,
    replace(BASE, name="torch_1_thread", lever="threads", threads=1),
    replace(BASE, name="no_grad", lever="grad mode", grad="no_grad"),
    replace(BASE, name="channels_last", lever="memory format", channels_last=True),
    replace(BASE, name="bf16_autocast", lever="bf16 (quality trade)", bf16=True),
    replace(BASE, name="bf16_channels_last", lever="bf16 + memory format", bf16=True, channels_last=True),
    replace(BASE, name="bf16_channels_last_1_thread", lever="bf16 + memory format + threads", bf16=True,
            channels_last=True, threads=1),
    replace(BASE, name="bf16_ratio_0.375", lever="bf16 + resolution", bf16=True, ratio=0.375),
    replace(BASE, name="refiner_bilinear", lever="refiner", refiner="deep_guided_filter"),
    replace(BASE, name="ratio_0.25", lever="internal resolution", ratio=0.25),
    replace(BASE, name="ratio_0.375", lever="internal resolution", ratio=0.375),
    replace(BASE, name="ratio_0.75_auto", lever="internal resolution", ratio=0.75),
    replace(BASE, name="ort", lever="ONNX Runtime", backend="onnxruntime"),
    replace(BASE, name="ort_torch_1_thread", lever="ONNX Runtime + threads", backend="onnxruntime", threads=1),
    replace(BASE, name="ort_1_thread", lever="ONNX Runtime + threads", backend="onnxruntime",
            threads=1, ort_threads=1),
    replace(BASE, name="ort_ratio_0.375", lever="ONNX Runtime + resolution", backend="onnxruntime", ratio=0.375),
    replace(BASE, name="ort_ratio_0.375_torch_1_thread", lever="ONNX Runtime + resolution + threads",
            backend="onnxruntime", ratio=0.375, threads=1),
    replace(BASE, name="ort_ratio_0.25", lever="ONNX Runtime + resolution", backend="onnxruntime", ratio=0.25),
    replace(BASE, name="ort_int8", lever="int8 (ABRAR_PRECISION=int8)", backend="onnxruntime",
            int8=True),
]
COMPILE = replace(BASE, name="torch_compile", lever="torch.compile (inductor)", compile=True)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5, help="child processes per thread count")
    p.add_argument("--frames", type=int, default=8, help="timed frames per setting per round")
    p.add_argument("--warmup", type=int, default=2, help="untimed frames per setting per round")
    p.add_argument("--only", default="", help="comma-separated setting names (default: all)")
    p.add_argument("--compile", action="store_true", help="add torch.compile (compiles for minutes)")
    p.add_argument("--no-quality", action="store_true", help="skip the MAD/dtSSD pass")
    p.add_argument("--child", choices=("speed", "quality"), help=argparse.SUPPRESS)
    p.add_argument("--settings", help=argparse.SUPPRESS)
    return p.parse_args()


# -- child: build and run the settings --------------------------------------------------

def load_frames(path: Path, size: tuple[int, int], count: int | None = None):
    import av
    import cv2

    with av.open(str(path)) as container:
        frames = []
        for frame in container.decode(video=0):
            frames.append(cv2.resize(frame.to_ndarray(format="rgb24"), size, interpolation=cv2.INTER_LINEAR))
            if count and len(frames) == count:
                break
    return frames


class Stepper:
    """One stream under one setting: ``__call__(rgb)`` mattes a frame, state carried."""

    def __init__(self, setting: Setting, nets: dict):
        import torch

        from matting.session import VideoMattingSession

        self.s = setting
        self.model = nets[(setting.backend, setting.refiner, setting.int8, setting.ort_threads)]
        for flag, convert in (("channels_last", _channels_last), ("compile", _compiled)):
            if getattr(setting, flag):
                key = (flag, setting.refiner)
                if key not in nets:
                    nets[key] = convert(self.model)
                self.model = nets[key]
        self.session = VideoMattingSession(self.model, setting.ratio) if setting.plain else None
        self.state = (None, None, None, None)
        self.torch = torch

    def __call__(self, rgb):
        if self.session is not None:
            return self.session.process(rgb).alpha
        torch, s = self.torch, self.s
        src = torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0).float().div_(255)
        if s.channels_last:
            src = src.contiguous(memory_format=torch.channels_last)
        grad = torch.inference_mode() if s.grad == "inference_mode" else torch.no_grad()
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if s.bf16 else contextlib.nullcontext()
        with grad, autocast:
            fgr, pha, *self.state = self.model(src, *self.state, downsample_ratio=s.ratio)
        fgr[0].permute(1, 2, 0).float().contiguous().numpy()
        return pha[0, 0].float().numpy()


def _channels_last(model):
    import copy

    import torch

    return copy.deepcopy(model).to(memory_format=torch.channels_last)


def _compiled(model):
    import copy

    import torch

    compiled = copy.deepcopy(model)
    compiled.coarse = torch.compile(compiled.coarse, dynamic=False)
    return compiled


def build_nets(settings: list[Setting]) -> dict:
    import torch

    from matting import weights
    from matting.onnx_cache import OnnxCache
    from matting.rvm import load_rvm
    from matting.rvm.onnx_backend import OnnxMattingNetwork

    path = weights.resolve("rvm", download=False)
    nets: dict = {}
    for s in settings:
        key = (s.backend, s.refiner, s.int8, s.ort_threads)
        if key in nets:
            continue
        net = load_rvm(path, device="cpu", dtype=torch.float32, refiner=s.refiner)
        if s.backend == "onnxruntime":
            net = OnnxMattingNetwork(net, threads=s.ort_threads, precision="int8" if s.int8 else "fp32",
                                     cache=OnnxCache(path))
        nets[key] = net
    return nets


def child_speed(settings: list[Setting], frames_n: int, warmup: int) -> dict:
    import torch

    torch.set_num_threads(settings[0].threads)
    nets = build_nets(settings)
    frames = load_frames(VIDEO, SIZE, 16)
    steppers = {}
    compile_s = {}
    for s in settings:
        start = time.perf_counter()
        steppers[s.name] = Stepper(s, nets)
        for i in range(warmup):
            steppers[s.name](frames[i % len(frames)])
        if s.compile:
            compile_s[s.name] = round(time.perf_counter() - start, 1)
    times: dict[str, list[float]] = {s.name: [] for s in settings}
    block = 2  # frames per setting per turn: spreads load changes evenly over settings
    for turn in range(0, frames_n, block):
        for s in settings:
            for i in range(turn, min(turn + block, frames_n)):
                start = time.perf_counter()
                steppers[s.name](frames[(warmup + i) % len(frames)])
                times[s.name].append((time.perf_counter() - start) * 1e3)
    return {"times_ms": times, "compile_s": compile_s, "threads": torch.get_num_threads()}


def child_quality(settings: list[Setting]) -> dict:
    import numpy as np
    import torch
    from PIL import Image

    from matting import metrics

    torch.set_num_threads(2)
    frames = load_frames(CLIP / "com.mkv", QUALITY_SIZE)
    truths = []
    for i in range(len(frames)):
        with Image.open(CLIP / "pha" / f"{i:04d}.png") as im:
            truths.append(np.asarray(im.convert("L").resize(QUALITY_SIZE, Image.BILINEAR), np.float32) / 255)
    nets = build_nets(settings)
    out = {}
    for s in settings:
        stepper = Stepper(s, nets)
        alphas = [stepper(f) for f in frames]
        mad = [metrics.mad(a, t) for a, t in zip(alphas, truths, strict=False)]
        out[s.name] = {"mad": round(float(np.mean(mad)), 3), "mad_worst_frame": round(max(mad), 3),
                       "dtssd": round(metrics.dtssd(alphas, truths), 3), "frames": len(frames)}
    return out


# -- parent: schedule children, summarise ---------------------------------------------------

def run_child(kind: str, settings: list[Setting], args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--settings", json.dumps([asdict(s) for s in settings]),
           "--frames", str(args.frames), "--warmup", str(args.warmup)]
    env = dict(os.environ, OMP_NUM_THREADS=str(settings[0].threads))
    child = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env, check=False)
    if child.returncode:
        sys.exit(f"{kind} child failed:\n{child.stderr[-4000:]}")
    return json.loads(child.stdout.strip().splitlines()[-1])


def summarise(ms: list[float]) -> dict:
    import numpy as np

    a = np.asarray(ms)
    return {"ms_p50": round(float(np.median(a)), 1), "ms_p95": round(float(np.percentile(a, 95)), 1),
            "ms_min": round(float(a.min()), 1), "fps_at_p50": round(1e3 / float(np.median(a)), 2),
            "frames": int(a.size)}


def main() -> None:
    args = parse_args()
    if args.child:
        settings = [Setting(**d) for d in json.loads(args.settings)]
        result = child_speed(settings, args.frames, args.warmup) if args.child == "speed" else child_quality(settings)
        print(json.dumps(result))
        return
    settings = SETTINGS + ([COMPILE] if args.compile else [])
    if args.only:
        wanted = set(args.only.split(","))
        settings = [s for s in settings if s.name in wanted]
    by_threads: dict[int, list[Setting]] = {}
    for s in settings:
        by_threads.setdefault(s.threads, []).append(s)
    load = [os.getloadavg()[0]]
    times: dict[str, list[float]] = {s.name: [] for s in settings}
    round_p50: dict[str, list[float]] = {s.name: [] for s in settings}
    compile_s: dict = {}
    started = time.time()
    for r in range(args.rounds):
        groups = list(by_threads.values())
        for group in groups if r % 2 == 0 else groups[::-1]:
            result = run_child("speed", group, args)
            compile_s.update(result["compile_s"])
            for name, ms in result["times_ms"].items():
                times[name] += ms
                round_p50[name].append(round(sorted(ms)[len(ms) // 2], 1))
            load.append(os.getloadavg()[0])
        print(f"round {r + 1}/{args.rounds} done, load {load[-1]:.1f}", file=sys.stderr)
    quality = {} if args.no_quality else run_child("quality", settings, args)
    import torch

    base = summarise(times[BASE.name])["ms_p50"] if BASE.name in times else None
    rows = []
    for s in settings:
        speed = summarise(times[s.name])
        row = {"name": s.name, "lever": s.lever, "setting": asdict(s), **speed,
               "round_medians_ms": round_p50[s.name], "quality": quality.get(s.name)}
        if base:
            row["speedup_vs_baseline"] = round(base / speed["ms_p50"], 2)
        if s.name in compile_s:
            row["compile_and_warmup_s"] = compile_s[s.name]
        rows.append(row)
        print(json.dumps({k: row[k] for k in ("name", "ms_p50", "ms_p95", "fps_at_p50")}
                         | {"quality": row["quality"]}), file=sys.stderr)
    print(json.dumps({
        "bench": "RVM CPU levers, 640x480 (speed) and temporal GT clip at 640x360 (quality)",
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "torch": torch.__version__, "onnxruntime": _version("onnxruntime"),
                    # other work on the machine slows every figure; say how busy it was
                    "load_avg_1min": {"min": min(load), "max": max(load)}},
        "rounds": args.rounds, "frames_per_round": args.frames, "warmup_per_round": args.warmup,
        "wall_s": round(time.time() - started), "settings": rows,
    }, indent=2))


def _version(module: str) -> str | None:
    try:
        return __import__(module).__version__
    except ImportError:
        return None


if __name__ == "__main__":
    main()
