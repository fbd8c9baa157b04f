"""The loaded models, shared by every session in a process."""
from __future__ import annotations

import threading

import numpy as np
import torch

from matting import weights
from matting.config import RuntimeConfig
from matting.device import DeviceChoice, select_device


class MattingRuntime:
    """Lazily loads RVM and RMBG once; hands out per-stream sessions.

    Thread-safe: models load under a lock, and inference calls may come from
    worker threads (torch releases the GIL).
    """

    def __init__(self, config: RuntimeConfig | None = None):
        self.config = config or RuntimeConfig()
        self.choice: DeviceChoice = select_device(self.config.device, self.config.precision)
        if self.config.threads and self.choice.device.type == "cpu":
            torch.set_num_threads(self.config.threads)
        self._lock = threading.Lock()
        self._rvm: torch.nn.Module | None = None
        self._rmbg: torch.nn.Module | None = None

    @property
    def device(self) -> torch.device:
        return self.choice.device

    @property
    def dtype(self) -> torch.dtype:
        return self.choice.dtype

    def video_model(self) -> torch.nn.Module:
        with self._lock:
            if self._rvm is None:
                from matting.rvm import load_rvm

                path = weights.resolve("rvm", self.config.rvm_weights, download=self.config.download)
                self._rvm = load_rvm(path, device=self.device, dtype=self.dtype,
                                     refiner=self.config.refiner)
            return self._rvm

    def image_model(self) -> torch.nn.Module:
        with self._lock:
            if self._rmbg is None:
                from matting.rmbg import load_rmbg

                path = weights.resolve("rmbg", self.config.rmbg_weights, download=self.config.download)
                self._rmbg = load_rmbg(path, device=self.device, dtype=self.dtype)
            return self._rmbg

    def new_session(self, downsample_ratio: float | None = None):
        """A fresh :class:`VideoMattingSession` with its own recurrent state."""
        from matting.session import VideoMattingSession

        return VideoMattingSession(self.video_model(), downsample_ratio=downsample_ratio)

    def cutout(self, rgb: np.ndarray) -> np.ndarray:
        """RMBG alpha (float32 HxW in [0, 1]) for one uint8 RGB image."""
        from matting.cutout import cutout_alpha

        return cutout_alpha(self.image_model(), rgb)
