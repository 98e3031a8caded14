"""Prediction heads: conv3x3 -> ReLU -> conv1x1 per output map, with the CenterNet initialisation.

A task declares its heads as :class:`HeadSpec` s (name, channels, initial prior or bias, optional shared
branch);
this module builds them without knowing what any head means.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Callable, Union

from torch import Tensor, nn

HEATMAP_PRIOR = 0.1  # initial foreground probability of every heatmap pixel (SPEC 3)
HEAD_INIT_STD = 0.001  # std of the last conv of non-heatmap heads (the original's fill_fc_weights)


@dataclass(frozen=True)
class Branch:
    """A module between the neck and some heads (e.g. CornerNet's corner pooling); heads naming the same
    branch share one instance per stack. ``factory(in_channels)`` maps [B, C, h, w] -> [B, C, h, w]."""

    name: str
    factory: Callable[[int], nn.Module]


@dataclass(frozen=True)
class HeadSpec:
    """One output map: ``channels`` maps; ``prior`` sets the last bias so sigmoid(bias) == prior (heatmaps);
    without one the last conv starts near zero (weights of std :data:`HEAD_INIT_STD`) with its bias at ``bias``;
    ``branch`` is the shared module it reads from (None: the neck)."""

    name: str
    channels: int
    prior: float | None = None
    branch: Branch | None = None
    bias: float = 0.0


HeadsArg = Union[Mapping[str, int], Mapping[str, HeadSpec], Sequence[HeadSpec]]


def as_specs(heads: HeadsArg) -> list[HeadSpec]:
    """Normalise ``heads``: HeadSpecs (a list or a {name: spec} dict) or plain {name: channels} (no prior,
    no branch)."""
    if isinstance(heads, Mapping):
        values = list(heads.items())
        return [v if isinstance(v, HeadSpec) else HeadSpec(name, int(v)) for name, v in values]
    return list(heads)


def prior_bias(prior: float = HEATMAP_PRIOR) -> float:
    """Bias that makes sigmoid(bias) == prior: -log((1 - prior) / prior)."""
    return -math.log((1 - prior) / prior)


def make_head(in_channels: int, out_channels: int, head_conv: int, prior: float | None,
              bias: float = 0.0) -> nn.Sequential:
    """One head. ``head_conv <= 0`` gives a single 1x1 conv (as the original does). ``prior`` or ``bias``: the
    last bias's initial value (:class:`HeadSpec`)."""
    if head_conv > 0:
        head = nn.Sequential(
            nn.Conv2d(in_channels, head_conv, 3, padding=1, bias=True),
            nn.ReLU(inplace=True),
            nn.Conv2d(head_conv, out_channels, 1, bias=True),
        )
    else:
        head = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=True))
    last = head[-1]
    if prior is not None:
        nn.init.constant_(last.bias, prior_bias(prior))
    else:
        nn.init.normal_(last.weight, std=HEAD_INIT_STD)
        nn.init.constant_(last.bias, bias)
    return head


class Heads(nn.ModuleDict):
    """All heads of one stack, keyed by name: {name: [B, n, H/4, W/4]} from the neck's [B, C, H/4, W/4]
    feature, or from the output of the head's branch."""

    def __init__(self, in_channels: int, heads: HeadsArg, head_conv: int) -> None:
        specs = as_specs(heads)
        super().__init__({s.name: make_head(in_channels, s.channels, head_conv, s.prior, s.bias) for s in specs})
        self.sources = {s.name: s.branch.name if s.branch else None for s in specs}  # plain dict: no module

    def forward(self, x: Tensor, branched: Mapping[str, Tensor] | None = None) -> dict[str, Tensor]:
        branched = branched or {}
        return {name: head(branched[self.sources[name]] if self.sources[name] else x) for name, head in self.items()}


def make_branches(in_channels: int, heads: HeadsArg) -> nn.ModuleDict:
    """One module per distinct branch of ``heads`` (empty when no head has one)."""
    branches: dict[str, nn.Module] = {}
    for spec in as_specs(heads):
        if spec.branch is not None and spec.branch.name not in branches:
            branches[spec.branch.name] = spec.branch.factory(in_channels)
    return nn.ModuleDict(branches)
