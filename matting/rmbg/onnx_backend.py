"""RMBG-1.4 in ONNX Runtime: on a 2-core CPU 1.5 s a cutout instead of 2.8 s, with the
same alpha (network outputs within 1.4e-7; bench/README.md). Exported at the network's
fixed 1024x1024 input (about 5 s), once per checkpoint when a cache is given.

``precision="int8"``: the encoder's convolutions in static int8 (:mod:`matting.quantize`),
calibrated on the bundled photo and clip frames. The decoder stays float: its
activations span +-600 (and the last side output -1600..14), which 8 bits cannot hold;
in int8 it turned the alpha to noise (MAD 25 -> 270 on a dev photo), while the int8
encoder changed MAD by 0.02 (bench/README.md).
"""
from __future__ import annotations

import re

import numpy as np
import torch
from torch import Tensor, nn

from matting.cutout import INPUT_SIZE, network_input
from matting.onnx_cache import OnnxCache
from matting.onnx_runtime import ort_session, to_onnx
from matting.quantize import calibration_clip, calibration_photo, conv_names, quantize_int8
from matting.rmbg.isnet import BriaRMBG

PRECISIONS = ("fp32", "int8")
# Conv nodes of the decoder stages (stage1d..stage5d) and the side outputs: kept float
DECODER = re.compile(r"/stage\dd/|/side\d")


class _Finest(nn.Module):
    """Only the finest side output: the one cutouts use (the other five cost export time)."""

    def __init__(self, net: BriaRMBG):
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)[0][0]


def export(net: BriaRMBG) -> bytes:
    """The float32 ONNX bytes of the finest output, at 1x3x1024x1024."""
    return to_onnx(_Finest(net.float().cpu()), {"x": torch.zeros(1, 3, *INPUT_SIZE)}, ["alpha"])


def calibration_feeds() -> list[dict[str, np.ndarray]]:
    """The portrait photo and three frames of the clip (start, middle, end) as network inputs."""
    frames = calibration_clip()
    images = [calibration_photo(), *frames[:: max(1, (len(frames) - 1) // 2)]]
    cpu = torch.device("cpu")
    return [{"x": network_input(rgb, cpu, torch.float32).numpy()} for rgb in images]


def model_bytes(net: BriaRMBG, precision: str, cache: OnnxCache | None = None) -> bytes:
    """The ONNX bytes of ``net`` in ``precision`` (fp32 or int8), through ``cache`` when given."""
    if precision == "fp32":
        def build() -> bytes:
            return export(net)
    else:
        def build() -> bytes:
            fp32 = model_bytes(net, "fp32", cache)
            decoder = [name for name in conv_names(fp32) if DECODER.search(name)]
            return quantize_int8(fp32, calibration_feeds(), keep_float=decoder)
    return build() if cache is None else cache.get(f"finest-{precision}", build)


class OnnxRMBG(nn.Module):
    """Drop-in for a CPU float32 :class:`BriaRMBG` in :func:`matting.cutout.cutout_alpha`:
    ``forward(x)`` returns ``([alpha], [])``, the finest side output only. Thread-safe."""

    backend = "onnxruntime"

    def __init__(self, net: BriaRMBG, threads: int | None = None, precision: str = "fp32",
                 cache: OnnxCache | None = None):
        super().__init__()
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
        self.precision = precision
        self._session = ort_session(model_bytes(net, precision, cache), threads)
        # The torch weights (176 MB) are not kept; this empty parameter tells callers the
        # device and dtype to feed.
        self.anchor = nn.Parameter(torch.zeros(0), requires_grad=False)

    def forward(self, x: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        if x.device.type != "cpu" or x.dtype != torch.float32:
            raise ValueError(f"the onnxruntime backend takes CPU float32 input, not {x.device} {x.dtype}")
        (alpha,) = self._session.run(None, {"x": x.contiguous().numpy()})
        return [torch.from_numpy(alpha)], []
