"""RVM matting quality against exact ground truth on the temporal test clip (real
foreground and background, known motion): MAD/MSE per frame, dtSSD across frames."""
from __future__ import annotations

import json

import av
import numpy as np
import pytest
import torch

from conftest import load_alpha
from matting import metrics, weights
from matting.rvm import load_rvm
from matting.session import VideoMattingSession

CLIP = "temporal/p3m_00a7a27c_porch_512x288"
FRAMES = 30  # 1 s at 30 fps, 512x288: enough for the state to settle, quick on 2 cores


@pytest.fixture(scope="module")
def clip(media) -> tuple[list[np.ndarray], list[np.ndarray]]:
    with av.open(str(media / CLIP / "com.mkv")) as container:
        frames = [f.to_ndarray(format="rgb24") for _, f in zip(range(FRAMES), container.decode(video=0), strict=False)]
    truths = [load_alpha(media / CLIP / "pha" / f"{i:04d}.png") for i in range(FRAMES)]
    return frames, truths


def matte(model, frames, *, reset_every_frame=False, downsample_ratio=None) -> list[np.ndarray]:
    session = VideoMattingSession(model, downsample_ratio=downsample_ratio)
    alphas = []
    for frame in frames:
        if reset_every_frame:
            session.reset()
        alphas.append(session.process(frame).alpha)
    return alphas


def score(alphas, truths) -> dict:
    mad = [metrics.mad(a, t) for a, t in zip(alphas, truths, strict=False)]
    mse = [metrics.mse(a, t) for a, t in zip(alphas, truths, strict=False)]
    return {"mad_mean": float(np.mean(mad)), "mse_mean": float(np.mean(mse)),
            "dtssd": metrics.dtssd(alphas, truths),
            "mad_per_frame": [round(v, 3) for v in mad], "mse_per_frame": [round(v, 3) for v in mse]}


def report(artifacts, name: str, results: dict) -> None:
    (artifacts / f"{name}.json").write_text(json.dumps(results, indent=2))
    for label, r in results.items():
        print(f"\n{name} {label}: MAD {r['mad_mean']:.3f}e-3  MSE {r['mse_mean']:.3f}e-3  "
              f"dtSSD {r['dtssd']:.3f}e-2  (worst frame MAD {max(r['mad_per_frame']):.3f})")


@pytest.fixture(scope="module")
def full_resolution(runtime, clip, artifacts) -> dict:
    """Auto ratio (1.0 at 512x288, so no refiner): state carried vs reset every frame."""
    model = runtime.video_model()
    frames, truths = clip
    results = {"carried": score(matte(model, frames), truths),
               "reset_every_frame": score(matte(model, frames, reset_every_frame=True), truths)}
    report(artifacts, "rvm_quality", results)
    return results


def test_alpha_matches_ground_truth(full_resolution):
    # Measured (torch 2.13 CPU): MAD 1.98e-3 (worst frame 3.47e-3), MSE 0.63e-3 with state
    # carried. The limits leave 2.5-3x headroom; a real regression (wrong weights,
    # normalisation, layer order) is 10-100x worse.
    assert full_resolution["carried"]["mad_mean"] < 5.0
    assert full_resolution["carried"]["mse_mean"] < 2.0


def test_carried_state_is_more_temporally_coherent(full_resolution):
    # Measured dtSSD 2.80e-2 carried vs 3.20e-2 reset every frame.
    carried, reset = full_resolution["carried"], full_resolution["reset_every_frame"]
    assert carried["dtssd"] < reset["dtssd"]


@pytest.mark.parametrize("refiner", ["fast_guided_filter", "deep_guided_filter"])
def test_refiners_at_half_resolution(refiner, clip, artifacts):
    model = load_rvm(weights.resolve("rvm", download=False), device="cpu",
                     dtype=torch.float32, refiner=refiner)
    frames, truths = clip[0][:10], clip[1][:10]
    alphas = matte(model, frames, downsample_ratio=0.5)
    assert all(a.shape == (288, 512) and np.isfinite(a).all() for a in alphas)
    assert all(a.min() >= 0 and a.max() <= 1 for a in alphas)
    result = score(alphas, truths)
    report(artifacts, f"rvm_quality_ratio0.5_{refiner}", {refiner: result})
    # Measured MAD 4.00e-3 (fast) and 3.74e-3 (deep, neutral = bilinear upsampling): on this
    # hard-edged GT the fast filter's edge-following does not lower MAD. Limit: 2x headroom.
    assert result["mad_mean"] < 8.0
