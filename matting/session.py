"""Per-stream RVM inference: one session owns one stream's recurrent state; many
sessions share one (stateless) network."""
from __future__ import annotations

import math
import time

import numpy as np
import torch
from torch import Tensor, nn

from matting.result import MatteResult
from matting.speed import AdaptiveRatio

# r1..r4 of the recurrent decoder; None before the first frame (the network uses zeros).
RecurrentState = tuple[Tensor | None, Tensor | None, Tensor | None, Tensor | None]
EMPTY_STATE: RecurrentState = (None, None, None, None)

# The authors' guidance: pick downsample_ratio so the network sees 256-512 px.
MAX_SIDE = 512
MIN_SIDE = 256


def auto_downsample_ratio(height: int, width: int) -> float:
    """Largest ratio keeping the network input's long side <= 512 px, rounded down to a
    multiple of 1/8 when that keeps it >= 256 px: 1 up to 512 px, 0.75 for 640x480,
    0.375 for 1280x720, 0.25 for 1920x1080 (the authors' values)."""
    ratio = MAX_SIDE / max(height, width)
    if ratio >= 1:
        return 1.0
    eighths = math.floor(ratio * 8) / 8
    return eighths if eighths * max(height, width) >= MIN_SIDE else ratio


@torch.inference_mode()
def step(model: nn.Module, src: Tensor, state: RecurrentState, downsample_ratio: float
         ) -> tuple[Tensor, Tensor, RecurrentState]:
    """One frame (or a batch of frames from different streams, stacked along B with their
    states stacked the same way): ``src`` RGB [B, 3, H, W] in [0, 1], in the model's
    device/dtype. Returns fgr [B, 3, H, W], pha [B, 1, H, W] and the new state."""
    fgr, pha, *rec = model(src, *state, downsample_ratio=downsample_ratio)
    return fgr, pha, tuple(rec)


def network_input(rgb: np.ndarray, device: torch.device, dtype: torch.dtype) -> Tensor:
    """A uint8 HxWx3 RGB frame as the network takes it: [1, 3, H, W] in [0, 1], on
    ``device`` in ``dtype``. To a GPU through pinned memory, which copies several times
    faster than pageable memory and does not block other streams' work."""
    src = torch.from_numpy(np.require(rgb, requirements=("C", "W")))
    if device.type == "cuda":
        src = src.pin_memory().to(device, non_blocking=True)
    # NCHW in memory in the same pass as the conversion: ONNX Runtime takes it as it is
    # (a channels-last tensor cost it a copy, 0.4 ms at 640x480 on a CPU)
    return src.permute(2, 0, 1).unsqueeze(0).to(dtype, memory_format=torch.contiguous_format).div_(255)


def to_host(fgr: Tensor, pha: Tensor) -> MatteResult:
    """The first frame of ``fgr`` [B, 3, H, W] and ``pha`` [B, 1, H, W] as float32 numpy.

    From a GPU: widened and laid out on the GPU, then copied into pinned memory that the
    numpy arrays keep (no second copy on the CPU). With many streams per GPU the copies,
    not the network, set the pace (bench/README.md, "many sessions on one GPU").
    """
    alpha = pha[0, 0].float()
    foreground = fgr[0].permute(1, 2, 0).float().contiguous()
    if fgr.device.type != "cuda":
        return MatteResult(alpha=alpha.numpy(), foreground=foreground.numpy())
    host = [torch.empty(t.shape, dtype=torch.float32, pin_memory=True) for t in (alpha, foreground)]
    for dst, src in zip(host, (alpha, foreground), strict=False):
        dst.copy_(src, non_blocking=True)
    done = torch.cuda.Event()
    done.record(torch.cuda.current_stream(fgr.device))
    done.synchronize()  # this frame's copies only, not what other sessions queued since
    return MatteResult(alpha=host[0].numpy(), foreground=host[1].numpy())


class VideoMattingSession:
    """Feed one stream's frames in order; state resets on ``reset()`` or a new resolution.

    ``downsample_ratio``: fixed, or None for :func:`auto_downsample_ratio`, or, with
    ``budget_ms``, adapted to keep each frame under that many milliseconds (see
    :class:`matting.speed.AdaptiveRatio`). ``batcher``: a :class:`matting.batching.FrameBatcher`
    to run this stream's frames batched with other streams'.

    Not thread-safe: call ``process`` from one thread at a time per session.
    """

    def __init__(self, model: nn.Module, downsample_ratio: float | None = None, *,
                 budget_ms: float | None = None, batcher=None):
        if downsample_ratio is not None and not 0 < downsample_ratio <= 1:
            raise ValueError(f"downsample_ratio must be in (0, 1], not {downsample_ratio}")
        self.model = model
        self.downsample_ratio = downsample_ratio
        self.adaptive = AdaptiveRatio(budget_ms) if budget_ms and downsample_ratio is None else None
        self.batcher = batcher
        parameter = next(model.parameters())
        self.device, self.dtype = parameter.device, parameter.dtype
        self.frames_processed = 0
        self.state: RecurrentState = EMPTY_STATE
        self._size: tuple[int, int] | None = None
        self._ratio: float | None = None

    def reset(self) -> None:
        """Forget the stream's history (scene cut, new source)."""
        self.state = EMPTY_STATE
        self._size = None

    @property
    def last_ratio(self) -> float | None:
        """The downsample ratio the last frame ran at."""
        return self._ratio

    def ratio_for(self, height: int, width: int) -> float:
        if self.adaptive is not None:
            return self.adaptive.ratio_for(height, width)
        return self.downsample_ratio or auto_downsample_ratio(height, width)

    def process(self, rgb: np.ndarray) -> MatteResult:
        """Matte one uint8 HxWx3 RGB frame."""
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"expected a uint8 HxWx3 RGB frame, got {rgb.dtype} {rgb.shape}")
        started = time.perf_counter()
        size = rgb.shape[:2]
        ratio = self.ratio_for(*size)
        if size != self._size or ratio != self._ratio:
            self.reset()  # the state's shapes follow the network input's size
            self._size, self._ratio = size, ratio
        src = network_input(rgb, self.device, self.dtype)
        if self.batcher is not None:
            fgr, pha, self.state = self.batcher.step(src, self.state, ratio)
        else:
            fgr, pha, self.state = step(self.model, src, self.state, ratio)
        self.frames_processed += 1
        result = to_host(fgr, pha)
        if self.adaptive is not None:
            self.adaptive.observe((time.perf_counter() - started) * 1e3, *size)
        return result
