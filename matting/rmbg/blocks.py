"""U^2-Net building blocks: REBNCONV and the residual U-blocks (RSU-4..7, RSU-4F).

Module and attribute names follow the BriaRMBG checkpoint layout
(``rebnconvin``, ``rebnconv1..L``, ``rebnconv(L-1)d..1d``, each with ``conv_s1``/``bn_s1``).
"""
from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import nn


def upsample_like(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Bilinear resize of ``x`` to ``ref``'s spatial size (align_corners=False, as trained)."""
    return F.interpolate(x, size=ref.shape[2:], mode="bilinear", align_corners=False)


def pool(x: torch.Tensor) -> torch.Tensor:
    # ceil_mode keeps odd sizes from losing their last row/column.
    return F.max_pool2d(x, 2, stride=2, ceil_mode=True)


class REBNCONV(nn.Module):
    """3x3 conv (optionally dilated) -> BatchNorm -> ReLU, spatial size kept."""

    def __init__(self, in_ch: int, out_ch: int, dilation: int = 1):
        super().__init__()
        self.conv_s1 = nn.Conv2d(in_ch, out_ch, 3, padding=dilation, dilation=dilation)
        self.bn_s1 = nn.BatchNorm2d(out_ch)
        self.relu_s1 = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu_s1(self.bn_s1(self.conv_s1(x)))


class RSU(nn.Module):
    """Residual U-block of ``height`` levels: a small U-Net added to its input conv.

    Plain RSU-L halves the resolution between encoder levels and dilates only the
    bottom level (rate 2). The "F" variant (``dilated=True``, RSU-4F) never pools and
    dilates levels 1, 2, 4, 8 instead, for stages whose maps are already small.
    """

    def __init__(self, height: int, in_ch: int, mid_ch: int, out_ch: int, dilated: bool = False):
        super().__init__()
        self.height = height
        self.dilated = dilated
        self.rebnconvin = REBNCONV(in_ch, out_ch)
        for i in range(1, height + 1):
            self.add_module(f"rebnconv{i}", REBNCONV(out_ch if i == 1 else mid_ch, mid_ch,
                                                     self._dilation(i, decoder=False)))
        for i in range(height - 1, 0, -1):
            self.add_module(f"rebnconv{i}d", REBNCONV(2 * mid_ch, out_ch if i == 1 else mid_ch,
                                                      self._dilation(i, decoder=True)))

    def _dilation(self, level: int, decoder: bool) -> int:
        if self.dilated:
            return 2 ** (level - 1)
        return 2 if level == self.height and not decoder else 1

    def _level(self, name: str) -> REBNCONV:
        return cast(REBNCONV, self.get_submodule(f"rebnconv{name}"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hxin = self.rebnconvin(x)
        skips = []
        hx = hxin
        for i in range(1, self.height):
            hx = self._level(str(i))(hx)
            skips.append(hx)
            if not self.dilated and i < self.height - 1:
                hx = pool(hx)
        hx = self._level(str(self.height))(hx)
        for i in range(self.height - 1, 0, -1):
            hx = self._level(f"{i}d")(torch.cat((hx, skips[i - 1]), 1))
            if not self.dilated and i > 1:
                hx = upsample_like(hx, skips[i - 2])
        return hx + hxin

