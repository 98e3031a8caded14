"""Modulated deformable convolution (DCNv2) in plain PyTorch (SPEC 8).

Each of the k x k taps of every output position samples the input at its regular position plus a learned
offset (bilinear, zero outside the image) and is scaled by a learned mask in (0, 1); the k x k weights are
then applied as one matrix product over the sampled columns.

Two sampling kernels compute the same columns (tested equal, values and gradients):
- ``bags`` (default in eager mode): each sample is a weighted sum of four input rows (channels-last),
  i.e. an ``embedding_bag`` whose per-sample weights are bilinear weight x mask. Contiguous row reads, and
  the columns come out in the matmul's layout with no copy.
- ``grid``: ``grid_sample`` (GridSample, opset >= 16), a standard op: used in eager mode for narrow
  inputs, where the bags' backward (a sort over all sample indices, whatever the channel count) costs more
  than it saves (``benchmarks/bench_deform_conv.py``; measured here: bags are 1.3-2.5x faster forward from
  64 channels per group up, 2-7x slower forward + backward at 8-16).
- ``mosaic`` (while exporting to ONNX): ``grid_sample`` onto a [Ho*kh, Wo*kw] mosaic of the taps, then the
  k x k weights as a plain Conv of stride (kh, kw). Same values, but no transpose of the columns: in
  onnxruntime that transpose cost as much as the convs around it (``benchmarks/bench_int8.py``), and the
  Conv is one onnxruntime quantises to int8.
"""
from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.utils import _pair

Sampler = Literal["auto", "bags", "grid", "mosaic"]
BAGS_MIN_CHANNELS = 64  # channels per deformable group from which "auto" samples with bags


def _sample_points(
    offset: Tensor, kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int],
    dilation: tuple[int, int], groups: int,
) -> tuple[Tensor, Tensor]:
    """Sampling positions (y, x) in input pixels, each [B, Ho*Wo, G, k*k] (output position major)."""
    b, _, ho, wo = offset.shape
    kh, kw = kernel
    kk = kh * kw
    like = offset
    ty = torch.arange(kh, device=like.device, dtype=like.dtype) * dilation[0]
    tx = torch.arange(kw, device=like.device, dtype=like.dtype) * dilation[1]
    oy = torch.arange(ho, device=like.device, dtype=like.dtype) * stride[0] - padding[0]
    ox = torch.arange(wo, device=like.device, dtype=like.dtype) * stride[1] - padding[1]
    tap_y = ty.view(kh, 1).expand(kh, kw).reshape(1, 1, kk)  # tap k = i * kw + j
    tap_x = tx.view(1, kw).expand(kh, kw).reshape(1, 1, kk)
    pos_y = oy.view(ho, 1).expand(ho, wo).reshape(-1, 1, 1)  # [Ho*Wo, 1, 1]
    pos_x = ox.view(1, wo).expand(ho, wo).reshape(-1, 1, 1)
    off = offset.reshape(b, groups, kk, 2, ho * wo).permute(0, 4, 1, 2, 3)  # [B, Ho*Wo, G, k*k, 2]
    return pos_y + tap_y + off[..., 0], pos_x + tap_x + off[..., 1]


def _columns_bags(x: Tensor, ys: Tensor, xs: Tensor, mask: Tensor) -> Tensor:
    """Masked bilinear samples as [B, Ho*Wo, G*k*k*C/G] via one ``embedding_bag`` over input rows."""
    b, c, h, w = x.shape
    _, p, g, kk = ys.shape
    y0, x0 = ys.detach().floor(), xs.detach().floor()
    ly, lx = ys - y0, xs - x0  # fractional parts carry the gradient to the offsets
    y0, x0 = y0.long(), x0.long()
    zero_row = h * w  # every (image, group) table ends with a row of zeros: out-of-image corners read it
    first_row = (torch.arange(b * g, device=x.device) * (h * w + 1)).view(b, 1, g, 1)
    index, weight = [], []
    for dy, dx, wt in ((0, 0, (1 - ly) * (1 - lx)), (0, 1, (1 - ly) * lx), (1, 0, ly * (1 - lx)), (1, 1, ly * lx)):
        yi, xi = y0 + dy, x0 + dx
        inside = (yi >= 0) & (yi < h) & (xi >= 0) & (xi < w)
        index.append(torch.where(inside, yi * w + xi, torch.full_like(yi, zero_row)) + first_row)
        weight.append(wt * mask)
    rows = x.reshape(b, g, c // g, h * w).transpose(2, 3)  # [B, G, H*W, C/G]
    rows = torch.cat([rows, rows.new_zeros(b, g, 1, c // g)], dim=2).reshape(-1, c // g)
    sampled = F.embedding_bag(torch.stack(index, -1).reshape(-1, 4), rows,
                              per_sample_weights=torch.stack(weight, -1).reshape(-1, 4).to(rows.dtype), mode="sum")
    return sampled.reshape(b, p, g * kk * (c // g))  # bags were laid out [B, Ho*Wo, G, k*k]: no copy


def _columns_grid(x: Tensor, ys: Tensor, xs: Tensor, mask: Tensor) -> Tensor:
    """The same columns through ``grid_sample`` (exportable to ONNX GridSample)."""
    b, c, h, w = x.shape
    _, p, g, kk = ys.shape
    # Pixel centres sit at integers; align_corners=False maps pixel i to (2i + 1) / size - 1.
    grid = torch.stack([(2 * xs + 1) / w - 1, (2 * ys + 1) / h - 1], dim=-1)  # [B, P, G, kk, 2]
    grid = grid.permute(0, 2, 1, 3, 4).reshape(b * g, p, kk, 2)
    sampled = F.grid_sample(x.reshape(b * g, c // g, h, w), grid, mode="bilinear", padding_mode="zeros",
                            align_corners=False)  # [B*G, C/G, P, kk]
    sampled = sampled * mask.permute(0, 2, 1, 3).reshape(b * g, 1, p, kk)
    return sampled.reshape(b, g, c // g, p, kk).permute(0, 3, 1, 4, 2).reshape(b, p, g * kk * (c // g))


def _mosaic_conv(x: Tensor, ys: Tensor, xs: Tensor, mask: Tensor, weight: Tensor, bias: Tensor | None,
                 out_hw: tuple[int, int]) -> Tensor:
    """The whole DCN output [B, O, Ho, Wo]: masked samples laid out as a [B, C, Ho*kh, Wo*kw] mosaic (tap
    (i, j) of output (y, x) at row y*kh + i, column x*kw + j), then a Conv of stride (kh, kw)."""
    b, c, h, w = x.shape
    g = ys.shape[2]
    (ho, wo), (kh, kw) = out_hw, weight.shape[-2:]

    def mosaic(t: Tensor) -> Tensor:  # [B, Ho*Wo, G, kh*kw] -> [B*G, Ho*kh, Wo*kw]
        return t.reshape(b, ho, wo, g, kh, kw).permute(0, 3, 1, 4, 2, 5).reshape(b * g, ho * kh, wo * kw)

    grid = torch.stack([(2 * mosaic(xs) + 1) / w - 1, (2 * mosaic(ys) + 1) / h - 1], dim=-1)  # as _columns_grid
    sampled = F.grid_sample(x.reshape(b * g, c // g, h, w), grid, mode="bilinear", padding_mode="zeros",
                            align_corners=False) * mosaic(mask).unsqueeze(1)  # [B*G, C/G, Ho*kh, Wo*kw]
    return F.conv2d(sampled.reshape(b, c, ho * kh, wo * kw), weight, bias, stride=(kh, kw))


def modulated_deform_conv2d(
    x: Tensor, offset: Tensor, mask: Tensor, weight: Tensor, bias: Tensor | None = None,
    stride=1, padding=0, dilation=1, deformable_groups: int = 1, sampler: Sampler = "auto",
) -> Tensor:
    """DCNv2: ``x`` [B, C, H, W], ``offset`` [B, 2*G*k*k, Ho, Wo] as (dy, dx) per tap, ``mask``
    [B, G*k*k, Ho, Wo] already in (0, 1), ``weight`` [O, C, kh, kw]. Returns [B, O, Ho, Wo].

    ``sampler="auto"`` uses ``bags`` in eager mode from ``BAGS_MIN_CHANNELS`` channels per group, else
    ``grid``; ``mosaic`` while tracing for export.
    """
    stride, padding, dilation = _pair(stride), _pair(padding), _pair(dilation)
    b, c = x.shape[:2]
    out_ch, _, kh, kw = weight.shape
    g, kk = deformable_groups, kh * kw
    ho, wo = offset.shape[-2:]
    if sampler == "auto":
        tracing = torch.onnx.is_in_onnx_export() or torch.jit.is_tracing()
        sampler = "mosaic" if tracing else "bags" if c // deformable_groups >= BAGS_MIN_CHANNELS else "grid"
    ys, xs = _sample_points(offset, (kh, kw), stride, padding, dilation, g)  # [B, Ho*Wo, G, k*k]
    m = mask.reshape(b, g, kk, ho * wo).permute(0, 3, 1, 2)  # [B, Ho*Wo, G, k*k]
    if sampler == "mosaic":
        return _mosaic_conv(x, ys, xs, m, weight, bias, (ho, wo))
    columns = (_columns_bags if sampler == "bags" else _columns_grid)(x, ys, xs, m)  # [B, Ho*Wo, G*kk*C/G]
    # weight [O, C, kh, kw] -> [O, G, k*k, C/G]: the columns' (group, tap, channel) order
    wmat = weight.reshape(out_ch, g, c // g, kk).permute(0, 1, 3, 2).reshape(out_ch, -1)
    out = columns @ wmat.t()  # [B, Ho*Wo, O]
    if bias is not None:
        out = out + bias
    return out.transpose(1, 2).reshape(b, out_ch, ho, wo)


class ModulatedDeformConv2d(nn.Module):
    """DCNv2 layer with its own offset/mask predictor, parameter names as the original ``DCN``
    (``weight``, ``bias``, ``conv_offset_mask``) so official checkpoints load unchanged."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
        padding: int = 1, dilation: int = 1, deformable_groups: int = 1, bias: bool = True,
    ) -> None:
        super().__init__()
        if in_channels % deformable_groups:
            raise ValueError(f"in_channels {in_channels} is not divisible by deformable_groups {deformable_groups}")
        self.kernel_size = _pair(kernel_size)
        self.stride, self.padding, self.dilation = _pair(stride), _pair(padding), _pair(dilation)
        self.deformable_groups = deformable_groups
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, *self.kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        taps = self.kernel_size[0] * self.kernel_size[1]
        self.conv_offset_mask = nn.Conv2d(
            in_channels, deformable_groups * 3 * taps, self.kernel_size, self.stride, self.padding,
            self.dilation, bias=True,
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        fan_in = self.weight[0].numel()
        bound = 1.0 / math.sqrt(fan_in)
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.zeros_(self.bias)
        # Start as a plain conv: zero offsets, masks sigmoid(0) = 0.5 (as DCNv2 does).
        nn.init.zeros_(self.conv_offset_mask.weight)
        nn.init.zeros_(self.conv_offset_mask.bias)

    def forward(self, x: Tensor) -> Tensor:  # [B, C, H, W] -> [B, O, Ho, Wo]
        out = self.conv_offset_mask(x)
        n_off = 2 * self.deformable_groups * self.kernel_size[0] * self.kernel_size[1]
        offset, mask = out[:, :n_off], torch.sigmoid(out[:, n_off:])
        return modulated_deform_conv2d(
            x, offset, mask, self.weight, self.bias, self.stride, self.padding, self.dilation,
            self.deformable_groups,
        )
