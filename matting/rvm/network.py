"""RVM MattingNetwork (MobileNetV3 variant), key-compatible with the official state dict."""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from matting.rvm.decoder import RecurrentDecoder
from matting.rvm.lraspp import LRASPP
from matting.rvm.mobilenetv3 import MobileNetV3LargeEncoder
from matting.rvm.refiners import DeepGuidedFilterRefiner, FastGuidedFilterRefiner, apply_linear, with_grey

REFINERS = {cls.name: cls for cls in (DeepGuidedFilterRefiner, FastGuidedFilterRefiner)}


class Projection(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class MattingNetwork(nn.Module):
    """``forward(src, r1, r2, r3, r4, downsample_ratio)`` -> ``(fgr, pha, r1, r2, r3, r4)``.

    ``src``: RGB in [0, 1], ``[B, 3, H, W]``. ``r1..r4``: the previous frame's recurrent
    state, or None (zeros) on the first frame. The network holds no per-stream state.
    """

    def __init__(self, refiner: str = "deep_guided_filter"):
        super().__init__()
        self.backbone = MobileNetV3LargeEncoder()
        self.aspp = LRASPP(960, 128)
        self.decoder = RecurrentDecoder()
        self.project_mat = Projection(16, 4)
        # Trained only for the segmentation datasets; kept for strict loading and
        # available through ``segmentation_pass``.
        self.project_seg = Projection(16, 1)
        self.refiner = REFINERS[refiner]()
        # Per output channel (fgr's three, pha): whether the network's output is a residual
        # on src. A buffer, so that it moves with the model and a forward pass copies
        # nothing to the device (CUDA graph capture forbids such copies); not in the state dict.
        self.register_buffer("residual", torch.tensor([1.0, 1.0, 1.0, 0.0]).view(1, 4, 1, 1), persistent=False)

    @property
    def refiner_name(self) -> str:
        return self.refiner.name

    def forward(self, src: Tensor, r1: Tensor | None = None, r2: Tensor | None = None,
                r3: Tensor | None = None, r4: Tensor | None = None,
                downsample_ratio: float = 1.0, segmentation_pass: bool = False,
                ) -> tuple[Tensor, ...]:
        if src.ndim != 4 or src.shape[1] != 3:
            raise ValueError(f"src must be [B, 3, H, W], got {list(src.shape)}")
        small = downsample(src, downsample_ratio)
        hid, r1, r2, r3, r4 = self.coarse(small, r1, r2, r3, r4)
        if segmentation_pass:
            return self.project_seg(hid), r1, r2, r3, r4
        return (*self.finish(src, small, hid, downsample_ratio), r1, r2, r3, r4)

    def coarse(self, small: Tensor, r1: Tensor | None, r2: Tensor | None, r3: Tensor | None,
               r4: Tensor | None) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Encoder and recurrent decoder at network resolution: the hidden features and
        the new state (almost all of the work)."""
        f1, f2, f3, f4 = self.backbone(small)
        return self.decoder(small, f1, f2, f3, self.aspp(f4), r1, r2, r3, r4)

    def finish(self, src: Tensor, small: Tensor, hid: Tensor, downsample_ratio: float
               ) -> tuple[Tensor, Tensor]:
        """fgr and pha at ``src``'s resolution from the hidden features."""
        fgr_residual, pha = self.project_mat(hid).split([3, 1], 1)
        if downsample_ratio == 1:
            return (fgr_residual + src).clamp(0, 1), pha.clamp(0, 1)
        a, b = self.refiner(small, fgr_residual, pha, hid)
        # The refined residual plus src is (a * src + b) + src = (a + 1) * src + b: the 1
        # added to a at network size (bilinear weights sum to one) spares a full-size sum.
        out = apply_linear(a + self.residual, b, with_grey(src)).clamp(0, 1)
        fgr, pha = out.split([3, 1], 1)
        return fgr, pha


# The decoder's four stride-2 stages: network inputs whose sides are multiples of this
# halve evenly all the way down, so no upsampled map needs a crop to fit its skip input.
ALIGN = 16


def network_size(height: int, width: int, downsample_ratio: float) -> tuple[int, int]:
    """The network input's size for a ``height`` x ``width`` frame: the frame's own at
    ratio 1, else each side times the ratio to the nearest multiple of ALIGN (at least
    ALIGN). The refiner maps any network size back to the frame's, so a side a few per
    cent off the exact ratio costs nothing, while the aligned size spares the decoder its
    crops (about 6 % of a CPU frame at 640x480, bench/README.md)."""
    if downsample_ratio == 1:
        return height, width
    return tuple(max(ALIGN, round(side * downsample_ratio / ALIGN) * ALIGN)  # type: ignore[return-value]
                 for side in (height, width))


def downsample(src: Tensor, downsample_ratio: float) -> Tensor:
    """The network input: ``src`` resized (bilinear) to :func:`network_size`."""
    if downsample_ratio == 1:
        return src
    size = network_size(src.shape[2], src.shape[3], downsample_ratio)
    return F.interpolate(src, size=size, mode="bilinear", align_corners=False)
