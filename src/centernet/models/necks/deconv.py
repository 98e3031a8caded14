"""ResNet up-sampling neck: stride 32 -> 4 by three transposed convs, optionally each after a DCNv2."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..layers.deform_conv import ModulatedDeformConv2d

BN_MOMENTUM = 0.1


def fill_up_weights(up: nn.ConvTranspose2d) -> None:
    """Initialise a transposed conv as bilinear up-sampling (the original's ``fill_up_weights``)."""
    w = up.weight.data  # [in, out, k, k]; like the original, only output channel 0 is set
    k = w.size(2)
    f = math.ceil(k / 2)
    c = (2 * f - 1 - f % 2) / (2.0 * f)
    ax = 1 - torch.abs(torch.arange(k, dtype=w.dtype) / f - c)
    w[:, 0] = ax.view(-1, 1) * ax.view(1, -1)


class DeconvNeck(nn.Module):
    """Takes the last backbone map [B, C, H/32, W/32] and returns [[B, channels[-1], H/4, W/4]].

    ``dcn=True`` (resdcn) puts a 3x3 DCNv2 before each 4x4 transposed conv and initialises the
    transposed convs bilinearly; ``dcn=False`` (msra res) uses transposed convs only.
    Module names follow the original (``deconv_layers``) so official weights map by prefix.
    """

    def __init__(self, in_channels: int, channels: tuple[int, ...] = (256, 128, 64), dcn: bool = True) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for planes in channels:
            if dcn:
                layers += [
                    ModulatedDeformConv2d(in_channels, planes, 3, padding=1),
                    nn.BatchNorm2d(planes, momentum=BN_MOMENTUM),
                    nn.ReLU(inplace=True),
                ]
                in_channels = planes
            up = nn.ConvTranspose2d(in_channels, planes, 4, stride=2, padding=1, bias=False)
            if dcn:
                fill_up_weights(up)
            else:
                nn.init.normal_(up.weight, std=0.001)
            layers += [up, nn.BatchNorm2d(planes, momentum=BN_MOMENTUM), nn.ReLU(inplace=True)]
            in_channels = planes
        self.deconv_layers = nn.Sequential(*layers)
        self.out_channels = channels[-1]
        self.out_stride = 4

    def forward(self, features: list[Tensor]) -> list[Tensor]:
        return [self.deconv_layers(features[-1])]
