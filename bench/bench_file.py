"""File matting end to end: decode + RVM + composite + encode through ``matte_video_file``,
on the real 640x360 clip and a 1920x1080 upscale of it. Prints JSON: fps, busy seconds
per stage (stages overlap, so the largest one bounds the fps), peak RSS per case.

    python bench/bench_file.py --device cpu --frames 30
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import cv2

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ABRAR_SHARED_DIR", REPO.parent / "shared"))
VIDEO = SHARED / "media/video/pixabay_thoughtful_35590_8s_640x360.mp4"
SIZES = {"640x360": None, "1920x1080": (1920, 1080)}
# like the tests: weights from shared/models unless the caller points elsewhere
os.environ.setdefault("ABRAR_MODELS_DIR", str(SHARED / "models"))


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--precision", default="auto", help="auto | fp32 | fp16")
    p.add_argument("--frames", type=int, default=30, help="frames per case (from the start of the clip)")
    p.add_argument("--backend", default="auto", help="auto (the server's: ONNX Runtime on a CPU) | torch | onnxruntime")
    p.add_argument("--background", default="transparent", help="transparent (VP9 alpha WebM) or a colour (MP4)")
    p.add_argument("--sizes", default=",".join(SIZES), help=f"comma-separated, of {', '.join(SIZES)}")
    p.add_argument("--run", type=Path, default=None, help=argparse.SUPPRESS)  # child: one case
    return p.parse_args()


def make_input(dst: Path, frames: int, size: tuple[int, int] | None) -> Path:
    """The first ``frames`` frames, upscaled (bicubic) if ``size``; H.264 crf 16 so the source is clean."""
    with av.open(str(VIDEO)) as src, av.open(str(dst), "w") as out:
        stream = src.streams.video[0]
        vs = out.add_stream("libx264", rate=stream.average_rate, options={"crf": "16", "preset": "veryfast"})
        vs.width, vs.height = size or (stream.width, stream.height)
        vs.pix_fmt = "yuv420p"
        for i, frame in zip(range(frames), src.decode(stream), strict=False):
            rgb = frame.to_ndarray(format="rgb24")
            if size:
                rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_CUBIC)
            vf = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            vf.pts, vf.time_base = i, 1 / stream.average_rate
            out.mux(vs.encode(vf))
        out.mux(vs.encode(None))
    return dst


def run_case(args: argparse.Namespace) -> dict:
    """In a fresh process, so that peak RSS belongs to this case alone."""
    from matting.compositing import parse_background
    from matting.runtime import MattingRuntime, RuntimeConfig
    from matting.video_file import VideoOptions, matte_video_file, probe_video

    runtime = MattingRuntime(RuntimeConfig(device=args.device, precision=args.precision, backend=args.backend))
    info = probe_video(args.run)
    t0 = time.perf_counter()
    runtime.video_model()
    load_s = time.perf_counter() - t0
    with av.open(str(args.run)) as src:  # warm-up on this size, untimed
        first = next(src.decode(video=0)).to_ndarray(format="rgb24")
    runtime.new_session().process(first)
    background = parse_background(args.background)
    suffix = ".webm" if background.transparent else ".mp4"
    out = args.run.with_name(args.run.stem + "_out" + suffix)
    result = matte_video_file(args.run, out, runtime.new_session(), VideoOptions(background))
    return {
        "size": f"{info.width}x{info.height}", "frames": result.frames,
        "fps": round(result.fps, 2), "seconds": round(result.seconds, 2),
        "stage_ms_per_frame": {k: round(v / result.frames * 1000, 1) for k, v in result.stage_seconds.items()},
        "slowest_stage": max(result.stage_seconds, key=result.stage_seconds.get),
        "output": {"container": suffix[1:], "bytes": out.stat().st_size, "alpha": result.has_alpha},
        "model_load_s": round(load_s, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "device": str(runtime.device), "dtype": str(runtime.dtype).removeprefix("torch."), "backend": runtime.backend,
    }


def main() -> None:
    args = parse_args()
    if args.run:
        print(json.dumps(run_case(args)))
        return
    import torch

    cases = []
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench_file_") as tmp:
        for name in args.sizes.split(","):
            src = make_input(Path(tmp) / f"in_{name}.mp4", args.frames, SIZES[name])
            child = subprocess.run(
                [sys.executable, __file__, "--run", str(src), "--device", args.device,
                 "--precision", args.precision, "--backend", args.backend, "--background", args.background],
                cwd=REPO, capture_output=True, text=True, check=False)
            if child.returncode:
                sys.exit(f"case {name} failed:\n{child.stderr}")
            cases.append(json.loads(child.stdout.strip().splitlines()[-1]))
    print(json.dumps({
        "bench": "file matting (decode + RVM + composite + encode)",
        "background": args.background, "frames_per_case": args.frames,
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "processor": platform.processor() or platform.machine(),
                    "torch": torch.__version__, "av": av.__version__,
                    # other work on the machine slows every stage; say how busy it was
                    "load_avg_1min": {"before": load_before, "after": os.getloadavg()[0]}},
        "cases": cases,
    }, indent=2))


if __name__ == "__main__":
    main()
