"""MobileNetV3-Large encoder as RVM uses it: ImageNet normalisation inside, dilated
last stage (output stride 16), and the four feature maps the decoder taps."""
from __future__ import annotations

import torch
from torch import Tensor, nn

# torchvision's MobileNetV3 BatchNorm eps; the checkpoint's folded BNs are exact identities
# only with this eps (running_var = 1 - eps).
BN_EPS = 1e-3
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# features.1..15: (kernel, expanded, out, squeeze-excite width or 0, hard-swish, stride, dilation).
# The last three are dilated instead of strided so the deepest features stay at 1/16.
BLOCKS = (
    (3, 16, 16, 0, False, 1, 1),
    (3, 64, 24, 0, False, 2, 1),
    (3, 72, 24, 0, False, 1, 1),
    (5, 72, 40, 24, False, 2, 1),
    (5, 120, 40, 32, False, 1, 1),
    (5, 120, 40, 32, False, 1, 1),
    (3, 240, 80, 0, True, 2, 1),
    (3, 200, 80, 0, True, 1, 1),
    (3, 184, 80, 0, True, 1, 1),
    (3, 184, 80, 0, True, 1, 1),
    (3, 480, 112, 120, True, 1, 1),
    (3, 672, 112, 168, True, 1, 1),
    (5, 672, 160, 168, True, 1, 2),
    (5, 960, 160, 240, True, 1, 2),
    (5, 960, 160, 240, True, 1, 2),
)
# Indices in `features` after which the decoder taps f1 (1/2), f2 (1/4), f3 (1/8), f4 (1/16).
TAPS = (1, 3, 6, 16)


def conv_bn_act(cin: int, cout: int, kernel: int, *, stride: int = 1, dilation: int = 1,
                groups: int = 1, act: type[nn.Module] | None = nn.ReLU) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2 * dilation, dilation,
                  groups=groups, bias=False),
        nn.BatchNorm2d(cout, eps=BN_EPS),
    ]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


class SqueezeExcitation(nn.Module):
    def __init__(self, channels: int, squeezed: int):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, squeezed, 1)
        self.fc2 = nn.Conv2d(squeezed, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        scale = x.mean((2, 3), keepdim=True)
        scale = nn.functional.hardsigmoid(self.fc2(nn.functional.relu(self.fc1(scale))))
        return x * scale


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, kernel: int, expanded: int, cout: int, se: int,
                 hardswish: bool, stride: int, dilation: int):
        super().__init__()
        act = nn.Hardswish if hardswish else nn.ReLU
        layers: list[nn.Module] = []
        if expanded != cin:
            layers.append(conv_bn_act(cin, expanded, 1, act=act))
        layers.append(conv_bn_act(expanded, expanded, kernel, stride=stride, dilation=dilation,
                                  groups=expanded, act=act))
        if se:
            layers.append(SqueezeExcitation(expanded, se))
        layers.append(conv_bn_act(expanded, cout, 1, act=None))
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        y = self.block(x)
        return x + y if self.residual else y


class MobileNetV3LargeEncoder(nn.Module):
    mean: Tensor  # buffers, registered in __init__
    std: Tensor

    def __init__(self):
        super().__init__()
        layers: list[nn.Module] = [conv_bn_act(3, 16, 3, stride=2, act=nn.Hardswish)]
        cin = 16
        for kernel, expanded, cout, se, hs, stride, dilation in BLOCKS:
            layers.append(InvertedResidual(cin, kernel, expanded, cout, se, hs, stride, dilation))
            cin = cout
        layers.append(conv_bn_act(cin, 960, 1, act=nn.Hardswish))
        self.features = nn.Sequential(*layers)
        # Not in the official state dict, hence non-persistent; .to() still moves/casts them.
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, src: Tensor) -> list[Tensor]:
        x = (src - self.mean) / self.std
        taps = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in TAPS:
                taps.append(x)
        return taps
