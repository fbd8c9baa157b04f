"""What a user can ask of an image cut-out, and the pure steps that make the output:
size limit, foreground colours, background, crop and encoding. Shared by
``POST /remove-bg`` and ``abrar remove-bg`` so both behave the same."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import cv2
import numpy as np

from matting.compositing import Background, composite
from matting.foreground import estimate_foreground
from matting.images import encode_image
from matting.result import MatteResult
from matting.still import MODELS, StillMatte

FORMATS = ("png", "webp", "jpeg", "mask")
MEDIA_TYPES = {"png": "image/png", "webp": "image/webp", "jpeg": "image/jpeg", "mask": "image/png"}
SUFFIXES = {"png": "png", "webp": "webp", "jpeg": "jpg", "mask": "png"}
# estimated: colours solved for the subject alone (no old background in the edges);
# original: the photo's own pixels under the alpha
FOREGROUNDS = ("estimated", "original")
# The subject for cropping: pixels at least this opaque (faint noise does not widen the box).
CROP_ALPHA = 0.05
MAX_SIZE = 16384


@dataclass(frozen=True)
class CutoutOptions:
    model: str = "auto"                # auto | rvm | rmbg
    format: str = "png"                # png | webp | jpeg | mask (the alpha as a grey PNG)
    background: Background = field(default_factory=Background)
    foreground: str = "estimated"      # estimated | original
    crop: bool = False                 # crop to the subject's bounding box ...
    crop_margin: int = 0               # ... plus this many pixels on each side
    max_size: int | None = None        # longest side of the output, in pixels

    def __post_init__(self):
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {', '.join(MODELS)}, not {self.model!r}")
        if self.format not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {self.format!r}")
        if self.foreground not in FOREGROUNDS:
            raise ValueError(f"foreground must be one of {', '.join(FOREGROUNDS)}, not {self.foreground!r}")
        if self.format == "jpeg" and self.background.transparent:
            raise ValueError("JPEG has no transparency (no alpha channel): use png or webp for a transparent result, "
                             "or pick a background")
        if self.crop_margin < 0:
            raise ValueError(f"crop margin must be 0 or more pixels, not {self.crop_margin}")
        if self.max_size is not None and not 1 <= self.max_size <= MAX_SIZE:
            raise ValueError(f"max size must be from 1 to {MAX_SIZE} pixels, not {self.max_size}")

    @property
    def media_type(self) -> str:
        return MEDIA_TYPES[self.format]

    @property
    def suffix(self) -> str:
        return SUFFIXES[self.format]


def limit_size(rgb: np.ndarray, max_size: int | None) -> np.ndarray:
    """``rgb`` scaled down (never up) so that its longest side is at most ``max_size``."""
    h, w = rgb.shape[:2]
    if max_size is None or max(h, w) <= max_size:
        return rgb
    scale = max_size / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def subject_box(alpha: np.ndarray, margin: int = 0) -> tuple[int, int, int, int]:
    """``(top, bottom, left, right)`` (end-exclusive) of the pixels with alpha >= 0.05,
    widened by ``margin`` and kept inside the image; the whole image when none are."""
    h, w = alpha.shape
    rows = np.flatnonzero((alpha >= CROP_ALPHA).any(axis=1))
    if rows.size == 0:
        return 0, h, 0, w
    cols = np.flatnonzero((alpha >= CROP_ALPHA).any(axis=0))
    return (max(0, rows[0] - margin), min(h, rows[-1] + 1 + margin),
            max(0, cols[0] - margin), min(w, cols[-1] + 1 + margin))


def render(rgb: np.ndarray, alpha: np.ndarray, options: CutoutOptions) -> np.ndarray:
    """The output pixels: HxW uint8 for ``mask``, RGBA for a transparent background, else RGB."""
    if options.format == "mask":
        out = np.clip(np.rint(alpha * 255.0), 0, 255).astype(np.uint8)
    else:
        colours = (estimate_foreground(rgb, alpha) if options.foreground == "estimated"
                   else rgb.astype(np.float32) * np.float32(1 / 255))
        out = composite(rgb, MatteResult(alpha=alpha, foreground=colours), options.background)
    if options.crop:
        top, bottom, left, right = subject_box(alpha, options.crop_margin)
        out = np.ascontiguousarray(out[top:bottom, left:right])
    return out


def encode(pixels: np.ndarray, options: CutoutOptions) -> bytes:
    return encode_image(pixels, "png" if options.format == "mask" else options.format)


class StillMatter(Protocol):
    """What makes the matte: :class:`matting.runtime.MattingRuntime` in this process (the
    CLI), or :class:`matting.cutout_process.CutoutProcess` in a child (the server)."""

    def still_matte(self, rgb: np.ndarray, model: str = "auto") -> StillMatte: ...


def cut_out_image(matter: StillMatter, rgb: np.ndarray, options: CutoutOptions) -> tuple[bytes, str]:
    """The encoded cut-out of one uint8 RGB photo and the model that made it (what
    ``auto`` chose): the whole path, for servers and CLIs."""
    rgb = limit_size(rgb, options.max_size)
    matte = matter.still_matte(rgb, options.model)
    return encode(render(rgb, matte.alpha, options), options), matte.model
