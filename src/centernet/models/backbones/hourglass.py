"""Stacked Hourglass-104 (CornerNet's ``exkp`` as used by CenterNet) and its identity neck.

Names follow the original ``large_hourglass.py`` (``pre``, ``kps``, ``cnvs``, ``inters``, ``inters_``,
``cnvs_``; inside a hourglass ``up1``, ``low1``, ``low2``, ``low3``), so official checkpoints map by prefix.
"""
from __future__ import annotations

from torch import Tensor, nn

# Hourglass-104: 5 nested down-samplings; channels and residual modules per depth (the last is the bottom)
HG104_DEPTH = 5
HG104_DIMS = [256, 256, 384, 384, 384, 512]
HG104_MODULES = [2, 2, 2, 2, 2, 4]
STEM_CHANNELS = 128  # after the 7x7 stem conv; the stem's residual widens to HG104_DIMS[0]
CNV_CHANNELS = 256  # width of the per-stack output features the heads see
# The original's top-level module names (CenterNet's large_hourglass and CornerNet's kp), and, inside a head
# (``make_kp_layer``), our layer index -> the original's (its first conv sits in a ``convolution``)
HOURGLASS_ROOTS = ("pre", "kps", "cnvs", "inters", "inters_", "cnvs_")
HOURGLASS_HEAD_LAYERS = {"0": "0.conv", "2": "1"}


class ConvBNReLU(nn.Module):
    """k x k conv (bias-free) -> BN -> ReLU; the original's ``convolution``."""

    def __init__(self, k: int, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, k, stride, (k - 1) // 2, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.bn(self.conv(x)))


class Residual(nn.Module):
    """Two 3x3 conv-BN with a (1x1 conv-BN when the shape changes) skip; the original's ``residual``."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        if stride != 1 or in_channels != out_channels:
            self.skip = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels)
            )
        else:
            self.skip = nn.Identity()
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:  # [B, Cin, H, W] -> [B, Cout, H/s, W/s]
        out = self.relu1(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + self.skip(x))


def residual_stack(in_channels: int, out_channels: int, n: int, stride: int = 1, widen_last: bool = False
                   ) -> nn.Sequential:
    """``n`` residuals changing ``in -> out`` in the first one (or, ``widen_last``, in the last one)."""
    if widen_last:
        dims = [in_channels] * n + [out_channels]
        strides = [1] * n
    else:
        dims = [in_channels] + [out_channels] * n
        strides = [stride] + [1] * (n - 1)
    return nn.Sequential(*(Residual(dims[i], dims[i + 1], strides[i]) for i in range(n)))


class HourglassModule(nn.Module):
    """One recursive hourglass level (the original's ``kp_module``): a full-resolution branch ``up1`` plus
    ``low1`` (stride-2 down) -> ``low2`` (next level or the bottom) -> ``low3`` -> nearest x2 up-sampling."""

    def __init__(self, depth: int, dims: list[int], modules: list[int]) -> None:
        super().__init__()
        curr, nxt = dims[0], dims[1]
        self.up1 = residual_stack(curr, curr, modules[0])
        self.low1 = residual_stack(curr, nxt, modules[0], stride=2)
        self.low2: nn.Module = (
            HourglassModule(depth - 1, dims[1:], modules[1:]) if depth > 1 else residual_stack(nxt, nxt, modules[1])
        )
        self.low3 = residual_stack(nxt, curr, modules[0], widen_last=True)
        self.up2 = nn.Upsample(scale_factor=2, mode="nearest")

    def forward(self, x: Tensor) -> Tensor:  # [B, C, H, W]
        low = self.low3(self.low2(self.low1(x)))  # [B, C, H/2, W/2]
        return self.up1(x) + self.up2(low)


class Hourglass(nn.Module):
    """Stacked hourglass: a stride-4 stem (``pre``) then ``num_stacks`` hourglasses, each followed by a
    3x3 conv (``cnvs``); between stacks the stem path and the stack output are merged (``inters_``,
    ``cnvs_``, ``inters``). ``forward`` returns every stack's [B, cnv_dim, H/4, W/4] output.

    The defaults build Hourglass-104; ``depth`` nested levels with ``dims`` (depth + 1 widths, the last at the
    bottom) and ``modules`` (residuals per level), ``stem_channels`` and ``cnv_dim`` give the same structure
    at other sizes."""

    def __init__(self, num_stacks: int = 2, depth: int = HG104_DEPTH, dims: list[int] | None = None,
                 modules: list[int] | None = None, cnv_dim: int = CNV_CHANNELS,
                 stem_channels: int = STEM_CHANNELS) -> None:
        super().__init__()
        dims = list(HG104_DIMS if dims is None else dims)
        modules = list(HG104_MODULES if modules is None else modules)
        if len(dims) != depth + 1 or len(modules) != depth + 1:
            raise ValueError(f"a depth-{depth} hourglass needs {depth + 1} dims and modules, got {dims} and {modules}")
        curr = dims[0]
        self.pre = nn.Sequential(ConvBNReLU(7, 3, stem_channels, stride=2), Residual(stem_channels, curr, stride=2))
        self.kps = nn.ModuleList(HourglassModule(depth, dims, modules) for _ in range(num_stacks))
        self.cnvs = nn.ModuleList(ConvBNReLU(3, curr, cnv_dim) for _ in range(num_stacks))
        self.inters = nn.ModuleList(Residual(curr, curr) for _ in range(num_stacks - 1))
        self.inters_ = nn.ModuleList(
            nn.Sequential(nn.Conv2d(curr, curr, 1, bias=False), nn.BatchNorm2d(curr)) for _ in range(num_stacks - 1)
        )
        self.cnvs_ = nn.ModuleList(
            nn.Sequential(nn.Conv2d(cnv_dim, curr, 1, bias=False), nn.BatchNorm2d(curr)) for _ in range(num_stacks - 1)
        )
        self.relu = nn.ReLU(inplace=True)
        self.num_stacks = num_stacks
        self.input_multiple = 4 * 2 ** depth  # stem stride x one halving per hourglass level
        self.channels = [cnv_dim] * num_stacks
        self.strides = [4] * num_stacks

    def forward(self, x: Tensor) -> list[Tensor]:  # [B, 3, H, W], H and W multiples of input_multiple
        inter = self.pre(x)  # [B, 256, H/4, W/4]
        outs = []
        for i in range(self.num_stacks):
            cnv = self.cnvs[i](self.kps[i](inter))  # [B, 256, H/4, W/4]
            outs.append(cnv)
            if i < self.num_stacks - 1:
                inter = self.inters[i](self.relu(self.inters_[i](inter) + self.cnvs_[i](cnv)))
        return outs


class IdentityNeck(nn.Module):
    """Passes the backbone's per-stack stride-4 features straight to the heads."""

    def __init__(self, channels: int, out_stride: int = 4) -> None:
        super().__init__()
        self.out_channels = channels
        self.out_stride = out_stride

    def forward(self, features: list[Tensor]) -> list[Tensor]:
        return list(features)
