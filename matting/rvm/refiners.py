"""Refiners that bring the low-resolution fgr/pha back to full resolution, edge-aware,
by fitting a local linear model ``y = A * x + b`` between the downsampled frame (plus its
grey level) and the output, then applying the upsampled A, b to the full-size frame.

A refiner's ``forward`` returns A and b at network size; :func:`apply_linear` applies them
(:meth:`MattingNetwork.finish` folds the foreground's residual into A first)."""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn import functional as F


def with_grey(rgb: Tensor) -> Tensor:
    return torch.cat([rgb, rgb.mean(1, keepdim=True)], 1)


def local_statistics(box: Callable[[Tensor], Tensor], x: Tensor, y: Tensor
                     ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Box means of x and y, covariance of x and y, and variance of x."""
    mean_x, mean_y = box(x), box(y)
    return mean_x, mean_y, box(x * y) - mean_x * mean_y, box(x * x) - mean_x * mean_x


def apply_linear(a: Tensor, b: Tensor, fine_x: Tensor) -> Tensor:
    """``a * fine_x + b`` with ``a`` and ``b`` upsampled (bilinear) to ``fine_x``'s size."""
    size = fine_x.shape[2:]
    a = F.interpolate(a, size, mode="bilinear", align_corners=False)
    b = F.interpolate(b, size, mode="bilinear", align_corners=False)
    return a * fine_x + b


class DeepGuidedFilterRefiner(nn.Module):
    """The official refiner: A is predicted by 1x1 convs from the local statistics and
    the decoder's hidden features."""

    name = "deep_guided_filter"

    def __init__(self, hidden: int = 16):
        super().__init__()
        self.box_filter = nn.Conv2d(4, 4, 3, padding=1, bias=False, groups=4)
        self.conv = nn.Sequential(
            nn.Conv2d(4 * 2 + hidden, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU(),
            nn.Conv2d(hidden, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU(),
            nn.Conv2d(hidden, 4, 1),
        )

    def forward(self, base_src: Tensor, base_fgr: Tensor, base_pha: Tensor, base_hid: Tensor
                ) -> tuple[Tensor, Tensor]:
        x, y = with_grey(base_src), torch.cat([base_fgr, base_pha], 1)
        mean_x, mean_y, cov_xy, var_x = local_statistics(self.box_filter, x, y)
        a = self.conv(torch.cat([cov_xy, var_x, base_hid], 1))
        return a, mean_y - a * mean_x


class FastGuidedFilterRefiner(nn.Module):
    """Parameter-free guided filter (He et al.), as in the authors' TF/tfjs exports."""

    name = "fast_guided_filter"

    def __init__(self, radius: int = 1, eps: float = 1e-5):
        super().__init__()
        self.radius = radius
        self.eps = eps

    def box(self, x: Tensor) -> Tensor:
        # Zero padding counted in the mean, like a conv box filter with "same" padding.
        return F.avg_pool2d(x, 2 * self.radius + 1, 1, self.radius, count_include_pad=True)

    def forward(self, base_src: Tensor, base_fgr: Tensor, base_pha: Tensor, base_hid: Tensor
                ) -> tuple[Tensor, Tensor]:
        # The statistics subtract nearly equal numbers and eps is below fp16's normal
        # range, so they are computed in fp32 (cheap: low resolution).
        x, y = with_grey(base_src).float(), torch.cat([base_fgr, base_pha], 1).float()
        mean_x, mean_y, cov_xy, var_x = local_statistics(self.box, x, y)
        a = cov_xy / (var_x + self.eps)
        return a.to(base_src.dtype), (mean_y - a * mean_x).to(base_src.dtype)
