"""RMBG-1.4 in bfloat16 on CPUs that compute in it natively: AMX (Intel Sapphire Rapids
and later) or AVX512-BF16 (AMD Zen 4 and later, Intel Cooper Lake).

On such a CPU oneDNN runs bfloat16 convolutions natively: on a 2-vCPU VM with AMX a
1024x1024 cut-out took 0.86 s instead of 1.70 s in ONNX Runtime float32 with 2 threads
(interleaved), and 0.84 s instead of 2.3 s with one; on a 2-vCPU AMD EPYC with
AVX512-BF16, 0.60 s instead of 0.80 s; alphas within 0.2-2.3 x1e-3 mean difference and
MAD no worse on any dev photo (bench/README.md, issue 14). Elsewhere bfloat16 is emulated
and slower than float32, so :func:`matting.runtime.rmbg_precision` only picks this where
:func:`native_bf16_available`.

The convolutions run in channels-last layout, which oneDNN's AMX kernels take without
reordering each layer's input, and each BatchNorm is folded into its convolution (in
float32, before the cast): one pass less over every 1024x1024 activation, 15 % of the time.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from matting.rmbg.blocks import REBNCONV
from matting.rmbg.isnet import BriaRMBG


def amx_available() -> bool:
    """Whether this CPU has AMX tiles and the kernel lets this process use them (Linux
    grants them on request, from 5.16): without the grant oneDNN falls back to slower
    kernels. False on torch builds that cannot tell."""
    has_tiles = getattr(torch.cpu, "_is_amx_tile_supported", None)
    request = getattr(torch._C._cpu, "_init_amx", None)
    return bool(has_tiles and has_tiles() and request and request())


def native_bf16_available() -> bool:
    """Whether this CPU computes bfloat16 natively (AMX or AVX512-BF16)."""
    avx512_bf16 = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    return amx_available() or bool(avx512_bf16 and avx512_bf16())


class Bf16RMBG(nn.Module):
    """Drop-in for a CPU float32 :class:`BriaRMBG` in :func:`matting.cutout.cutout_alpha`:
    float32 in, ``([alpha], [])`` out with the finest side output in float32, computed in
    bfloat16. Takes ``net`` over (its BatchNorms are folded away). Thread-safe (inference only)."""

    backend = "torch-bf16"

    def __init__(self, net: BriaRMBG):
        super().__init__()
        fold_batch_norms(net.float().eval())
        self.net = net.to(dtype=torch.bfloat16, memory_format=torch.channels_last).eval()  # type: ignore[call-overload]
        # callers read the input device and dtype off the first parameter (a module's own
        # parameters come before its children's): float32 on the CPU
        self.anchor = nn.Parameter(torch.zeros(0), requires_grad=False)

    def forward(self, x: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        if x.device.type != "cpu" or x.dtype != torch.float32:
            raise ValueError(f"the bf16 RMBG takes CPU float32 input, not {x.device} {x.dtype}")
        with torch.inference_mode():
            alpha = self.net.finest(x.to(torch.bfloat16).contiguous(memory_format=torch.channels_last))
        return [alpha.float()], []


def fold_batch_norms(net: BriaRMBG) -> None:
    """Fold each REBNCONV's (eval-mode) BatchNorm into its convolution, in place."""
    for block in net.modules():
        if isinstance(block, REBNCONV) and isinstance(block.bn_s1, nn.BatchNorm2d):
            block.conv_s1 = fuse_conv_bn_eval(block.conv_s1, block.bn_s1)
            block.bn_s1 = nn.Identity()  # type: ignore[assignment]
