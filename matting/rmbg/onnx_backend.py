"""RMBG-1.4 in ONNX Runtime: on a 2-core CPU 1.5 s a cutout instead of 2.8 s, with the
same alpha (network outputs within 1.4e-7; bench/README.md). Exported once at load (about
5 s), at the network's fixed 1024x1024 input."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from matting.cutout import INPUT_SIZE
from matting.onnx_runtime import ort_session, to_onnx
from matting.rmbg.isnet import BriaRMBG


class _Finest(nn.Module):
    """Only the finest side output: the one cutouts use (the other five cost export time)."""

    def __init__(self, net: BriaRMBG):
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)[0][0]


class OnnxRMBG(nn.Module):
    """Drop-in for a CPU float32 :class:`BriaRMBG` in :func:`matting.cutout.cutout_alpha`:
    ``forward(x)`` returns ``([alpha], [])``, the finest side output only. Thread-safe."""

    backend = "onnxruntime"

    def __init__(self, net: BriaRMBG, threads: int | None = None):
        super().__init__()
        example = torch.zeros(1, 3, *INPUT_SIZE)
        model = to_onnx(_Finest(net.float().cpu()), {"x": example}, ["alpha"])
        self._session = ort_session(model, threads)
        # The torch weights (176 MB) are not kept; this empty parameter tells callers the
        # device and dtype to feed.
        self.anchor = nn.Parameter(torch.zeros(0), requires_grad=False)

    def forward(self, x: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        if x.device.type != "cpu" or x.dtype != torch.float32:
            raise ValueError(f"the onnxruntime backend takes CPU float32 input, not {x.device} {x.dtype}")
        (alpha,) = self._session.run(None, {"x": x.contiguous().numpy()})
        return [torch.from_numpy(alpha)], []
