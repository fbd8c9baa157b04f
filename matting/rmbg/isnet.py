"""IS-Net (DIS) as shipped in BRIA RMBG-1.4: a U^2-Net of RSU stages with six side outputs."""
from __future__ import annotations

import torch
from torch import nn

from matting.rmbg.blocks import RSU, pool, upsample_like


class BriaRMBG(nn.Module):
    """IS-Net in the BriaRMBG state-dict layout.

    Input: ``[B, 3, H, W]`` normalised as ``rgb/255 - 0.5`` (1024x1024 in training).
    ``forward`` returns ``(alphas, features)``: six sigmoid side outputs at the input
    size (``alphas[0]`` is the finest, the one to use) and the decoder features
    ``hx1d..hx5d, hx6``, the same order as the official model and its ONNX export.
    """

    def __init__(self, in_ch: int = 3, out_ch: int = 1):
        super().__init__()
        # Stride 2 first: the encoder then runs at half the input resolution.
        self.conv_in = nn.Conv2d(in_ch, 64, 3, stride=2, padding=1)
        self.stage1 = RSU(7, 64, 32, 64)
        self.stage2 = RSU(6, 64, 32, 128)
        self.stage3 = RSU(5, 128, 64, 256)
        self.stage4 = RSU(4, 256, 128, 512)
        self.stage5 = RSU(4, 512, 256, 512, dilated=True)
        self.stage6 = RSU(4, 512, 256, 512, dilated=True)
        self.stage5d = RSU(4, 1024, 256, 512, dilated=True)
        self.stage4d = RSU(4, 1024, 128, 256)
        self.stage3d = RSU(5, 512, 64, 128)
        self.stage2d = RSU(6, 256, 32, 64)
        self.stage1d = RSU(7, 128, 16, 64)
        self.side1 = nn.Conv2d(64, out_ch, 3, padding=1)
        self.side2 = nn.Conv2d(64, out_ch, 3, padding=1)
        self.side3 = nn.Conv2d(128, out_ch, 3, padding=1)
        self.side4 = nn.Conv2d(256, out_ch, 3, padding=1)
        self.side5 = nn.Conv2d(512, out_ch, 3, padding=1)
        self.side6 = nn.Conv2d(512, out_ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        features = self.features(x)
        sides = (self.side1, self.side2, self.side3, self.side4, self.side5, self.side6)
        alphas = [torch.sigmoid(upsample_like(side(f), x)) for side, f in zip(sides, features, strict=False)]
        return alphas, features

    def finest(self, x: torch.Tensor) -> torch.Tensor:
        """``alphas[0]`` of :meth:`forward` alone, without the five coarser side outputs."""
        return torch.sigmoid(upsample_like(self.side1(self.features(x)[0]), x))

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The decoder features ``hx1d..hx5d, hx6``."""
        encoders = (self.stage1, self.stage2, self.stage3, self.stage4, self.stage5)
        skips = []
        hx = self.conv_in(x)
        for i, stage in enumerate(encoders):
            hx = stage(pool(hx) if i else hx)
            skips.append(hx)
        hx = self.stage6(pool(hx))
        features = [hx]
        for stage, skip in zip((self.stage5d, self.stage4d, self.stage3d, self.stage2d, self.stage1d),
                               reversed(skips), strict=False):
            hx = stage(torch.cat((upsample_like(hx, skip), skip), 1))
            features.insert(0, hx)
        return features
