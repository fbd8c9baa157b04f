"""Matted pictures in the layout the video encoders take.

aiortc's VP8 and H.264 encoders take yuv420p and convert anything else with swscale in
their own thread, for every frame and every viewer: 1.15 ms for a 640x480 RGB picture
on a 2-vCPU Xeon, where OpenCV's conversion to the same BT.601 limited range takes 0.18
ms (luma within one level; chroma averaged over 2x2 blocks where swscale filters, which
moves the decoded colours by about a level; bench/README.md). So the live lane hands
out yuv420p.
"""
from __future__ import annotations

from dataclasses import dataclass

import av
import cv2
import numpy as np


@dataclass(frozen=True)
class Picture:
    """One picture as an array in an ``av`` pixel format: ``yuv420p`` ([H * 3 / 2, W],
    the planes one after another) or, for odd sizes, which 4:2:0 cannot hold, ``rgb24``."""

    array: np.ndarray
    format: str

    @classmethod
    def from_rgb(cls, rgb: np.ndarray) -> Picture:
        """An RGB uint8 picture, converted to yuv420p where its sides are even."""
        height, width = rgb.shape[:2]
        if height % 2 or width % 2:
            return cls(rgb, "rgb24")
        return cls(cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420), "yuv420p")

    @classmethod
    def of(cls, frame: av.VideoFrame) -> Picture:
        """The picture of ``frame``, in its own pixel format (a copy)."""
        return cls(frame.to_ndarray(), frame.format.name)

    def frame(self) -> av.VideoFrame:
        """A new video frame of this picture (a copy: each holder sets its own timestamps)."""
        return av.VideoFrame.from_ndarray(self.array, format=self.format)
