"""Pick the torch device and dtype: CUDA fp16 when present, CPU fp32 otherwise.

``int8`` is a CPU precision of the ONNX Runtime models (matting.runtime); the tensors
that torch hands them stay float32."""
from __future__ import annotations

from dataclasses import dataclass

import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda")
PRECISION_CHOICES = ("auto", "fp32", "fp16", "int8")


@dataclass(frozen=True)
class DeviceChoice:
    device: torch.device
    dtype: torch.dtype

    def describe(self) -> str:
        return f"{self.device} {str(self.dtype).removeprefix('torch.')}"


def select_device(device: str = "auto", precision: str = "auto") -> DeviceChoice:
    """Resolve ``device`` (auto|cpu|cuda|cuda:N) and ``precision`` (auto|fp32|fp16|int8)."""
    if device == "auto":
        dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        dev = torch.device(device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("device 'cuda' was asked for but CUDA is not available here; choose device cpu (or auto)")
    if precision == "auto":
        dtype = torch.float16 if dev.type == "cuda" else torch.float32
    elif precision == "int8":
        if dev.type != "cpu":
            raise ValueError(f"int8 runs on the CPU (in ONNX Runtime), not on {dev}; use fp16 or fp32 there")
        dtype = torch.float32
    elif precision in ("fp16", "fp32"):
        dtype = torch.float16 if precision == "fp16" else torch.float32
    else:
        raise ValueError(f"precision must be one of {PRECISION_CHOICES}, not {precision!r}")
    if dtype == torch.float16 and dev.type == "cpu":
        raise ValueError("fp16 is only supported on CUDA; use fp32 on the CPU")
    return DeviceChoice(dev, dtype)
