"""Corner pooling (CornerNet, SPEC 7) and the corner branch that uses it.

A corner pool is a running maximum along one axis of a [B, C, H, W] map:

* ``top``:    out[y, x] = max over y' >= y   (looks down: the top-left corner sees the object below it)
* ``bottom``: out[y, x] = max over y' <= y
* ``left``:   out[y, x] = max over x' >= x
* ``right``:  out[y, x] = max over x' <= x

Three formulations give the same values:

* ``cummax``: ``torch.cummax`` (behind a flip for top / left), with autograd's exact gradient to the max.
* ``scan``: the original's recurrence, out[i] = max(x[i], out[i -+ 1]), one row at a time, with a
  hand-written backward of the same recurrence. On a CPU it is several times faster than ``cummax``
  along H (where cummax's strided scan is slow); ``cummax`` wins along W.
* ``doubling``: ceil(log2(span)) rounds of ``out = max(out, out shifted by 1, 2, 4, ...)``, standard ops only,
  for ONNX (which has no cummax). The shift pads with the map's own end rows, which are inside every
  window, so no padding value is needed, and a round whose shift exceeds the map is a no-op: a graph traced
  at one size is exact at every size up to ``span``.

``method="auto"`` picks ``doubling`` while exporting to ONNX, ``scan`` for top / bottom on a CPU and
``cummax`` otherwise (see benchmarks/bench_corner_pool.py). The values never differ; where several inputs
tie for a max, ``cummax`` and ``scan`` send its gradient to one of them (not always the same one) and
``doubling`` splits it.
"""
from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

from ..backbones.hourglass import ConvBNReLU

Direction = Literal["top", "bottom", "left", "right"]
Method = Literal["auto", "cummax", "scan", "doubling"]
METHODS = ("auto", "cummax", "scan", "doubling")

# direction -> (axis of a [B, C, H, W] map, True when the maximum runs over the higher indices)
AXES: dict[str, tuple[int, bool]] = {"top": (2, True), "bottom": (2, False), "left": (3, True), "right": (3, False)}
# Longest side an exported graph covers: with dynamic axes the traced size says nothing about the largest
# map, so an export runs enough doubling rounds for maps up to this side (an 8192-pixel input at stride 4).
EXPORT_SPAN = 2048
POOL_CHANNELS = 128  # the original's width of the two pooled branches


def _slice(x: Tensor, axis: int, start: int | None, stop: int | None) -> Tensor:
    index = [slice(None)] * x.dim()
    index[axis] = slice(start, stop)
    return x[tuple(index)]


def _running_max_doubling(x: Tensor, axis: int, reverse: bool, span: int) -> Tensor:
    """Running max along ``axis`` (suffix max if ``reverse``) in ceil(log2(span)) shift-and-max rounds."""
    out = x
    shift = 1
    while shift < span:
        if reverse:  # shifted[i] = out[i + shift], or out[i] itself past the end
            shifted = torch.cat([_slice(out, axis, shift, None), _slice(out, axis, -shift, None)], dim=axis)
        else:  # shifted[i] = out[i - shift], or out[i] itself before the start
            shifted = torch.cat([_slice(out, axis, None, shift), _slice(out, axis, None, -shift)], dim=axis)
        out = torch.maximum(out, shifted)
        shift *= 2
    return out


class _RunningMaxScan(torch.autograd.Function):
    """Running max along ``axis`` by the recurrence out[i] = max(x[i], out[i -+ 1]); suffix max if
    ``reverse``. The gradient runs the recurrence backwards: out[i] passes its gradient on to its
    predecessor where it was taken from it (x[i] < predecessor), and to x[i] otherwise."""

    @staticmethod
    def forward(ctx, x: Tensor, axis: int, reverse: bool) -> Tensor:  # type: ignore[override]
        out = x.clone()
        length = x.shape[axis]
        step = 1 if reverse else -1  # the predecessor of i is i + step
        for i in (range(length - 2, -1, -1) if reverse else range(1, length)):
            row = out.select(axis, i)
            torch.maximum(row, out.select(axis, i + step), out=row)
        ctx.save_for_backward(x, out)
        ctx.axis, ctx.reverse = axis, reverse
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override]
        x, out = ctx.saved_tensors
        axis, reverse, length = ctx.axis, ctx.reverse, x.shape[ctx.axis]
        passed = torch.zeros_like(grad)  # 1 where out[i] came from its predecessor
        first = 0 if reverse else 1  # rows that have a predecessor: [first, first + length - 1)
        passed.narrow(axis, first, length - 1).copy_(
            x.narrow(axis, first, length - 1) < out.narrow(axis, 1 - first, length - 1))
        carry = grad.clone()  # total gradient reaching out[i]
        step = -1 if reverse else 1  # i receives from the row whose predecessor it is
        for i in (range(1, length) if reverse else range(length - 2, -1, -1)):
            carry.select(axis, i).addcmul_(carry.select(axis, i + step), passed.select(axis, i + step))
        return carry * (1 - passed), None, None


def corner_pool(x: Tensor, direction: Direction, method: Method = "auto", span: int | None = None) -> Tensor:
    """Corner pooling of ``x`` [B, C, H, W] towards ``direction`` (see the module docstring). -> [B, C, H, W]

    ``span`` is the longest run ``doubling`` must cover: by default the map's own length, or
    :data:`EXPORT_SPAN` during an export (maps longer than that need an explicit ``span``).
    """
    if direction not in AXES:
        raise ValueError(f"unknown corner pool direction {direction!r}; expected one of {sorted(AXES)}")
    if method not in METHODS:
        raise ValueError(f"unknown corner pool method {method!r}; expected one of {METHODS}")
    if x.dim() != 4:
        raise ValueError(f"corner_pool expects a [B, C, H, W] map, got shape {tuple(x.shape)}")
    axis, reverse = AXES[direction]
    exporting = torch.onnx.is_in_onnx_export()
    if method == "auto":
        if exporting:
            method = "doubling"
        else:
            method = "scan" if x.device.type == "cpu" and axis == 2 else "cummax"
    if method == "cummax":
        if reverse:
            return torch.cummax(x.flip(axis), axis).values.flip(axis)
        return torch.cummax(x, axis).values
    if method == "scan":
        return _RunningMaxScan.apply(x, axis, reverse)
    if span is None:  # while exporting, the traced length may be a dynamic axis: cover EXPORT_SPAN instead
        span = EXPORT_SPAN if exporting else x.shape[axis]
    span = 2 ** math.ceil(math.log2(max(int(span), 1)))
    return _running_max_doubling(x, axis, reverse, span)


class CornerPool(nn.Module):
    """:func:`corner_pool` as a module (no parameters)."""

    def __init__(self, direction: Direction, method: Method = "auto") -> None:
        super().__init__()
        if direction not in AXES:
            raise ValueError(f"unknown corner pool direction {direction!r}; expected one of {sorted(AXES)}")
        self.direction = direction
        self.method = method

    def forward(self, x: Tensor) -> Tensor:  # [B, C, H, W] -> [B, C, H, W]
        return corner_pool(x, self.direction, self.method)

    def extra_repr(self) -> str:
        return f"direction={self.direction!r}, method={self.method!r}"


class CornerPoolModule(nn.Module):
    """One corner branch of CornerNet (the original's ``pool`` / ``tl_pool`` / ``br_pool``).

    Two 3x3 conv-BN-ReLU to ``pool_channels`` (``p1_conv1``, ``p2_conv1``), pooled towards the two
    ``directions`` (``pool1``, ``pool2``; ("top", "left") for top-left corners, ("bottom", "right") for
    bottom-right), summed, 3x3 conv-BN (``p_conv1``, ``p_bn1``), plus a 1x1 conv-BN skip of the input
    (``conv1``, ``bn1``), ReLU (``relu1``), 3x3 conv-BN-ReLU (``conv2``). Submodule names are the original's,
    so its weights load by renaming the prefix only. [B, dim, H, W] -> [B, dim, H, W]

    ``pool=False`` (the CornerNet paper's ablation without corner pooling) replaces both pools by the
    identity: the same convolutions and parameters, the two 3x3 conv-BN-ReLU outputs simply summed.
    """

    def __init__(self, dim: int, directions: tuple[Direction, Direction] = ("top", "left"),
                 pool_channels: int = POOL_CHANNELS, method: Method = "auto", pool: bool = True) -> None:
        super().__init__()
        if len(directions) != 2:
            raise ValueError(f"a corner branch pools in two directions, got {directions!r}")
        self.p1_conv1 = ConvBNReLU(3, dim, pool_channels)
        self.p2_conv1 = ConvBNReLU(3, dim, pool_channels)
        self.pool1: nn.Module = CornerPool(directions[0], method) if pool else nn.Identity()
        self.pool2: nn.Module = CornerPool(directions[1], method) if pool else nn.Identity()
        self.p_conv1 = nn.Conv2d(pool_channels, dim, 3, padding=1, bias=False)
        self.p_bn1 = nn.BatchNorm2d(dim)
        self.conv1 = nn.Conv2d(dim, dim, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(dim)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = ConvBNReLU(3, dim, dim)

    def forward(self, x: Tensor) -> Tensor:  # [B, dim, H, W]
        pooled = self.pool1(self.p1_conv1(x)) + self.pool2(self.p2_conv1(x))  # [B, pool_channels, H, W]
        merged = self.relu1(self.p_bn1(self.p_conv1(pooled)) + self.bn1(self.conv1(x)))  # [B, dim, H, W]
        return self.conv2(merged)
