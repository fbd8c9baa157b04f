"""fp32 against int8 (ABRAR_PRECISION=int8) for RVM and RMBG in ONNX Runtime on the CPU,
and against RVM's official PyTorch code when ``--official`` names a checkout of it.
RMBG's int8 is the bench's own experiment (encoder in int8): the server runs RMBG in
float32 because no int8 recipe held the quality bar, or in bfloat16 where the CPU has AMX or AVX512-BF16
(the ``bf16`` row, added on such CPUs).

Per model and precision: ms per frame (RVM: ``VideoMattingSession.process`` on the real
clip at 640x480, ratio 0.5; RMBG: ``cutout_alpha`` on a 1280x853 photo) p50 / p95, peak
RSS, model size on disk, and the quality beside it: RVM MAD (x1e3) / dtSSD (x1e2) on the
temporal clip (60 frames at 640x360, ratio 0.5, as bench_levers), RMBG mean MAD on the six
dev photos. Each (model, precision) runs in its own child process (peak RSS is per
case), all loaded before any timing; then they take turns, ``--frames`` frames (RMBG:
``--images`` cut-outs) each per round, for ``--rounds`` rounds, so that a change of the
machine's speed (this VM's drifts by up to 30 % within a minute) hits every case alike;
times are medians over all rounds, and ``round_ratios_vs_official`` gives each round's
ratio. The int8 models come from the ONNX cache (built on first use, not timed). Prints
JSON.

    python bench/bench_int8.py --rounds 3
    python bench/bench_int8.py --models rvm --official ~/src/RobustVideoMatting --torchvision /tmp/tv

The official code imports torchvision's MobileNetV3; ``--torchvision`` names a folder
holding a ``torchvision`` package (e.g. ``pip install --no-deps --target DIR torchvision``),
whose model code is imported without its compiled ops, which it does not need.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench_levers import load_frames  # bench/ is on sys.path when a bench script runs

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ABRAR_SHARED_DIR", REPO.parent / "shared"))
VIDEO = SHARED / "media/video/pixabay_thoughtful_35590_8s_640x360.mp4"
CLIP = SHARED / "media/temporal/p3m_00a7a27c_porch_512x288"
PHOTO = SHARED / "media/images_nogt/girl-919048_1280.jpg"
SIZE, QUALITY_SIZE, RATIO = (640, 480), (640, 360), 0.5
os.environ.setdefault("ABRAR_MODELS_DIR", str(SHARED / "models"))


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="rvm,rmbg", help="rvm and/or rmbg")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--frames", type=int, default=10, help="timed RVM frames per round")
    p.add_argument("--images", type=int, default=2, help="timed RMBG cutouts per round")
    p.add_argument("--threads", type=int, default=None, help="ORT/torch threads (default: cores)")
    p.add_argument("--no-quality", action="store_true", help="skip MAD/dtSSD")
    p.add_argument("--official", type=Path, default=None, help="checkout of PeterL1n/RobustVideoMatting")
    p.add_argument("--torchvision", type=Path, default=None, help="folder holding a torchvision package")
    p.add_argument("--child", help=argparse.SUPPRESS)
    return p.parse_args()


# -- child: one model in one precision ---------------------------------------------------------

def official_stepper(args):
    """``step(rgb) -> alpha`` through the official MattingNetwork, state carried, the same
    steps as VideoMattingSession.process (uint8 in, numpy alpha and foreground out)."""
    import types

    import torch

    from matting import weights

    package = types.ModuleType("torchvision")
    package.__path__ = [str(args.torchvision / "torchvision")]  # type: ignore[attr-defined]
    sys.modules["torchvision"] = package
    sys.path.insert(0, str(args.official))
    from model import MattingNetwork  # the official code

    # the refiner ours picks for this checkpoint (auto), which has no weights of its own
    net = MattingNetwork("mobilenetv3", refiner="fast_guided_filter").eval()
    state = torch.load(weights.resolve("rvm", download=False), map_location="cpu", weights_only=True)
    net.load_state_dict({k: v for k, v in state.items() if not k.startswith("refiner.")})

    def make():
        rec = [None] * 4

        def step(rgb):
            with torch.inference_mode():
                src = torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0).float().div_(255)
                fgr, pha, *rec[:] = net(src, *rec, downsample_ratio=RATIO)
                fgr[0].permute(1, 2, 0).contiguous().numpy()
                return pha[0, 0].numpy()
        return step
    return make, weights.resolve("rvm", download=False).stat().st_size


def rvm_stepper(precision: str, threads: int | None):
    import torch

    from matting import weights
    from matting.onnx_cache import OnnxCache
    from matting.rvm import load_rvm
    from matting.rvm.onnx_backend import OnnxMattingNetwork, graph_for
    from matting.session import VideoMattingSession

    path = weights.resolve("rvm", download=False)
    net = load_rvm(path, device="cpu", dtype=torch.float32)
    model = OnnxMattingNetwork(net, threads=threads, precision=precision, cache=OnnxCache(path))
    model.prepare()

    def make():
        session = VideoMattingSession(model, downsample_ratio=RATIO)
        return lambda rgb: session.process(rgb).alpha
    graph = graph_for(RATIO, int(SIZE[1] * RATIO), int(SIZE[0] * RATIO))
    return make, model.cache.path(f"{graph}-{model.refiner_name}-{precision}").stat().st_size


def child_rvm(case: str, args) -> tuple[dict, Callable[[], list[float]]]:
    import numpy as np
    import torch
    from PIL import Image

    from matting import metrics

    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    make, size = official_stepper(args) if case == "official" else rvm_stepper(case, args.threads)
    out: dict = {"model_mb": round(size / 1e6, 2)}
    if not args.no_quality:
        frames = load_frames(CLIP / "com.mkv", QUALITY_SIZE)
        truths = []
        for i in range(len(frames)):
            with Image.open(CLIP / "pha" / f"{i:04d}.png") as im:
                truths.append(np.asarray(im.convert("L").resize(QUALITY_SIZE, Image.BILINEAR), np.float32) / 255)
        step = make()
        alphas = [step(f) for f in frames]
        out["mad"] = round(float(np.mean([metrics.mad(a, t) for a, t in zip(alphas, truths, strict=False)])), 3)
        out["dtssd"] = round(metrics.dtssd(alphas, truths), 3)
    frames = load_frames(VIDEO, SIZE, 16)
    step = make()
    for rgb in frames[:2]:  # warm-up: first-frame allocations
        step(rgb)
    index = itertools.count(2)

    def timed() -> list[float]:
        times = []
        for _ in range(args.frames):
            rgb = frames[next(index) % len(frames)]
            start = time.perf_counter()
            step(rgb)
            times.append((time.perf_counter() - start) * 1e3)
        return times
    return out, timed


def rmbg_int8(net, cache) -> bytes:
    """RMBG with its encoder in int8 (the decoder float), calibrated on a photo and three
    frames of the bundled clip: the least damaging recipe tried, still short of the
    quality bar, so the server keeps RMBG in float32 (matting/rmbg/onnx_backend.py)."""
    import re

    import numpy as np
    import torch
    from PIL import Image

    from matting.cutout import network_input
    from matting.quantize import calibration_clip, conv_names, quantize_int8
    from matting.rmbg.onnx_backend import export

    def build() -> bytes:
        fp32 = cache.get("finest-fp32", lambda: export(net))
        with Image.open(PHOTO) as im:
            images = [np.asarray(im.convert("RGB")), *calibration_clip()[::7]]
        feeds = [{"x": network_input(rgb, torch.device("cpu"), torch.float32).numpy()} for rgb in images]
        decoder = [n for n in conv_names(fp32) if re.search(r"/stage\dd/|/side\d", n)]
        return quantize_int8(fp32, feeds, keep_float=decoder)
    return cache.get("finest-int8-encoder-bench", build)


def child_rmbg(case: str, args) -> tuple[dict, Callable[[], list[float]]]:
    import numpy as np
    import torch
    from PIL import Image

    from matting import metrics, weights
    from matting.cutout import cutout_alpha
    from matting.onnx_cache import OnnxCache
    from matting.rmbg import load_rmbg
    from matting.rmbg.onnx_backend import OnnxRMBG

    def rgb_of(path: Path):
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))

    path = weights.resolve("rmbg", download=False)
    cache = OnnxCache(path)
    net = load_rmbg(path, device="cpu", dtype=torch.float32)
    model: torch.nn.Module
    if case == "bf16":  # what the server runs where the CPU has native bf16: torch, the checkpoint's weights
        from matting.rmbg.bf16_backend import Bf16RMBG

        model, size = Bf16RMBG(net), path.stat().st_size
    else:
        onnx_model = rmbg_int8(net, cache) if case == "int8" else None
        model = OnnxRMBG(net, threads=args.threads, cache=cache, model=onnx_model)
        size = cache.path("finest-int8-encoder-bench" if case == "int8" else "finest-fp32").stat().st_size
    out: dict = {"model_mb": round(size / 1e6, 2)}
    if not args.no_quality:
        mads = {}
        for image in sorted((SHARED / "media/images").iterdir()):
            with Image.open(SHARED / "media/alpha" / f"{image.stem}.png") as im:
                truth = np.asarray(im.convert("L"), np.float32) / 255
            mads[image.stem] = round(metrics.mad(cutout_alpha(model, rgb_of(image)), truth), 2)
        out["mad"] = round(float(np.mean(list(mads.values()))), 2)
        out["mad_per_photo"] = mads
    photo = rgb_of(PHOTO)
    cutout_alpha(model, photo)  # warm-up

    def timed() -> list[float]:
        times = []
        for _ in range(args.images):
            start = time.perf_counter()
            cutout_alpha(model, photo)
            times.append((time.perf_counter() - start) * 1e3)
        return times
    return out, timed


# -- parent: interleave the cases ------------------------------------------------------------

class Child:
    """One case's process: it loads (and scores) its model, then times a batch of frames
    for each line it reads, and reports its peak RSS when its input closes."""

    def __init__(self, model: str, case: str):
        env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        self.name = f"{model}:{case}"
        self.process = subprocess.Popen([sys.executable, *sys.argv, "--child", self.name], env=env, text=True,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.info = self._read()

    def _read(self) -> dict:
        assert self.process.stdout is not None
        for line in self.process.stdout:  # libraries may print other lines
            if line.startswith("{"):
                return json.loads(line)
        sys.exit(f"{self.name} failed (exit status {self.process.wait()}); its error is above")

    def run(self) -> list[float]:
        assert self.process.stdin is not None
        self.process.stdin.write("run\n")
        self.process.stdin.flush()
        return self._read()["times_ms"]

    def finish(self) -> float:
        assert self.process.stdin is not None
        self.process.stdin.close()
        peak = self._read()["peak_rss_mb"]
        self.process.wait()
        return peak


def serve_child(args: argparse.Namespace) -> None:
    model, case = args.child.split(":")
    info, timed = (child_rvm if model == "rvm" else child_rmbg)(case, args)
    print(json.dumps(info), flush=True)
    for _ in sys.stdin:
        print(json.dumps({"times_ms": timed()}), flush=True)
    print(json.dumps({"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))


def main() -> None:
    args = parse_args()
    if args.child:
        serve_child(args)
        return
    import numpy as np

    from matting.rmbg.bf16_backend import native_bf16_available

    cases = []
    for model in args.models.split(","):
        cases += [(model, "fp32"), (model, "int8")]
        if model == "rmbg" and native_bf16_available():
            cases.append((model, "bf16"))
        if model == "rvm" and args.official:
            cases.append((model, "official"))
    children = {c: Child(*c) for c in cases}  # one at a time: loading and scoring are not timed
    loads = [os.getloadavg()[0]]
    runs: dict[tuple[str, str], list[list[float]]] = {c: [] for c in cases}
    for round_ in range(args.rounds):
        for (model, case), child in children.items():
            runs[(model, case)].append(child.run())
            print(json.dumps({"round": round_, "case": child.name,
                              "p50_ms": round(float(np.median(runs[(model, case)][-1])), 1),
                              "load_1m": round(os.getloadavg()[0], 2)}), file=sys.stderr)
            loads.append(os.getloadavg()[0])
    rows = []
    for (model, case), rs in runs.items():
        child = children[(model, case)]
        ms = np.array([t for r in rs for t in r])
        rows.append({"model": model, "case": case, "ms_p50": round(float(np.percentile(ms, 50)), 1),
                     "ms_p95": round(float(np.percentile(ms, 95)), 1),
                     "round_p50s": [round(float(np.median(r)), 1) for r in rs],
                     "peak_rss_mb": child.finish(), "model_mb": child.info["model_mb"],
                     **{k: child.info[k] for k in ("mad", "dtssd", "mad_per_photo") if k in child.info}})
    for model in {m for m, _ in cases}:
        base = next(r for r in rows if r["model"] == model and r["case"] == "fp32")
        official = next((r for r in rows if r["model"] == model and r["case"] == "official"), None)
        for r in rows:
            if r["model"] == model:
                r["time_vs_fp32"] = round(r["ms_p50"] / base["ms_p50"], 3)
                if official:
                    r["time_vs_official"] = round(r["ms_p50"] / official["ms_p50"], 3)
                    r["round_ratios_vs_official"] = [round(a / b, 3) for a, b in
                                                     zip(r["round_p50s"], official["round_p50s"], strict=True)]
    import onnxruntime

    print(json.dumps({
        "machine": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
        "onnxruntime": onnxruntime.__version__, "threads": args.threads or os.cpu_count(),
        "rounds": args.rounds, "rvm": f"{SIZE[0]}x{SIZE[1]} ratio {RATIO}", "rmbg": "1024x1024 network, 1280x853 photo",
        "load_1m": {"min": round(min(loads), 2), "max": round(max(loads), 2)},
        "results": rows,
    }, indent=2))


if __name__ == "__main__":
    main()
