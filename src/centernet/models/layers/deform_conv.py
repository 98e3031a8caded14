"""Modulated deformable convolution (DCNv2) in plain PyTorch (SPEC 8).

Each of the k x k taps of every output position samples the input at its regular position plus a learned
offset (bilinear, zero outside the image) and is scaled by a learned mask in (0, 1); the k x k weights are
then applied as one matrix product over the sampled columns. The sampling gathers rows of a channels-last copy
of the input, the same way in eager mode (``embedding_bag``, hand-written backward) and in an exported ONNX
graph (Gather): see ``deform_sampling.py``. An exporter may instead trace the whole layer as one operator of
its format (ONNX's DeformConv: ``centernet.export.onnx``) through :func:`traced_as`.
"""
from __future__ import annotations

import contextlib
import math
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.utils import _pair

from .deform_sampling import DeformConv2dFunction, Geometry, gather_columns, padded_rows, sampling_plan


#: (x, offset, mask, weight, bias, stride, padding, dilation, deformable_groups) -> output: what an export
#: traces in place of the gather form while :func:`traced_as` holds it (never read in eager mode)
TracedDeformConv = Callable[..., Tensor]
_traced_function: TracedDeformConv | None = None


@contextlib.contextmanager
def traced_as(function: TracedDeformConv | None) -> Iterator[None]:
    """While exporting inside this block, every DCN traces as ``function(x, offset, mask, weight, bias, stride,
    padding, dilation, deformable_groups)`` (arguments as :func:`modulated_deform_conv2d` normalises them: pairs
    of ints, ``bias`` None or [O]) instead of the gather form; None keeps the gather form."""
    global _traced_function
    previous, _traced_function = _traced_function, function
    try:
        yield
    finally:
        _traced_function = previous


def modulated_deform_conv2d(
    x: Tensor, offset: Tensor, mask: Tensor, weight: Tensor, bias: Tensor | None = None,
    stride=1, padding=0, dilation=1, deformable_groups: int = 1,
) -> Tensor:
    """DCNv2: ``x`` [B, C, H, W], ``offset`` [B, 2*G*k*k, Ho, Wo] as (dy, dx) per tap, ``mask``
    [B, G*k*k, Ho, Wo] already in (0, 1), ``weight`` [O, C, kh, kw]. Returns [B, O, Ho, Wo]."""
    stride, padding, dilation = _pair(stride), _pair(padding), _pair(dilation)
    if _traced_function is not None and torch.onnx.is_in_onnx_export():
        return _traced_function(x, offset, mask, weight, bias, stride, padding, dilation, deformable_groups)
    b, c, h, w = x.shape
    out_ch, _, kh, kw = weight.shape
    g, kk = deformable_groups, kh * kw
    ho, wo = offset.shape[-2:]
    geometry = Geometry((kh, kw), stride, padding, dilation, g)
    # weight [O, C, kh, kw] -> [O, G, k*k, C/G]: the columns' (group, tap, channel) order
    wmat = weight.reshape(out_ch, g, c // g, kk).permute(0, 1, 3, 2).reshape(out_ch, -1)
    if not (torch.onnx.is_in_onnx_export() or torch.jit.is_tracing()):
        kind = x.device.type
        low = _autocast_dtype(kind)
        if low is None:
            return DeformConv2dFunction.apply(x, offset, mask, wmat, bias, geometry)  # channels-last memory
        # autocast (AMP training on CUDA, --precision): sample and multiply in its dtype, but place the samples
        # in fp32 (a bf16 position is off by up to half a pixel at x = 128)
        with torch.autocast(kind, enabled=False):
            return DeformConv2dFunction.apply(x.to(low), offset.float(), mask.float(), wmat.to(low),
                                              None if bias is None else bias.to(low), geometry)
    plan = sampling_plan(offset, mask, (h, w), *geometry)
    columns = gather_columns(padded_rows(x, g), plan).reshape(b * ho * wo, -1)  # [B*Ho*Wo, G*k*k*C/G]
    out = columns @ wmat.t() if bias is None else columns @ wmat.t() + bias
    return out.view(b, ho, wo, out_ch).permute(0, 3, 1, 2)


def _autocast_dtype(kind: str) -> torch.dtype | None:
    """The dtype autocast computes in on this device type, None when autocast is off."""
    return torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else None


def modulated_deform_conv2d_reference(
    x: Tensor, offset: Tensor, mask: Tensor, weight: Tensor, bias: Tensor | None = None,
    stride=1, padding=0, dilation=1, deformable_groups: int = 1,
) -> Tensor:
    """The same DCNv2 through ``grid_sample`` (autograd, slow): the oracle of tests and benchmarks."""
    stride, padding, dilation = _pair(stride), _pair(padding), _pair(dilation)
    b, c, h, w = x.shape
    out_ch, _, kh, kw = weight.shape
    g, kk = deformable_groups, kh * kw
    ho, wo = offset.shape[-2:]
    ty = torch.arange(kh, dtype=x.dtype, device=x.device).repeat_interleave(kw) * dilation[0]
    tx = torch.arange(kw, dtype=x.dtype, device=x.device).repeat(kh) * dilation[1]
    oy = (torch.arange(ho, dtype=x.dtype, device=x.device) * stride[0] - padding[0]).view(ho, 1, 1)
    ox = (torch.arange(wo, dtype=x.dtype, device=x.device) * stride[1] - padding[1]).view(1, wo, 1)
    off = offset.reshape(b * g, kk, 2, ho, wo)
    ys = oy + ty + off[:, :, 0].permute(0, 2, 3, 1)  # [B*G, Ho, Wo, k*k] input pixels
    xs = ox + tx + off[:, :, 1].permute(0, 2, 3, 1)
    # pixel centres at integers; align_corners=False maps pixel i to (2i + 1) / size - 1
    grid = torch.stack([(2 * xs + 1) / w - 1, (2 * ys + 1) / h - 1], -1).reshape(b * g, ho, wo * kk, 2)
    sampled = F.grid_sample(x.reshape(b * g, c // g, h, w), grid, align_corners=False)  # [B*G, C/G, Ho, Wo*kk]
    sampled = sampled.view(b * g, c // g, ho, wo, kk) * mask.reshape(b * g, 1, kk, ho, wo).permute(0, 1, 3, 4, 2)
    columns = sampled.view(b, g, c // g, ho, wo, kk).permute(0, 3, 4, 1, 5, 2).reshape(b, ho * wo, -1)
    wmat = weight.reshape(out_ch, g, c // g, kk).permute(0, 1, 3, 2).reshape(out_ch, -1)
    out = columns @ wmat.t() + (0 if bias is None else bias)  # [B, Ho*Wo, O]
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

    def forward(self, x: Tensor) -> Tensor:  # [B, C, H, W] -> [B, O, Ho, Wo], channels-last memory
        x = x.contiguous(memory_format=torch.channels_last)  # the offset conv and the sampling table read NHWC
        out = self.conv_offset_mask(x)
        n_off = 2 * self.deformable_groups * self.kernel_size[0] * self.kernel_size[1]
        offset, mask = out[:, :n_off], torch.sigmoid(out[:, n_off:])
        return modulated_deform_conv2d(
            x, offset, mask, self.weight, self.bias, self.stride, self.padding, self.dilation,
            self.deformable_groups,
        )
