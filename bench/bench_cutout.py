"""Image cut-outs: per-photo MAD of rmbg, rvm and auto on the dev photos with ground
truth, edge colour error before/after foreground estimation, and time per photo.

Prints one JSON object. Example: python bench/bench_cutout.py --device cpu --backend auto
Which photos were tuned on (the RVM still size and passes were chosen on the 00a7a27c
photos; the 0a78cf02 ones were held out) is part of the output.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from matting.cutout import cutout_alpha
from matting.foreground import estimate_foreground
from matting.metrics import mad
from matting.runtime import MattingRuntime, RuntimeConfig
from matting.still import pick, rvm_still_alpha

SHARED = Path(os.environ.get("ABRAR_SHARED_DIR", Path(__file__).resolve().parents[2] / "shared"))
MEDIA = SHARED / "media"
TUNED_ON = "00a7a27c"


def _rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _alpha(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("L"), np.float32) / 255


def _timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def band_error(colours: np.ndarray, truth: np.ndarray, alpha: np.ndarray) -> float:
    band = (alpha > 0) & (alpha < 1)
    return round(float(np.abs(colours - truth)[band].mean() * 255), 2)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--precision", default="auto", help="auto | fp32 | fp16")
    parser.add_argument("--backend", default="auto", choices=["auto", "torch", "onnxruntime"])
    parser.add_argument("--threads", type=int)
    args = parser.parse_args(argv)

    load_before = os.getloadavg()[0]
    runtime = MattingRuntime(RuntimeConfig(device=args.device, precision=args.precision, backend=args.backend,
                                           threads=args.threads, download=False))
    rvm_model, rmbg_model = runtime.still_video_model(), runtime.image_model()  # what cut-outs run
    first = _rgb(next(iter(sorted((MEDIA / "images").iterdir()))))
    rvm_still_alpha(rvm_model, first)  # warm-up: ONNX Runtime / CUDA initialise on first use
    cutout_alpha(rmbg_model, first)
    photos, times = {}, {"rmbg": [], "rvm": [], "auto": [], "foreground": []}
    for image in sorted((MEDIA / "images").iterdir()):
        rgb, truth = _rgb(image), _alpha(MEDIA / "alpha" / f"{image.stem}.png")
        rmbg, t_rmbg = _timed(cutout_alpha, rmbg_model, rgb)
        rvm, t_rvm = _timed(rvm_still_alpha, rvm_model, rgb)
        auto, t_pick = _timed(pick, rvm, rmbg)
        _, t_fg = _timed(estimate_foreground, rgb, auto.alpha)
        times["rmbg"].append(t_rmbg)
        times["rvm"].append(t_rvm)
        times["auto"].append(t_rvm + t_rmbg + t_pick)
        times["foreground"].append(t_fg)
        row = {"size": f"{rgb.shape[1]}x{rgb.shape[0]}", "tuned_on": TUNED_ON in image.stem,
               "mad_rmbg": round(mad(rmbg, truth), 2), "mad_rvm": round(mad(rvm, truth), 2),
               "mad_auto": round(mad(auto.alpha, truth), 2), "auto_chose": auto.model}
        if image.stem.startswith("comp_"):
            person = "p3m_" + image.stem.split("_")[2]
            fg_truth = _rgb(MEDIA / "foregrounds" / f"{person}.png").astype(np.float32) / 255
            row["edge_colour_error"] = {
                "original_pixels": band_error(rgb / np.float32(255), fg_truth, truth),
                "estimated_gt_alpha": band_error(estimate_foreground(rgb, truth), fg_truth, truth),
                "estimated_auto_alpha": band_error(estimate_foreground(rgb, auto.alpha), fg_truth, truth),
            }
        photos[image.stem] = row
    means = {m: round(float(np.mean([r[f"mad_{m}"] for r in photos.values()])), 2) for m in ("rmbg", "rvm", "auto")}
    held_out = {m: round(float(np.mean([r[f"mad_{m}"] for r in photos.values() if not r["tuned_on"]])), 2)
                for m in ("rmbg", "rvm", "auto")}
    print(json.dumps({
        "device": str(runtime.device), "backend": runtime.backend, "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(), "loadavg_1m_at_start": round(load_before, 2),
        "loadavg_1m_at_end": round(os.getloadavg()[0], 2),
        "photos": photos, "mean_mad": means, "mean_mad_held_out": held_out,
        "seconds_per_photo_p50": {k: round(float(np.median(v)), 2) for k, v in times.items()},
    }, indent=2))


if __name__ == "__main__":
    main()
