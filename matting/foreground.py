"""Foreground colour estimation: the colours of the subject alone, without the old
background mixed into its semi-transparent edges (hair, fur, motion blur).

A pixel of the photo is ``I = a*F + (1-a)*B``. Keeping ``I`` as the cut-out's colour
carries ``(1-a)*B`` onto any new background: a halo of the old one. This solves for
``F`` with blur fusion (Forte and Pitié, "Approximate fast foreground colour
estimation", ICIP 2021): local alpha-weighted means of the foreground and background
stand in for F and B, then ``F`` is corrected by what the compositing equation leaves
over. Two passes, a wide one then a narrow one; box filters, so the cost does not grow
with the radius (about 0.1 s at 1620x1080 on one core).
"""
from __future__ import annotations

import cv2
import numpy as np

# Radii (in pixels at 1080p-ish sizes) of the two passes, from the paper.
PASSES = (90, 6)


def estimate_foreground(rgb: np.ndarray, alpha: np.ndarray, passes: tuple[int, ...] = PASSES) -> np.ndarray:
    """Foreground colours (float32 HxWx3 in [0, 1]) of uint8 RGB ``rgb`` under ``alpha``
    (float HxW in [0, 1]). Where alpha is 1 the result is the photo's own colour."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3 or alpha.shape != rgb.shape[:2]:
        raise ValueError(f"expected uint8 HxWx3 RGB and HxW alpha, got {rgb.dtype} {rgb.shape} / {alpha.shape}")
    image = rgb.astype(np.float32) * np.float32(1 / 255)
    a = np.clip(alpha, 0, 1).astype(np.float32)[:, :, None]
    fg, bg = image, image
    for radius in passes:
        fg, bg = _blur_fusion(image, fg, bg, a, radius)
    # Sure foreground keeps the photo's exact colours (no rounding drift).
    return np.where(a >= 1.0, image, fg)


def _blur_fusion(image: np.ndarray, fg: np.ndarray, bg: np.ndarray, a: np.ndarray, radius: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    size = (2 * radius + 1, 2 * radius + 1)
    mean_a = cv2.blur(a, size)[:, :, None]
    blurred_fg = cv2.blur(fg * a, size) / (mean_a + 1e-5)
    blurred_bg = cv2.blur(bg * (1 - a), size) / (1 - mean_a + 1e-5)
    fg = blurred_fg + a * (image - a * blurred_fg - (1 - a) * blurred_bg)
    return np.clip(fg, 0, 1), blurred_bg
