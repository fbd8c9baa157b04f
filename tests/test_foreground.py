"""Foreground colour estimation: edge colours without the old background."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from conftest import load_alpha, load_rgb
from matting.foreground import estimate_foreground

# One composite per person of the dev set; their true foreground colours are known.
COMPOSITES = ("comp_p3m_00a7a27c_architecture", "comp_p3m_0a78cf02_building")


def band_error(colours: np.ndarray, truth: np.ndarray, alpha: np.ndarray) -> float:
    """Mean absolute colour error (0-255 levels) where 0 < alpha < 1."""
    band = (alpha > 0) & (alpha < 1)
    return float(np.abs(colours.astype(np.float32) - truth)[band].mean() * 255)


def test_recovers_a_known_foreground_at_an_edge():
    h, w = 64, 200
    f, b = np.array([0.9, 0.2, 0.1], np.float32), np.array([0.1, 0.6, 0.9], np.float32)
    # an 8 px soft edge (a wide ramp blurs the local means: 16 px gives 0.03, 48 px 0.16)
    alpha = np.clip((np.arange(w, dtype=np.float32) - 100) / 8 + 0.5, 0, 1)[None, :].repeat(h, 0)
    a = alpha[:, :, None]
    rgb = np.rint((f * a + b * (1 - a)) * 255).astype(np.uint8)
    fg = estimate_foreground(rgb, alpha)
    edge = (alpha > 0) & (alpha < 1)
    assert np.abs(fg[edge] - f).max() < 0.02       # measured 0.010; the original pixels are off by 0.4
    assert np.allclose(fg[alpha == 1], rgb[alpha == 1] / 255, atol=1e-6)  # sure foreground: the photo


@pytest.mark.parametrize("stem", COMPOSITES)
def test_edge_colour_error_drops(stem, media, dev_alphas):
    person = "p3m_" + stem.split("_")[2]
    with Image.open(media / "foregrounds" / f"{person}.png") as im:
        truth = np.asarray(im.convert("RGB"), np.float32) / 255
    rgb = load_rgb(media / "images" / f"{stem}.jpg")
    gt = load_alpha(media / "alpha" / f"{stem}.png")
    original = band_error(rgb / np.float32(255), truth, gt)
    with_gt = band_error(estimate_foreground(rgb, gt), truth, gt)
    with_rvm = band_error(estimate_foreground(rgb, dev_alphas[stem]["rvm"]), truth, gt)
    print(f"{stem}: edge colour error (levels) original {original:.1f}, estimated with the GT alpha "
          f"{with_gt:.1f}, with RVM's alpha {with_rvm:.1f}")
    # Measured: 28.8 -> 7.2 / 12.8 and 43.9 -> 10.2 / 14.4.
    assert with_gt < 0.4 * original
    assert with_rvm < 0.6 * original
