"""Prediction heads: conv3x3 -> ReLU -> conv1x1 per output map, with the CenterNet initialisation."""
from __future__ import annotations

import math

from torch import Tensor, nn

HEATMAP_PRIOR = 0.1  # initial foreground probability of every heatmap pixel (SPEC 3)
# Heads whose last bias starts at the prior logit; every other head starts near zero.
HEATMAP_HEADS = ("hm", "hm_hp", "tl_heat", "br_heat")


def prior_bias(prior: float = HEATMAP_PRIOR) -> float:
    """Bias that makes sigmoid(bias) == prior: -log((1 - prior) / prior)."""
    return -math.log((1 - prior) / prior)


def make_head(in_channels: int, out_channels: int, head_conv: int, heatmap: bool) -> nn.Sequential:
    """One head. ``head_conv <= 0`` gives a single 1x1 conv (as the original does)."""
    if head_conv > 0:
        head = nn.Sequential(
            nn.Conv2d(in_channels, head_conv, 3, padding=1, bias=True),
            nn.ReLU(inplace=True),
            nn.Conv2d(head_conv, out_channels, 1, bias=True),
        )
    else:
        head = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=True))
    last = head[-1]
    if heatmap:
        nn.init.constant_(last.bias, prior_bias())
    else:
        nn.init.normal_(last.weight, std=0.001)
        nn.init.zeros_(last.bias)
    return head


class Heads(nn.ModuleDict):
    """All heads of one stack: maps a [B, C, H/4, W/4] feature to {name: [B, n, H/4, W/4]}."""

    def __init__(self, in_channels: int, heads: dict[str, int], head_conv: int) -> None:
        super().__init__(
            {name: make_head(in_channels, n, head_conv, name in HEATMAP_HEADS) for name, n in heads.items()}
        )

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return {name: head(x) for name, head in self.items()}
