"""RVM's recurrent decoder: ConvGRUs on half the channels of each scale carry the
per-stream temporal state r1..r4 (1/2, 1/4, 1/8, 1/16 of the network input)."""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.nn.utils.fusion import fuse_conv_bn_eval


def conv_bn_relu(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


def upsample_to(x: Tensor, like: Tensor) -> Tensor:
    """2x bilinear upsampling, cropped to ``like`` (odd sizes round up on the way down).
    Only where the sizes differ: an ONNX graph traced on sizes that need no crop has none
    (ONNX Runtime copies even a no-op crop, 4 ms a frame at 320x240)."""
    x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
    if x.shape[2] != like.shape[2] or x.shape[3] != like.shape[3]:
        x = x[:, :, : like.shape[2], : like.shape[3]]
    return x


class ConvGRU(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        self.ih = nn.Sequential(nn.Conv2d(2 * channels, 2 * channels, 3, padding=1), nn.Sigmoid())
        self.hh = nn.Sequential(nn.Conv2d(2 * channels, channels, 3, padding=1), nn.Tanh())

    def forward(self, x: Tensor, h: Tensor | None) -> Tensor:
        if h is None:
            h = torch.zeros_like(x)
        reset, update = self.ih(torch.cat([x, h], 1)).split(self.channels, 1)
        candidate = self.hh(torch.cat([x, reset * h], 1))
        return (1 - update) * h + update * candidate


def gru_on_half(gru: ConvGRU, x: Tensor, r: Tensor | None) -> tuple[Tensor, Tensor]:
    """Passes the first half of the channels through and runs ``gru`` on the second."""
    a, b = x.split(gru.channels, 1)
    r = gru(b, r)
    return torch.cat([a, r], 1), r


class BottleneckBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.gru = ConvGRU(channels // 2)

    def forward(self, x: Tensor, r: Tensor | None) -> tuple[Tensor, Tensor]:
        return gru_on_half(self.gru, x, r)


class UpsamplingBlock(nn.Module):
    def __init__(self, cin: int, skip: int, src: int, cout: int):
        super().__init__()
        self.conv = nn.Sequential(*conv_bn_relu(cin + skip + src, cout))
        self.gru = ConvGRU(cout // 2)

    def forward(self, x: Tensor, f: Tensor, s: Tensor, r: Tensor | None) -> tuple[Tensor, Tensor]:
        x = self.conv(torch.cat([upsample_to(x, s), f, s], 1))
        return gru_on_half(self.gru, x, r)


class SplitConvBnRelu(nn.Module):
    """``relu(bn(conv(cat([x, s]))))`` as ``relu(conv_x(x) + conv_s(s))``, the BatchNorm
    folded into the two convolutions: the same function without the concatenation."""

    def __init__(self, conv: nn.Conv2d, bn: nn.BatchNorm2d, x_channels: int):
        super().__init__()
        fused = fuse_conv_bn_eval(conv, bn)
        assert fused.bias is not None  # folding always gives the convolution a bias
        weight, bias = fused.weight.detach(), fused.bias.detach()
        self.conv_x = nn.Conv2d(x_channels, conv.out_channels, 3, padding=1)
        self.conv_s = nn.Conv2d(conv.in_channels - x_channels, conv.out_channels, 3, padding=1, bias=False)
        self.conv_x.weight = nn.Parameter(weight[:, :x_channels].clone(), requires_grad=False)
        self.conv_x.bias = nn.Parameter(bias.clone(), requires_grad=False)
        self.conv_s.weight = nn.Parameter(weight[:, x_channels:].clone(), requires_grad=False)

    def forward(self, x: Tensor, s: Tensor) -> Tensor:
        return F.relu(self.conv_x(x) + self.conv_s(s))


class OutputBlock(nn.Module):
    def __init__(self, cin: int, src: int, cout: int):
        super().__init__()
        self.cin = cin
        self.conv = nn.Sequential(*conv_bn_relu(cin + src, cout), *conv_bn_relu(cout, cout))
        self.split: SplitConvBnRelu | None = None

    def split_source(self) -> None:
        """Runs the first convolution as two, one on the upsampled features and one on
        the source image, summed (:class:`SplitConvBnRelu`). For export only, like
        :meth:`RecurrentDecoder.pad_source`: at the network's full size the concatenation
        sits between int8 convolutions that ONNX Runtime runs channels-last, so it cost
        either two layout transposes (4 ms at 320x240) or a channels-last concatenation
        (1.8 ms); the split spares both (bench/README.md)."""
        if self.split is None:
            self.split = SplitConvBnRelu(self.conv[0], self.conv[1], self.cin)  # type: ignore[arg-type]

    def forward(self, x: Tensor, s: Tensor) -> Tensor:
        x = upsample_to(x, s)
        if self.split is not None:
            return self.conv[3:](self.split(x, s))
        return self.conv(torch.cat([x, s], 1))


class RecurrentDecoder(nn.Module):
    def __init__(self, features: tuple[int, int, int, int] = (16, 24, 40, 128),
                 channels: tuple[int, int, int, int] = (80, 40, 32, 16)):
        super().__init__()
        self.decode4 = BottleneckBlock(features[3])
        self.decode3 = UpsamplingBlock(features[3], features[2], 3, channels[0])
        self.decode2 = UpsamplingBlock(channels[0], features[1], 3, channels[1])
        self.decode1 = UpsamplingBlock(channels[1], features[0], 3, channels[2])
        self.decode0 = OutputBlock(channels[2], 3, channels[3])
        self.source_channels = 3

    def pad_source(self) -> None:
        """Gives the source image a fourth channel (a copy of red) with zero weight in
        every block's first convolution: same outputs, and those convolutions' inputs
        (35, 59, 107 and 171 channels) become multiples of four, which ONNX Runtime's
        convolution kernels need to run at full speed (int8 35 -> 36 channels: 2.3x as
        fast; bench/README.md). For export only: the padded weights no longer load from
        or save to the official state dict's shapes."""
        if self.source_channels == 4:
            return
        if self.decode0.split is not None:
            raise RuntimeError("pad the source before splitting decode0's first convolution")
        for block in (self.decode3, self.decode2, self.decode1, self.decode0):
            conv: nn.Conv2d = block.conv[0]  # type: ignore[assignment]
            weight = conv.weight.detach()
            conv.weight = nn.Parameter(torch.cat([weight, weight.new_zeros(conv.out_channels, 1, 3, 3)], 1),
                                       requires_grad=False)
            conv.in_channels += 1
        self.source_channels = 4

    def forward(self, s0: Tensor, f1: Tensor, f2: Tensor, f3: Tensor, f4: Tensor,
                r1: Tensor | None, r2: Tensor | None, r3: Tensor | None, r4: Tensor | None,
                ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        if self.source_channels == 4:
            s0 = torch.cat([s0, s0[:, :1]], 1)
        # ceil_mode keeps each pooled source the size of the stride-2 feature map beside it.
        s1 = F.avg_pool2d(s0, 2, ceil_mode=True, count_include_pad=False)
        s2 = F.avg_pool2d(s1, 2, ceil_mode=True, count_include_pad=False)
        s3 = F.avg_pool2d(s2, 2, ceil_mode=True, count_include_pad=False)
        x4, r4 = self.decode4(f4, r4)
        x3, r3 = self.decode3(x4, f3, s3, r3)
        x2, r2 = self.decode2(x3, f2, s2, r2)
        x1, r1 = self.decode1(x2, f1, s1, r1)
        return self.decode0(x1, s0), r1, r2, r3, r4
