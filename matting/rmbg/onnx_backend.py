"""RMBG-1.4 in ONNX Runtime: on a 2-core CPU 1.5 s a cutout instead of 2.8 s, with the
same alpha (network outputs within 1.4e-7; bench/README.md). Exported at the network's
fixed 1024x1024 input (about 5 s), once per checkpoint when a cache is given.

Float32 only, also with ``ABRAR_PRECISION=int8``: no int8 recipe held the cut-out
quality bar (+1 MAD on each dev photo). The decoder's activations span +-600, the last
side output -1600..14, which 8 bits cannot hold (all convolutions in int8: MAD 54 -> 364,
noise); with only the encoder or some of its stages in int8, single photos still lost
10-25 MAD (bench/README.md, issue 14).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from matting.cutout import INPUT_SIZE
from matting.onnx_cache import OnnxCache
from matting.onnx_runtime import ort_session, to_onnx
from matting.rmbg.isnet import BriaRMBG


class _Finest(nn.Module):
    """Only the finest side output: the one cutouts use (the other five cost export time)."""

    def __init__(self, net: BriaRMBG):
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return self.net.finest(x)


def export(net: BriaRMBG) -> bytes:
    """The float32 ONNX bytes of the finest output, at 1x3x1024x1024."""
    return to_onnx(_Finest(net.float().cpu()), {"x": torch.zeros(1, 3, *INPUT_SIZE)}, ["alpha"])


class OnnxRMBG(nn.Module):
    """Drop-in for a CPU float32 :class:`BriaRMBG` in :func:`matting.cutout.cutout_alpha`:
    ``forward(x)`` returns ``([alpha], [])``, the finest side output only. Thread-safe.
    ``model``: ONNX bytes to run instead of exporting ``net`` (benches try variants)."""

    backend = "onnxruntime"

    def __init__(self, net: BriaRMBG, threads: int | None = None, cache: OnnxCache | None = None,
                 model: bytes | None = None):
        super().__init__()
        if model is None:
            model = export(net) if cache is None else cache.get("finest-fp32", lambda: export(net))
        self._session = ort_session(model, threads)
        # The torch weights (176 MB) are not kept; this empty parameter tells callers the
        # device and dtype to feed.
        self.anchor = nn.Parameter(torch.zeros(0), requires_grad=False)

    def forward(self, x: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        if x.device.type != "cpu" or x.dtype != torch.float32:
            raise ValueError(f"the onnxruntime backend takes CPU float32 input, not {x.device} {x.dtype}")
        (alpha,) = self._session.run(None, {"x": x.contiguous().numpy()})
        return [torch.from_numpy(alpha)], []
