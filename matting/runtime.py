"""The loaded models, shared by every session in a process."""
from __future__ import annotations

import importlib.util
import logging
import os
import threading
from typing import TYPE_CHECKING

import numpy as np
import torch

from matting import weights
from matting.config import RuntimeConfig
from matting.device import DeviceChoice, select_device

if TYPE_CHECKING:  # annotations only: the modules themselves are imported where first used
    from pathlib import Path

    from matting.batching import FrameBatcher
    from matting.cutout_process import CutoutProcess
    from matting.rvm.network import MattingNetwork

log = logging.getLogger(__name__)

BACKENDS = ("torch", "onnxruntime", "auto")
# Batch size for batch_max=0 on a GPU: on an H100, 16 streams of 720p30 batched held
# p95 32 ms where unbatched they fell behind (bench/README.md)
GPU_BATCH_MAX = 16
# What ONNX Runtime runs for precision=auto on a CPU: int8 RVM holds the quality bar
# (tests/test_int8.py) and, on a quiet 2-core machine, took a browser session from 10 to
# 13.5 fps and p95 217 to 167 ms camera to screen (bench/README.md, issues 10 and 14).
CPU_AUTO_PRECISION = "int8"


def resolve_backend(backend: str, choice: DeviceChoice) -> str:
    """``torch`` or ``onnxruntime`` for this device; ValueError if it cannot work there."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    cpu_fp32 = choice.device.type == "cpu" and choice.dtype == torch.float32
    if backend == "auto":
        installed = all(importlib.util.find_spec(m) for m in ("onnx", "onnxruntime"))
        return "onnxruntime" if cpu_fp32 and installed else "torch"
    if backend == "onnxruntime" and not cpu_fp32:
        raise ValueError(f"the onnxruntime backend runs on the CPU in fp32 only, not on "
                         f"{choice.device} {str(choice.dtype).removeprefix('torch.')}; use backend torch")
    return backend


def onnx_precision(precision: str, backend: str) -> str:
    """``fp32`` or ``int8``: the precision of the ONNX Runtime models for the configured
    ``precision`` and the resolved ``backend``; ValueError if int8 cannot run."""
    if precision == "int8" and backend != "onnxruntime":
        raise ValueError("precision int8 runs in ONNX Runtime on the CPU: use backend auto or onnxruntime "
                         "(with the onnx and onnxruntime packages installed), not torch")
    if precision == "auto" and backend == "onnxruntime":
        return CPU_AUTO_PRECISION
    return "int8" if precision == "int8" else "fp32"


def rmbg_precision(precision: str, backend: str, native_bf16: bool) -> str:
    """``bf16`` or ``fp32``: how RMBG runs on the CPU path (``backend`` onnxruntime) for the
    configured ``precision``. bfloat16 (torch, oneDNN) where the CPU computes in it natively
    (``native_bf16``: AMX or AVX512-BF16) and precision is auto or int8: 0.5-0.75 of the
    time of float32 in ONNX Runtime there, with MAD no worse on the dev photos
    (matting.rmbg.bf16_backend); no int8 RMBG held the bar."""
    return "bf16" if backend == "onnxruntime" and native_bf16 and precision in ("auto", "int8") else "fp32"


class MattingRuntime:
    """Lazily loads RVM and RMBG once; hands out per-stream sessions.

    Thread-safe: models load under their own locks, and inference calls may come from
    worker threads (torch and ONNX Runtime release the GIL). A server whose live frames
    must not wait for RMBG uses :meth:`cutout_process` instead of :meth:`cutout`.
    """

    def __init__(self, config: RuntimeConfig | None = None):
        self.config = config or RuntimeConfig()
        self.choice: DeviceChoice = select_device(self.config.device, self.config.precision)
        if self.config.threads and self.choice.device.type == "cpu":
            torch.set_num_threads(self.config.threads)
        self.backend = resolve_backend(self.config.backend, self.choice)
        # one lock per model: loading RMBG never holds up a live stream's RVM
        self._locks = {name: threading.Lock() for name in ("rvm", "rmbg", "batcher")}
        self.onnx_precision = onnx_precision(self.config.precision, self.backend)
        self._rvm: torch.nn.Module | None = None
        self._still_rvm: torch.nn.Module | None = None
        self._rmbg: torch.nn.Module | None = None
        self._cutout_process: CutoutProcess | None = None
        self._batcher: FrameBatcher | None = None

    @property
    def rmbg_precision(self) -> str:
        from matting.rmbg.bf16_backend import native_bf16_available

        return rmbg_precision(self.config.precision, self.backend, native_bf16_available())

    @property
    def device(self) -> torch.device:
        return self.choice.device

    @property
    def dtype(self) -> torch.dtype:
        return self.choice.dtype

    @property
    def heavy_threads(self) -> int:
        """Threads for heavy work in child processes (RMBG, video files): all cores but one,
        so that live frames keep a core."""
        if self.config.heavy_threads:
            return self.config.heavy_threads
        return max(1, (self.config.threads or os.cpu_count() or 1) - 1)

    def video_model(self) -> torch.nn.Module:
        with self._locks["rvm"]:
            if self._rvm is None:
                net, path = self._rvm_network()
                model: torch.nn.Module = net
                log.info("RVM backend: %s (configured: %s), ONNX precision %s", self.backend,
                         self.config.backend, self.onnx_precision if self.backend == "onnxruntime" else "-")
                if self.backend == "onnxruntime":
                    from matting.onnx_cache import OnnxCache
                    from matting.rvm.onnx_backend import OnnxMattingNetwork

                    onnx = OnnxMattingNetwork(net, threads=self.config.threads,
                                              precision=self.onnx_precision, cache=OnnxCache(path))
                    onnx.prepare()  # export/calibrate now, not during a live stream's first frame
                    model = onnx
                elif self.device.type == "cuda" and self.config.cuda_graphs:
                    from matting.cuda_graphs import CudaGraphMattingNetwork

                    model = CudaGraphMattingNetwork(net)
                self._rvm = model
            return self._rvm

    def still_video_model(self) -> torch.nn.Module:
        """RVM for still photos: :meth:`video_model`, but float32 where that is int8. The
        int8 model is calibrated on video at live sizes; on 640 px stills it lost up to
        16 MAD on the dev photos (bench/README.md), and a still is not a real-time frame."""
        if self.backend != "onnxruntime" or self.onnx_precision != "int8":
            return self.video_model()
        with self._locks["rvm"]:
            if self._still_rvm is None:
                from matting.onnx_cache import OnnxCache
                from matting.rvm.onnx_backend import OnnxMattingNetwork

                net, path = self._rvm_network()
                still = OnnxMattingNetwork(net, threads=self.config.threads, precision="fp32", cache=OnnxCache(path))
                still.prepare()
                self._still_rvm = still
            return self._still_rvm

    def _rvm_network(self) -> tuple[MattingNetwork, Path]:
        """RVM's torch network, loaded from its checkpoint, and the checkpoint's path."""
        from matting.rvm import load_rvm

        path = weights.resolve("rvm", self.config.rvm_weights, download=self.config.download,
                               models_dir=self.config.models_dir)
        return load_rvm(path, device=self.device, dtype=self.dtype, refiner=self.config.refiner), path

    def image_model(self) -> torch.nn.Module:
        with self._locks["rmbg"]:
            if self._rmbg is None:
                from matting.rmbg import load_rmbg

                path = weights.resolve("rmbg", self.config.rmbg_weights, download=self.config.download,
                                       models_dir=self.config.models_dir)
                net = load_rmbg(path, device=self.device, dtype=self.dtype)
                model: torch.nn.Module = net
                if self.rmbg_precision == "bf16":
                    from matting.rmbg.bf16_backend import Bf16RMBG

                    model = Bf16RMBG(net)
                elif self.backend == "onnxruntime":
                    from matting.onnx_cache import OnnxCache
                    from matting.rmbg.onnx_backend import OnnxRMBG

                    # float32 also for int8: no int8 RMBG held the quality bar (its docstring)
                    model = OnnxRMBG(net, threads=self.config.threads, cache=OnnxCache(path))
                log.info("RMBG backend: %s", getattr(model, "backend", self.backend))
                self._rmbg = model
            return self._rmbg

    @property
    def batch_max(self) -> int:
        """Most streams per batched forward pass (1: batching is off)."""
        if self.config.batch_max:
            return self.config.batch_max
        return GPU_BATCH_MAX if self.device.type == "cuda" else 1

    def batcher(self) -> FrameBatcher | None:
        """The shared :class:`matting.batching.FrameBatcher`, or None when batching is off."""
        if self.batch_max <= 1:
            return None
        model = self.video_model()
        with self._locks["batcher"]:
            if self._batcher is None:
                from matting.batching import FrameBatcher

                self._batcher = FrameBatcher(model, max_batch=self.batch_max,
                                             window_ms=self.config.batch_window_ms)
            return self._batcher

    def new_session(self, downsample_ratio: float | None = None, *, budget_ms: float | None = None,
                    batched: bool = False):
        """A fresh :class:`VideoMattingSession` with its own recurrent state. ``budget_ms``
        (with no fixed ratio) adapts the ratio to keep frames under that time; ``batched``
        runs its frames through the shared batcher when batching is on (for live streams:
        a file job would only wait for partners that never come)."""
        from matting.session import VideoMattingSession

        return VideoMattingSession(self.video_model(), downsample_ratio=downsample_ratio,
                                   budget_ms=budget_ms, batcher=self.batcher() if batched else None)

    def cutout(self, rgb: np.ndarray) -> np.ndarray:
        """RMBG alpha (float32 HxW in [0, 1]) for one uint8 RGB image."""
        from matting.cutout import cutout_alpha

        return cutout_alpha(self.image_model(), rgb)

    def cutout_process(self) -> CutoutProcess:
        """The shared :class:`matting.cutout_process.CutoutProcess`: still cut-outs in a child
        process with ``heavy_threads`` threads, for servers whose live frames must not wait for them."""
        with self._locks["rmbg"]:
            if self._cutout_process is None:
                from matting.cutout_process import CutoutProcess

                self._cutout_process = CutoutProcess(self.config, self.heavy_threads)
            return self._cutout_process

    def still_matte(self, rgb: np.ndarray, model: str = "auto"):
        """A :class:`matting.still.StillMatte` of one uint8 RGB photo by ``model``:
        ``auto`` (RVM for people, RMBG otherwise), ``rvm`` or ``rmbg``."""
        from matting.still import cut_out

        return cut_out(rgb, model, rvm=self.still_video_model, rmbg=self.image_model)
