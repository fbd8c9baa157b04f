"""Still-image test helpers: a photo of an object (no person) with exact ground truth."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from conftest import load_rgb


def object_photo(media: Path) -> tuple[np.ndarray, np.ndarray]:
    """An oval cut from the building photo over a softly blurred porch, as a product shot
    would look: ``F*a + B*(1-a)`` with the returned alpha, so the alpha is exact. No
    person anywhere (RVM's stray response lies on the porch, off the object)."""
    from matting.compositing import blur, cover_resize

    plate = blur(load_rgb(media / "backgrounds" / "porch-691330_1280.jpg"), 6)
    h, w = plate.shape[:2]
    subject = cover_resize(load_rgb(media / "backgrounds" / "building.jpg"), h, w)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    distance = np.sqrt(((xx - w / 2) / (w * 0.22)) ** 2 + ((yy - h / 2) / (h * 0.3)) ** 2)
    alpha = np.clip((1 - distance) * 60, 0, 1).astype(np.float32)  # a 2-3 px soft edge
    a = alpha[:, :, None]
    rgb = np.rint(subject * a + plate * (1 - a)).astype(np.uint8)
    return rgb, alpha
