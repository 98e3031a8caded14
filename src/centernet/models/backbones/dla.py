"""Deep Layer Aggregation (DLA) backbone, as modified for CenterNet (the original's ``dla34``).

Module and parameter names follow the original (``base_layer``, ``level0`` .. ``level5``, ``tree1``,
``tree2``, ``root``, ``project``), so ImageNet ``dla34-ba72cf86.pth`` weights and the official CenterNet
checkpoints (prefix ``base.``) load by name.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

BN_MOMENTUM = 0.1

# depth -> (convs/tree depth per level 0..5, channels per level 0..5)
DLA_SPECS: dict[int, tuple[list[int], list[int]]] = {
    34: ([1, 1, 1, 2, 2, 1], [16, 32, 64, 128, 256, 512]),
}


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual that the caller may supply (a Tree passes its projected input)."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, dilation, dilation=dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)

    def forward(self, x: Tensor, residual: Tensor | None = None) -> Tensor:  # [B, Cin, H, W]
        if residual is None:
            residual = x
        out = self.relu(self.bn1(self.conv1(x)))  # [B, C, H/s, W/s]
        return self.relu(self.bn2(self.conv2(out)) + residual)


class Root(nn.Module):
    """Aggregation node: 1x1 conv over the concatenated children -> BN (-> + first child) -> ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, residual: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, 1, (kernel_size - 1) // 2, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.residual = residual

    def forward(self, *children: Tensor) -> Tensor:  # each [B, C_i, H, W]
        x = self.bn(self.conv(torch.cat(children, 1)))  # [B, out, H, W]
        if self.residual:
            x = x + children[0]
        return self.relu(x)


class Tree(nn.Module):
    """Hierarchical aggregation of ``levels`` depth; the leaves are two blocks joined by a :class:`Root`.

    ``level_root`` feeds the (down-sampled) tree input to the root as an extra child. Like the original, a
    tree with ``levels > 1`` and ``in != out`` owns a ``project`` that it never uses (its sub-trees project
    their own input); it is kept so that official weights load, but not computed, and its tensors are buffers,
    not parameters: a parameter that never gets a gradient stops DistributedDataParallel at the second step.
    """

    def __init__(
        self, levels: int, block: type[BasicBlock], in_channels: int, out_channels: int, stride: int = 1,
        level_root: bool = False, root_dim: int = 0, root_kernel_size: int = 1, dilation: int = 1,
        root_residual: bool = False,
    ) -> None:
        super().__init__()
        if root_dim == 0:
            root_dim = 2 * out_channels  # the two leaf blocks
        if level_root:
            root_dim += in_channels
        self.tree1: nn.Module
        self.tree2: nn.Module
        if levels == 1:
            self.tree1 = block(in_channels, out_channels, stride, dilation=dilation)
            self.tree2 = block(out_channels, out_channels, 1, dilation=dilation)
            self.root = Root(root_dim, out_channels, root_kernel_size, root_residual)
        else:
            self.tree1 = Tree(levels - 1, block, in_channels, out_channels, stride, root_dim=0,
                              root_kernel_size=root_kernel_size, dilation=dilation, root_residual=root_residual)
            # the second sub-tree's root also aggregates this tree's first output (+ input if level_root)
            self.tree2 = Tree(levels - 1, block, out_channels, out_channels, root_dim=root_dim + out_channels,
                              root_kernel_size=root_kernel_size, dilation=dilation, root_residual=root_residual)
        self.level_root = level_root
        self.levels = levels
        self.downsample = nn.MaxPool2d(stride, stride=stride) if stride > 1 else None
        self.project = None
        if in_channels != out_channels:
            self.project = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, 1, bias=False),
                nn.BatchNorm2d(out_channels, momentum=BN_MOMENTUM),
            )
            if levels > 1:
                _parameters_to_buffers(self.project)

    def forward(self, x: Tensor, residual: Tensor | None = None, children: list[Tensor] | None = None) -> Tensor:
        # ``residual`` is accepted for call compatibility with blocks; a tree computes its own.
        children = [] if children is None else children
        bottom = self.downsample(x) if self.downsample is not None else x  # [B, Cin, H/s, W/s]
        if self.level_root:
            children.append(bottom)
        if self.levels == 1:
            residual = self.project(bottom) if self.project is not None else bottom  # [B, Cout, H/s, W/s]
            x1 = self.tree1(x, residual)
            x2 = self.tree2(x1)
            return self.root(x2, x1, *children)
        x1 = self.tree1(x)
        children.append(x1)
        return self.tree2(x1, children=children)


def _parameters_to_buffers(module: nn.Module) -> None:
    """Turn every parameter of ``module`` into a buffer of the same name: the state-dict keys and shapes stay
    (checkpoints load as before), but optimisers and DDP no longer see the tensors."""
    for sub in module.modules():
        for name, param in list(sub.named_parameters(recurse=False)):
            delattr(sub, name)
            sub.register_buffer(name, param.detach())


def conv_level(inplanes: int, planes: int, convs: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    """``convs`` times conv3x3 -> BN -> ReLU, the first one strided."""
    modules: list[nn.Module] = []
    for i in range(convs):
        modules += [
            nn.Conv2d(inplanes, planes, 3, stride if i == 0 else 1, dilation, dilation=dilation, bias=False),
            nn.BatchNorm2d(planes, momentum=BN_MOMENTUM),
            nn.ReLU(inplace=True),
        ]
        inplanes = planes
    return nn.Sequential(*modules)


class DLA(nn.Module):
    """DLA without its classifier. ``forward`` returns the outputs of level0..level5
    ([B, C_i, H/s_i, W/s_i] with strides 1, 2, 4, 8, 16, 32); ``channels`` and ``strides`` describe them."""

    def __init__(self, depth: int = 34, residual_root: bool = False, channels: list[int] | None = None) -> None:
        super().__init__()
        if depth not in DLA_SPECS:
            raise ValueError(f"no DLA-{depth}; choose one of {sorted(DLA_SPECS)}")
        levels, default_channels = DLA_SPECS[depth]
        channels = list(channels or default_channels)  # narrower variants keep the same structure
        block = BasicBlock
        self.base_layer = nn.Sequential(
            nn.Conv2d(3, channels[0], 7, 1, 3, bias=False),
            nn.BatchNorm2d(channels[0], momentum=BN_MOMENTUM),
            nn.ReLU(inplace=True),
        )
        self.level0 = conv_level(channels[0], channels[0], levels[0])
        self.level1 = conv_level(channels[0], channels[1], levels[1], stride=2)
        self.level2 = Tree(levels[2], block, channels[1], channels[2], 2, level_root=False,
                           root_residual=residual_root)
        self.level3 = Tree(levels[3], block, channels[2], channels[3], 2, level_root=True,
                           root_residual=residual_root)
        self.level4 = Tree(levels[4], block, channels[3], channels[4], 2, level_root=True,
                           root_residual=residual_root)
        self.level5 = Tree(levels[5], block, channels[4], channels[5], 2, level_root=True,
                           root_residual=residual_root)
        self.channels = list(channels)
        self.strides = [2 ** i for i in range(len(channels))]  # level0 keeps the input size, then x2 each

    def forward(self, x: Tensor) -> list[Tensor]:  # [B, 3, H, W]
        x = self.base_layer(x)  # [B, 16, H, W]
        outs = []
        for level in (self.level0, self.level1, self.level2, self.level3, self.level4, self.level5):
            x = level(x)  # [B, C_i, H/2^i, W/2^i]
            outs.append(x)
        return outs
