"""DLA up-sampling neck: iterative (IDA) and hierarchical (DLA-up) deep aggregation with DCNv2 nodes.

Structure and names follow the original ``pose_dla_dcn.py`` (``dla_up.ida_{i}`` and ``ida_up``, each with
``proj_{k}``, ``up_{k}``, ``node_{k}``; a node is ``conv`` (DCNv2) then ``actf`` (BN, ReLU)), so official
checkpoints map by prefix.
"""
from __future__ import annotations

from torch import Tensor, nn

from ..layers.deform_conv import ModulatedDeformConv2d
from .deconv import fill_up_weights

BN_MOMENTUM = 0.1


class DeformConv(nn.Module):
    """3x3 DCNv2 -> BN -> ReLU (``dcn=False``: a plain 3x3 conv in its place)."""

    def __init__(self, in_channels: int, out_channels: int, dcn: bool = True) -> None:
        super().__init__()
        self.actf = nn.Sequential(nn.BatchNorm2d(out_channels, momentum=BN_MOMENTUM), nn.ReLU(inplace=True))
        conv = ModulatedDeformConv2d if dcn else nn.Conv2d
        self.conv = conv(in_channels, out_channels, 3, stride=1, padding=1)

    def forward(self, x: Tensor) -> Tensor:  # [B, Cin, H, W] -> [B, Cout, H, W]
        return self.actf(self.conv(x))


class IDAUp(nn.Module):
    """Iterative aggregation: each map ``i >= 1`` is projected to ``out_channels`` (``proj_i``), up-sampled
    by ``factors[i]`` (``up_i``, depthwise bilinear-initialised transposed conv) and merged with map
    ``i - 1`` by ``node_i``."""

    def __init__(self, out_channels: int, channels: list[int], factors: list[int], dcn: bool = True) -> None:
        super().__init__()
        for i in range(1, len(channels)):
            f = int(factors[i])
            up = nn.ConvTranspose2d(out_channels, out_channels, 2 * f, stride=f, padding=f // 2,
                                    groups=out_channels, bias=False)  # exactly x f in size
            fill_up_weights(up)
            setattr(self, f"proj_{i}", DeformConv(channels[i], out_channels, dcn))
            setattr(self, f"up_{i}", up)
            setattr(self, f"node_{i}", DeformConv(out_channels, out_channels, dcn))

    def forward(self, layers: list[Tensor], start: int, end: int) -> list[Tensor]:
        """Aggregates ``layers[start:end]`` in turn; returns a new list where ``layers[i]`` for
        ``start < i < end`` is replaced by its aggregate (at the resolution of ``layers[start]``)."""
        layers = list(layers)
        for i in range(start + 1, end):
            k = i - start
            up = getattr(self, f"up_{k}")(getattr(self, f"proj_{k}")(layers[i]))  # [B, O, H_{i-1}, W_{i-1}]
            layers[i] = getattr(self, f"node_{k}")(up + layers[i - 1])
        return layers


class DLAUp(nn.Module):
    """Hierarchical aggregation from the deepest map down to level ``start_level``.

    ``channels`` and ``scales`` describe the maps from ``start_level`` on (scales relative to the first).
    ``forward`` takes all backbone maps and returns the aggregates, finest first: one per level from
    ``start_level`` (the deepest map is returned unchanged).
    """

    def __init__(self, start_level: int, channels: list[int], scales: list[int], dcn: bool = True) -> None:
        super().__init__()
        self.start_level = start_level
        in_channels, scales = list(channels), list(scales)
        for i in range(len(channels) - 1):
            j = len(channels) - i - 2  # the level this IDA aggregates onto
            setattr(self, f"ida_{i}", IDAUp(channels[j], in_channels[j:], [s // scales[j] for s in scales[j:]], dcn))
            # the maps above j now live at level j's scale and width
            scales[j + 1:] = [scales[j]] * (len(scales) - j - 1)
            in_channels[j + 1:] = [channels[j]] * (len(in_channels) - j - 1)

    def forward(self, layers: list[Tensor]) -> list[Tensor]:
        out = [layers[-1]]  # [B, C_last, H/32, W/32]
        n = len(layers)
        for i in range(n - self.start_level - 1):
            layers = getattr(self, f"ida_{i}")(layers, n - i - 2, n)
            out.insert(0, layers[-1])  # aggregate at level n - i - 2
        return out


class DLAUpNeck(nn.Module):
    """The CenterNet DLA neck: DLA-up from the stride-``out_stride`` level to the deepest, then an IDA over
    the levels ``first_level .. last_level - 1``. Returns [[B, C_first, H/out_stride, W/out_stride]]."""

    def __init__(self, channels: list[int], strides: list[int], out_stride: int = 4, last_level: int = 5,
                 dcn: bool = True) -> None:
        super().__init__()
        if out_stride not in strides:
            raise ValueError(f"no backbone level has stride {out_stride}; strides are {strides}")
        first = strides.index(out_stride)
        scales = [s // strides[first] for s in strides[first:]]  # 1, 2, 4, 8
        self.first_level, self.last_level = first, last_level
        self.dla_up = DLAUp(first, channels[first:], scales, dcn)
        self.ida_up = IDAUp(channels[first], channels[first:last_level], scales[: last_level - first], dcn)
        self.out_channels = channels[first]
        self.out_stride = out_stride

    def forward(self, features: list[Tensor]) -> list[Tensor]:  # maps of strides 1 .. 32
        aggregated = self.dla_up(features)  # [B, 64, H/4, W/4], [B, 128, H/8, W/8], ...
        y = self.ida_up(aggregated[: self.last_level - self.first_level], 0, self.last_level - self.first_level)
        return [y[-1]]  # [B, 64, H/4, W/4]
