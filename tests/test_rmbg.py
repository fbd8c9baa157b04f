"""RMBG-1.4 (IS-Net): strict loading of the real checkpoint, clear errors, cutout quality vs GT."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from conftest import load_alpha, load_rgb
from matting import weights
from matting.cutout import cutout_alpha
from matting.metrics import mad, mse
from matting.rmbg import load_rmbg
from matting.weights import CheckpointError

# MAD (x1e3) limits per dev photo. Measured on CPU fp32 (torch 2.13): architecture 2.08,
# porch (00a7a27c) 64.20, building 39.20, porch (0a78cf02) 135.89, p3m_00a7a27c 25.16,
# p3m_0a78cf02 57.43. The errors are the model's, not the port's: IS-Net is a general
# salient-object model, so it also keeps the porch table and loses the blurred P3M faces
# (masks checked by eye). Limits are measured + 20 % + 2 to allow for CUDA fp16 and
# library drift; any constant alpha scores 359-641 on these photos, an inverted one > 700.
MAD_LIMITS = {
    "comp_p3m_00a7a27c_architecture": 4.5,
    "comp_p3m_00a7a27c_porch": 79.0,
    "comp_p3m_0a78cf02_building": 49.0,
    "comp_p3m_0a78cf02_porch": 165.0,
    "p3m_00a7a27c": 32.0,
    "p3m_0a78cf02": 71.0,
}


@pytest.fixture(scope="module")
def checkpoint():
    return weights.resolve("rmbg", download=False)


@pytest.fixture(scope="module")
def file_tensors(checkpoint):
    return load_file(checkpoint)


@pytest.fixture(scope="module")
def model(runtime):
    return runtime.image_model()


def subject_contrast(alpha: np.ndarray, truth: np.ndarray) -> float:
    """Mean alpha on sure foreground minus on sure background: ~1 good, <=0 inverted/constant."""
    return float(alpha[truth > 0.99].mean() - alpha[truth < 0.01].mean())


@pytest.fixture(scope="module")
def quality(dev_alphas, media, artifacts):
    """One cutout per dev photo (shared with the still-image tests), scored against its GT."""
    results = {}
    for image in sorted((media / "images").iterdir()):
        truth = load_alpha(media / "alpha" / f"{image.stem}.png")
        alpha = dev_alphas[image.stem]["rmbg"]
        results[image.stem] = {"mad": mad(alpha, truth), "mse": mse(alpha, truth),
                               "contrast": subject_contrast(alpha, truth), "dtype": str(alpha.dtype)}
        print(f"RMBG {image.stem}: MAD {results[image.stem]['mad']:.2f} "
              f"MSE {results[image.stem]['mse']:.2f} (x1e3)")
    (artifacts / "rmbg_quality.json").write_text(json.dumps(results, indent=2))
    return results


def test_strict_load_equals_file(model, file_tensors):
    state = model.state_dict()
    assert set(state) == set(file_tensors) and len(state) == 798
    for key, value in file_tensors.items():
        assert torch.equal(state[key], value.to(state[key].dtype)), key
    # BriaRMBG's declaration order, which a saved state dict of ours keeps.
    stages = list(dict.fromkeys(k.split(".")[0] for k in state))
    assert stages == ["conv_in", *(f"stage{i}" for i in range(1, 7)),
                      *(f"stage{i}d" for i in range(5, 0, -1)), *(f"side{i}" for i in range(1, 7))]
    assert not model.training


def test_pth_state_dict_loads(tmp_path, file_tensors):
    path = tmp_path / "model.pth"
    torch.save(file_tensors, path)
    state = load_rmbg(path, device="cpu", dtype=torch.float32).state_dict()
    assert torch.equal(state["side1.weight"], file_tensors["side1.weight"].float())


def expect_error(path, *fragments):
    with pytest.raises(CheckpointError) as info:
        load_rmbg(path, device="cpu", dtype=torch.float32)
    message = str(info.value)
    for fragment in (str(path), "model.safetensors", *fragments):
        assert fragment in message
    print(message)


def test_missing_file(tmp_path):
    expect_error(tmp_path / "model.safetensors", "does not exist", "ABRAR_RMBG_WEIGHTS")


@pytest.mark.parametrize("size", [100, 40_000_000])
def test_truncated_file(tmp_path, checkpoint, size):
    path = tmp_path / "model.safetensors"
    with open(checkpoint, "rb") as f:
        path.write_bytes(f.read(size))
    expect_error(path, "not a readable safetensors file", "truncated or corrupt")


def test_random_bytes(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(np.random.default_rng(0).bytes(1 << 16))
    expect_error(path, "not a readable safetensors file")


def test_pth_without_state_dict(tmp_path):
    path = tmp_path / "model.pth"
    torch.save([torch.zeros(1)], path)
    expect_error(path, "does not hold a plain state dict")


def test_key_removed(tmp_path, file_tensors):
    path = tmp_path / "model.safetensors"
    save_file({k: v for k, v in file_tensors.items() if k != "stage3.rebnconv2.conv_s1.bias"}, path)
    expect_error(path, "1 missing keys: stage3.rebnconv2.conv_s1.bias")


def test_wrong_shape(tmp_path, file_tensors):
    path = tmp_path / "model.safetensors"
    save_file({**file_tensors, "side1.weight": torch.zeros(1, 32, 3, 3, dtype=torch.float16)}, path)
    expect_error(path, "1 wrong shapes: side1.weight (1, 32, 3, 3) in file, (1, 64, 3, 3) expected")


def test_quality_on_every_dev_photo(quality):
    assert set(quality) == set(MAD_LIMITS), "new dev photo: measure it and add a MAD limit"
    for stem, scores in quality.items():
        assert scores["dtype"] == "float32"
        assert scores["mad"] < MAD_LIMITS[stem], (stem, scores)


def test_alpha_follows_the_subject(quality):
    # Measured 0.76 (porch 0a78cf02: shirt missed) to 1.00; an inverted alpha gives minus
    # that, a constant one 0.
    for stem, scores in quality.items():
        assert scores["contrast"] > 0.5, (stem, scores)


def small(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))


def test_small_non_square_image(model, media):
    stem = "comp_p3m_00a7a27c_architecture"
    rgb = small(load_rgb(media / "images" / f"{stem}.jpg"), (150, 100))
    truth = small((load_alpha(media / "alpha" / f"{stem}.png") * 255).astype(np.uint8), (150, 100))
    alpha = cutout_alpha(model, rgb)
    assert alpha.shape == (100, 150) and alpha.dtype == np.float32
    assert 0.0 <= alpha.min() and alpha.max() <= 1.0
    score = mad(alpha, truth / 255.0)
    print(f"RMBG 150x100 {stem}: MAD {score:.2f}")
    # Measured 8.77 (2.08 at full size: less detail to go on); at 60x40 it breaks down (358).
    assert score < 12.5


def test_grayscale_converted_to_rgb(model, media):
    stem = "comp_p3m_00a7a27c_architecture"
    with Image.open(media / "images" / f"{stem}.jpg") as im:
        rgb = np.asarray(im.convert("L").resize((405, 270), Image.BILINEAR).convert("RGB"))
    truth = small((load_alpha(media / "alpha" / f"{stem}.png") * 255).astype(np.uint8), (405, 270))
    alpha = cutout_alpha(model, rgb)
    assert alpha.shape == (270, 405)
    score = mad(alpha, truth / 255.0)
    print(f"RMBG 405x270 grayscale {stem}: MAD {score:.2f}")
    # Measured 5.15 (colour at full size 2.08); the 20 % + 2 margin of MAD_LIMITS.
    assert score < 8.5


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_fp16_matches_cpu(checkpoint, media, quality):
    stem = "comp_p3m_00a7a27c_architecture"
    gpu = load_rmbg(checkpoint, device="cuda", dtype=torch.float16)
    alpha = cutout_alpha(gpu, load_rgb(media / "images" / f"{stem}.jpg"))
    score = mad(alpha, load_alpha(media / "alpha" / f"{stem}.png"))
    print(f"RMBG CUDA fp16 {stem}: MAD {score:.2f} (CPU fp32 {quality[stem]['mad']:.2f})")
    assert alpha.dtype == np.float32 and score < MAD_LIMITS[stem]


@pytest.mark.parametrize("bad", [np.zeros(8, np.uint8), np.zeros((8, 8), np.uint8),
                                 np.zeros((8, 8, 4), np.uint8),
                                 np.zeros((8, 8, 3), np.float32)])
def test_rejects_non_rgb_uint8(bad):
    with pytest.raises(ValueError, match="needs a uint8 HxWx3 RGB array"):
        cutout_alpha(torch.nn.Conv2d(3, 1, 1), bad)


def test_onnx_runtime_backend_gives_the_same_cutout(model, media):
    """The CPU default (ABRAR_BACKEND=auto) runs RMBG in ONNX Runtime: same alpha as torch."""
    pytest.importorskip("onnxruntime")
    from matting.rmbg.onnx_backend import OnnxRMBG

    rgb = load_rgb(media / "images" / "p3m_0a78cf02.png")
    truth = load_alpha(media / "alpha" / "p3m_0a78cf02.png")
    onnx_model = OnnxRMBG(model, threads=2)
    assert not any(p.numel() for p in onnx_model.parameters())  # torch weights not kept
    want, got = cutout_alpha(model, rgb), cutout_alpha(onnx_model, rgb)
    assert got.dtype == np.float32 and got.shape == rgb.shape[:2]
    assert float(np.abs(got - want).max()) < 1e-4
    assert abs(mad(got, truth) - mad(want, truth)) < 0.01
    assert mad(got, truth) < MAD_LIMITS["p3m_0a78cf02"]
    with pytest.raises(ValueError, match="CPU float32"):
        onnx_model(torch.zeros(1, 3, 8, 8, dtype=torch.float64))
