"""Static int8 quantisation of the exported networks for ONNX Runtime on the CPU.

Convolutions (the networks' work) and the ReLUs after them, in QDQ form, which ONNX
Runtime fuses into int8 kernels (VNNI/AMX where the CPU has them): weights int8 per
output channel, activations uint8 with ranges calibrated on the bundled clip
(``calibration/``: a person and a scene that the quality tests do not use). A ReLU is
free in int8: its convolution's output is quantised over [0, max], so values below zero
saturate to zero, and the float ReLU with its Dequantize/Quantize pair goes (RVM 6 %
faster, MAD no worse: bench/README.md). Layers named by the caller stay float where
measurement showed int8 hurt them. The other elementwise ops around the convolutions
(hard-swish, adds, resizes, the guided filter) stay float: quantising them too was
measured to wreck the matte (MAD x12 on RVM with the adds) or cost quality for speed.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

CALIBRATION_DIR = Path(__file__).resolve().parent / "calibration"


def calibration_clip() -> list[np.ndarray]:
    """16 consecutive frames (10 fps, 640x360) of a person on video, uint8 RGB: a
    sequence, so that RVM's recurrent state is calibrated as it is used."""
    import av

    with av.open(str(CALIBRATION_DIR / "clip.mp4")) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def conv_names(model: bytes) -> list[str]:
    """The names of ``model``'s Conv nodes, in graph order (the first sees the pixels)."""
    import onnx

    return [node.name for node in onnx.load_from_string(model).graph.node if node.op_type == "Conv"]


def quantize_int8(model: bytes, feeds: Iterable[dict[str, np.ndarray]], keep_float: Sequence[str] = ()) -> bytes:
    """``model`` (float32 ONNX bytes) with its convolutions in int8, activation ranges
    taken from running it on ``feeds`` (input name -> array, one dict per sample).
    ``keep_float``: names of Conv nodes to leave in float32."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.items, None)

    with tempfile.TemporaryDirectory(prefix="abrar-int8-") as tmp:
        source, target = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        source.write_bytes(model)
        quantize_static(str(source), str(target), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        op_types_to_quantize=["Conv", "Relu"], nodes_to_exclude=list(keep_float),
                        calibrate_method=CalibrationMethod.MinMax)
        return target.read_bytes()
