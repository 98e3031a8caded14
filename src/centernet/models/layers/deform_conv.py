"""Modulated deformable convolution (DCNv2) in plain PyTorch (SPEC 8).

Each of the k x k taps of every output position samples the input at its regular position plus a learned
offset (bilinear, zero outside the image) and is scaled by a learned mask in (0, 1); the k x k weights are
then applied as one matrix product. Built on ``grid_sample``, so it runs on any device PyTorch supports and
exports to ONNX (GridSample, opset >= 16) without a custom op.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.utils import _pair


def _base_grid(
    out_hw: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int],
    dilation: tuple[int, int], like: Tensor,
) -> tuple[Tensor, Tensor]:
    """Regular sampling positions (y, x) of every tap, each [k*k, Ho, Wo] in input pixels."""
    ho, wo = out_hw
    kh, kw = kernel
    ty = torch.arange(kh, device=like.device, dtype=like.dtype) * dilation[0]
    tx = torch.arange(kw, device=like.device, dtype=like.dtype) * dilation[1]
    oy = torch.arange(ho, device=like.device, dtype=like.dtype) * stride[0] - padding[0]
    ox = torch.arange(wo, device=like.device, dtype=like.dtype) * stride[1] - padding[1]
    tap_y = ty.view(kh, 1).expand(kh, kw).reshape(-1)  # tap k = i * kw + j
    tap_x = tx.view(1, kw).expand(kh, kw).reshape(-1)
    ys = tap_y.view(-1, 1, 1) + oy.view(1, ho, 1)  # [k*k, Ho, 1]
    xs = tap_x.view(-1, 1, 1) + ox.view(1, 1, wo)  # [k*k, 1, Wo]
    return ys.expand(-1, ho, wo), xs.expand(-1, ho, wo)


def modulated_deform_conv2d(
    x: Tensor, offset: Tensor, mask: Tensor, weight: Tensor, bias: Tensor | None = None,
    stride=1, padding=0, dilation=1, deformable_groups: int = 1,
) -> Tensor:
    """DCNv2: ``x`` [B, C, H, W], ``offset`` [B, 2*G*k*k, Ho, Wo] as (dy, dx) per tap, ``mask``
    [B, G*k*k, Ho, Wo] already in (0, 1), ``weight`` [O, C, kh, kw]. Returns [B, O, Ho, Wo]."""
    stride, padding, dilation = _pair(stride), _pair(padding), _pair(dilation)
    b, c, h, w = x.shape
    out_ch, _, kh, kw = weight.shape
    g, kk = deformable_groups, kh * kw
    ho, wo = offset.shape[-2:]
    base_y, base_x = _base_grid((ho, wo), (kh, kw), stride, padding, dilation, x)
    off = offset.reshape(b, g, kk, 2, ho, wo)
    ys = base_y + off[:, :, :, 0]  # [B, G, k*k, Ho, Wo]
    xs = base_x + off[:, :, :, 1]
    # Pixel centres sit at integers; align_corners=False maps pixel i to (2i + 1) / size - 1.
    grid = torch.stack([(2 * xs + 1) / w - 1, (2 * ys + 1) / h - 1], dim=-1)
    grid = grid.reshape(b * g, kk * ho, wo, 2)
    sampled = F.grid_sample(
        x.reshape(b * g, c // g, h, w), grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )  # [B*G, C/G, k*k*Ho, Wo]
    sampled = sampled.reshape(b, g, c // g, kk, ho * wo) * mask.reshape(b, g, 1, kk, ho * wo)
    columns = sampled.reshape(b, c * kk, ho * wo)  # channel-major, then tap: matches weight's layout
    out = torch.matmul(weight.reshape(out_ch, c * kk), columns)  # [B, O, Ho*Wo]
    if bias is not None:
        out = out + bias.view(1, -1, 1)
    return out.reshape(b, out_ch, ho, wo)


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
