"""The registered architectures. Each builder wires a backbone and a neck to the heads."""
from __future__ import annotations

from . import register_arch, register_arch_alias
from .backbones.dla import DLA
from .backbones.hourglass import Hourglass, IdentityNeck
from .backbones.resnet import ResNet
from .detector import Detector
from .heads import HeadsArg
from .necks.deconv import DeconvNeck
from .necks.dla_up import DLAUpNeck


def _resnet(depth: int, dcn: bool):
    def build(heads: HeadsArg, head_conv: int) -> Detector:
        backbone = ResNet(depth)
        channels = (256, 128, 64) if dcn else (256, 256, 256)
        return Detector(backbone, DeconvNeck(backbone.channels[-1], channels, dcn=dcn), heads, head_conv)

    return build


for _depth in (18, 34, 50, 101, 152):
    register_arch(f"res_{_depth}", head_conv=64)(_resnet(_depth, dcn=False))
    register_arch(f"resdcn_{_depth}", head_conv=64)(_resnet(_depth, dcn=True))


@register_arch("dla_34", head_conv=256)
def _dla_34(heads: HeadsArg, head_conv: int) -> Detector:
    backbone = DLA(34)
    return Detector(backbone, DLAUpNeck(backbone.channels, backbone.strides, out_stride=4), heads, head_conv)


def _stacked(backbone: Hourglass, heads: HeadsArg, head_conv: int) -> Detector:
    return Detector(backbone, IdentityNeck(backbone.channels[-1]), heads, head_conv, num_stacks=backbone.num_stacks)


@register_arch("hourglass", head_conv=256, input_multiple=128)
def _hourglass(heads: HeadsArg, head_conv: int) -> Detector:
    return _stacked(Hourglass(num_stacks=2), heads, head_conv)


# CornerNet's network is Hourglass-104 with 2 stacks, its heads reading the corner branches the cornernet task
# declares (201.04M parameters with 80 classes): "cornernet" is the name its preset and checkpoints use.
register_arch_alias("cornernet", "hourglass")


# The small hourglass: Hourglass-104's structure (2 stacks, stem, nested levels, per-stack merges) at depth 3
# instead of 5 and about a tenth of the width; head_conv equals the first width, as the original's curr_dim.
TINY_DEPTH, TINY_DIMS, TINY_MODULES, TINY_STEM = 3, [24, 32, 48, 64], [1, 1, 1, 2], 16


@register_arch("hourglass_tiny", head_conv=TINY_DIMS[0], input_multiple=4 * 2**TINY_DEPTH)
def _hourglass_tiny(heads: HeadsArg, head_conv: int) -> Detector:
    """A reduced Hourglass for CPU runs and tests (any task; CornerNet's cornernet_cpu_small preset)."""
    backbone = Hourglass(2, TINY_DEPTH, TINY_DIMS, TINY_MODULES, cnv_dim=TINY_DIMS[0], stem_channels=TINY_STEM)
    return _stacked(backbone, heads, head_conv)


@register_arch("resdcn_18_half", head_conv=64)
def _resdcn_18_half(heads: HeadsArg, head_conv: int) -> Detector:
    """ResNet-18 at half width with a DCN neck (128, 64, 64): 3.8M parameters, for CPU demos and tests."""
    backbone = ResNet(18, base_width=32)
    return Detector(backbone, DeconvNeck(backbone.channels[-1], (128, 64, 64), dcn=True), heads, head_conv)


DLA_TINY_CHANNELS = [8, 8, 16, 32, 64, 128]  # DLA-34's levels at a quarter of its width


@register_arch("dla_tiny", head_conv=32)
def _dla_tiny(heads: HeadsArg, head_conv: int, dcn: bool = True) -> Detector:
    """DLA-34's structure at a quarter of its width (1.3M parameters): learns fast from scratch on a CPU,
    because its IDA up-sampling keeps the fine levels that a ResNet's deconv neck must rebuild."""
    backbone = DLA(34, channels=DLA_TINY_CHANNELS)
    return Detector(backbone, DLAUpNeck(backbone.channels, backbone.strides, out_stride=4, dcn=dcn), heads,
                     head_conv)


@register_arch("dla_tiny_conv", head_conv=32)
def _dla_tiny_conv(heads: HeadsArg, head_conv: int) -> Detector:
    """dla_tiny with plain 3x3 convs in place of the neck's DCNs (the demo's model)."""
    return _dla_tiny(heads, head_conv, dcn=False)


@register_arch("resdcn_18_tiny", head_conv=16)
def _resdcn_18_tiny(heads: HeadsArg, head_conv: int) -> Detector:
    """ResNet-18 at 1/8 width with a DCN neck (32, 16, 16): 0.2M parameters, for fast tests and smoke runs."""
    backbone = ResNet(18, base_width=8)
    return Detector(backbone, DeconvNeck(backbone.channels[-1], (32, 16, 16), dcn=True), heads, head_conv)
