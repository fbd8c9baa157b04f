"""Frames to the network's device and mattes back: exact, contiguous float32, on any device.

The CUDA cases skip without a GPU (CI has none); they ran on a lent H100.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from matting.session import network_input, to_host


def devices() -> list[str]:
    return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu", pytest.param("cuda", marks=pytest.mark.skip(
        reason="needs a CUDA GPU"))]


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_to_host_gives_the_first_frame_exactly(device, dtype):
    if device == "cpu" and dtype == torch.float16:
        pytest.skip("the network runs fp16 only on CUDA")
    g = torch.Generator().manual_seed(1)
    fgr = torch.rand(2, 3, 37, 53, generator=g).to(device, dtype)
    pha = torch.rand(2, 1, 37, 53, generator=g).to(device, dtype)
    result = to_host(fgr, pha)
    assert result.alpha.dtype == result.foreground.dtype == np.float32
    assert result.alpha.shape == (37, 53) and result.foreground.shape == (37, 53, 3)
    assert result.alpha.flags.c_contiguous and result.foreground.flags.c_contiguous
    np.testing.assert_array_equal(result.alpha, pha[0, 0].float().cpu().numpy())
    np.testing.assert_array_equal(result.foreground, fgr[0].permute(1, 2, 0).float().cpu().numpy())


@pytest.mark.parametrize("device", devices())
def test_network_input_keeps_the_frame(device):
    rgb = np.random.default_rng(2).integers(0, 256, (31, 47, 3), dtype=np.uint8)
    src = network_input(rgb, torch.device(device), torch.float32)
    assert src.device.type == device and src.dtype == torch.float32 and src.shape == (1, 3, 31, 47)
    want = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255
    torch.testing.assert_close(src.cpu(), want, rtol=0, atol=0)
    # a strided view (e.g. a crop) is made contiguous, not rejected
    crop = network_input(rgb[:, 5:20], torch.device(device), torch.float32)
    torch.testing.assert_close(crop.cpu(), want[..., 5:20], rtol=0, atol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_results_outlive_later_frames():
    """Pinned buffers are reused by torch's caching allocator: a result must not change
    when later frames are copied back."""
    fgr = torch.rand(1, 3, 64, 64, device="cuda", dtype=torch.float16)
    pha = torch.rand(1, 1, 64, 64, device="cuda", dtype=torch.float16)
    first = to_host(fgr, pha)
    kept = first.alpha.copy()
    for _ in range(5):
        to_host(torch.zeros_like(fgr), torch.zeros_like(pha))
    np.testing.assert_array_equal(first.alpha, kept)
