"""Put a matted person over a new background. Pure functions on numpy arrays.

Blending runs in OpenCV (uint8 in, float32 weights) because it is several times
faster than the equivalent numpy expression at 1080p.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from matting.result import MatteResult

NAMED_COLORS: dict[str, tuple[int, int, int]] = {
    "green": (0, 177, 64),     # chroma-key green
    "blue": (0, 71, 187),      # chroma-key blue
    "white": (255, 255, 255),
    "black": (0, 0, 0),
}
DEFAULT_BLUR = 15
KINDS = ("transparent", "color", "blur", "image")
VALID_SPECS = "transparent, green, blue, white, black, #rrggbb, blur, blur:N (1-100) or image:PATH"
_HEX = re.compile(r"#?([0-9a-fA-F]{6})")


@dataclass(frozen=True)
class Background:
    """What goes behind the person.

    ``blur_radius`` is the Gaussian sigma in pixels of the frame being blurred.
    ``image`` is RGB uint8 of any size; it is cover-fitted to each frame size.
    Colour and image plates are remembered per frame size (a cache: results
    do not depend on it).
    """

    kind: str = "transparent"
    color: tuple[int, int, int] = (0, 0, 0)
    blur_radius: int = DEFAULT_BLUR
    image: np.ndarray | None = field(default=None, compare=False, repr=False)
    _fitted: dict = field(default_factory=dict, compare=False, repr=False, init=False)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"background kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        if self.kind == "image" and (self.image is None or self.image.ndim != 3 or self.image.shape[2] != 3):
            raise ValueError("an image background needs an RGB uint8 HxWx3 image")
        if self.blur_radius < 1:
            raise ValueError(f"blur radius must be at least 1, not {self.blur_radius}")

    @property
    def transparent(self) -> bool:
        return self.kind == "transparent"

    def plate(self, frame_rgb: np.ndarray) -> np.ndarray:
        """The RGB uint8 background for this frame (same size as the frame)."""
        h, w = frame_rgb.shape[:2]
        if self.kind == "blur":
            return blur(frame_rgb, self.blur_radius)
        if self.kind == "transparent":
            raise ValueError("a transparent background has no plate")
        if (h, w) not in self._fitted:
            if len(self._fitted) >= 4:  # a stream changing size often must not grow this
                self._fitted.clear()
            if self.kind == "image":
                assert self.image is not None  # __post_init__ requires one
                plate = cover_resize(self.image, h, w)
            else:
                plate = np.full((h, w, 3), self.color, np.uint8)
            plate.flags.writeable = False  # shared by every frame (and thread) using this background
            self._fitted[(h, w)] = plate
        return self._fitted[(h, w)]


def parse_background(spec: str) -> Background:
    """``transparent``, a colour name, ``#rrggbb``, ``blur[:N]`` or ``image:PATH``."""
    text = spec.strip()
    low = text.lower()
    if low == "transparent":
        return Background("transparent")
    if low in NAMED_COLORS:
        return Background("color", color=NAMED_COLORS[low])
    if m := _HEX.fullmatch(text):
        h = m.group(1)
        return Background("color", color=(int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)))
    if low == "blur" or low.startswith("blur:"):
        radius = low[5:] if low.startswith("blur:") else str(DEFAULT_BLUR)
        if not radius.isdigit() or not 1 <= int(radius) <= 100:
            raise ValueError(f"blur radius must be a whole number from 1 to 100, not {radius!r}")
        return Background("blur", blur_radius=int(radius))
    if low.startswith("image:") and text[6:]:
        from matting.images import ImageInputError, load_image

        path = Path(text[6:]).expanduser()
        try:
            return Background("image", image=load_image(path))
        except ImageInputError as exc:
            raise ValueError(f"background image {path}: {exc}") from None
    raise ValueError(f"unknown background {spec!r}; use {VALID_SPECS}")


def composite(frame_rgb: np.ndarray, matte: MatteResult, background: Background) -> np.ndarray:
    """RGBA uint8 for a transparent background, else RGB uint8 ``F*a + B*(1-a)``.

    ``F`` is the network's foreground colour; for ``blur`` the background is
    the blurred original frame.
    """
    h, w = frame_rgb.shape[:2]
    if matte.alpha.shape != (h, w) or matte.foreground.shape != (h, w, 3):
        raise ValueError(f"matte {matte.alpha.shape}/{matte.foreground.shape} does not fit frame {frame_rgb.shape}")
    if background.transparent:
        return to_rgba(matte.foreground, matte.alpha)
    alpha = np.clip(np.asarray(matte.alpha, np.float32), 0.0, 1.0)
    return _blend(_u8(matte.foreground), background.plate(frame_rgb), alpha)


def to_rgba(foreground: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Straight (not premultiplied) RGBA uint8 from colours and alpha, float [0,1] or uint8."""
    return cv2.merge([*cv2.split(_u8(foreground)), _u8(alpha)])


def checkerboard(h: int, w: int, cell: int = 16) -> np.ndarray:
    """The light-grey/white checkerboard editors show behind transparency."""
    even_row = np.where((np.arange(w) // cell) % 2 == 0, 255, 204).astype(np.uint8)
    odd_row = np.where(even_row == 255, 204, 255).astype(np.uint8)
    grey = np.where(((np.arange(h) // cell) % 2 == 0)[:, None], even_row, odd_row)
    return cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB)


def over_checkerboard(rgba: np.ndarray, cell: int = 16) -> np.ndarray:
    """RGB uint8 view of an RGBA image over a checkerboard."""
    *rgb, alpha = cv2.split(rgba)
    alpha = alpha.astype(np.float32)
    alpha *= np.float32(1 / 255)
    h, w = rgba.shape[:2]
    return _blend(cv2.merge(rgb), checkerboard(h, w, cell), alpha)


def blur(rgb: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur with ``sigma`` in pixels, computed on a downscaled copy.

    A wide Gaussian is smooth enough that blurring at 1/f size and scaling back
    looks the same as blurring at full size, at a fraction of the cost.
    """
    h, w = rgb.shape[:2]
    f = max(1, min(int(sigma // 3), h // 8, w // 8))
    small = cv2.resize(rgb, (w // f, h // f), interpolation=cv2.INTER_AREA) if f > 1 else rgb
    small = cv2.GaussianBlur(small, (0, 0), sigma / f)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR) if f > 1 else small


def cover_resize(img: np.ndarray, h: int, w: int) -> np.ndarray:
    """Scale ``img`` to cover h x w (keeping its aspect) and crop the centre."""
    ih, iw = img.shape[:2]
    scale = max(w / iw, h / ih)
    sw, sh = max(w, round(iw * scale)), max(h, round(ih * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    scaled = cv2.resize(img, (sw, sh), interpolation=interp)
    y, x = (sh - h) // 2, (sw - w) // 2
    return np.ascontiguousarray(scaled[y:y + h, x:x + w])


def _u8(x: np.ndarray) -> np.ndarray:
    if x.dtype == np.uint8:
        return x
    # convertScaleAbs rounds and saturates; values are in [0, 1] so abs() is a no-op
    return cv2.convertScaleAbs(np.asarray(x, np.float32), alpha=255.0)


def _blend(fg: np.ndarray, bg: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``fg*alpha + bg*(1-alpha)`` for uint8 images and float32 alpha in [0, 1]."""
    return cv2.blendLinear(fg, bg, alpha, 1.0 - alpha)
