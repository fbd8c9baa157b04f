"""RMBG in bfloat16 (CPUs with AMX or AVX512-BF16): the same cut-outs as float32, within the +1 MAD bar."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import load_alpha, load_rgb
from matting import weights
from matting.cutout import MEAN, cutout_alpha
from matting.metrics import mad
from matting.rmbg import load_rmbg
from matting.rmbg.bf16_backend import Bf16RMBG, native_bf16_available
from matting.runtime import MattingRuntime, RuntimeConfig, rmbg_precision

needs_native_bf16 = pytest.mark.skipif(not native_bf16_available(),
                                       reason="bfloat16 is emulated (slow) on a CPU without AMX or AVX512-BF16")


@pytest.fixture(scope="module")
def bf16_model() -> Bf16RMBG:
    return Bf16RMBG(load_rmbg(weights.resolve("rmbg", download=False)))


def test_small_input_matches_float32(bf16_model, media):
    """Runs on any CPU (emulated where the CPU has no native bfloat16): a 256x256 input, not 1024."""
    rgb = load_rgb(media / "images" / "p3m_0a78cf02.png")
    x = torch.tensor(rgb).permute(2, 0, 1)[None].float()
    x = F.interpolate(x, size=(256, 256), mode="bilinear", align_corners=False) / 255.0 - MEAN
    reference = load_rmbg(weights.resolve("rmbg", download=False))
    with torch.inference_mode():
        expected = reference(x)[0][0]
    (got,), _ = bf16_model(x)
    assert got.dtype == torch.float32 and got.shape == expected.shape == (1, 1, 256, 256)
    assert float((got - expected).abs().mean()) < 5e-3
    assert float((got > 0.5).float().ne((expected > 0.5).float()).float().mean()) < 0.01


@needs_native_bf16
def test_cutouts_within_one_mad_of_float32_on_every_dev_photo(bf16_model, dev_alphas, media):
    for stem, alphas in dev_alphas.items():
        truth = load_alpha(media / "alpha" / f"{stem}.png")
        bf16 = cutout_alpha(bf16_model, load_rgb(next((media / "images").glob(f"{stem}.*"))))
        fp32_mad, bf16_mad = mad(alphas["rmbg"], truth), mad(bf16, truth)
        print(f"RMBG {stem}: MAD fp32 {fp32_mad:.2f}, bf16 {bf16_mad:.2f}")
        assert bf16_mad <= fp32_mad + 1.0, (stem, fp32_mad, bf16_mad)
        assert float(np.abs(bf16 - alphas["rmbg"]).mean()) < 5e-3, stem


@pytest.mark.parametrize(("precision", "backend", "native_bf16", "expected"), [
    ("auto", "onnxruntime", True, "bf16"),
    ("int8", "onnxruntime", True, "bf16"),
    ("auto", "onnxruntime", False, "fp32"),   # emulated bf16 is slower than float32
    ("fp32", "onnxruntime", True, "fp32"),    # asked for
    ("auto", "torch", True, "fp32"),          # torch fp32 or a GPU: not the CPU default path
])
def test_bf16_only_where_native_and_not_asked_otherwise(precision, backend, native_bf16, expected):
    assert rmbg_precision(precision, backend, native_bf16) == expected


def test_the_cpu_default_runtime_uses_it_where_native():
    runtime = MattingRuntime(RuntimeConfig(device="cpu", backend="auto", download=False))
    if native_bf16_available():
        assert isinstance(runtime.image_model(), Bf16RMBG)
    else:
        assert runtime.rmbg_precision == "fp32"
