"""The registered architectures. Each builder wires a backbone and a neck to the heads."""
from __future__ import annotations

from . import register_arch
from .backbones.resnet import ResNet
from .detector import CenterNet
from .necks.deconv import DeconvNeck


def _resnet(depth: int, dcn: bool):
    def build(heads: dict[str, int], head_conv: int) -> CenterNet:
        backbone = ResNet(depth)
        channels = (256, 128, 64) if dcn else (256, 256, 256)
        return CenterNet(backbone, DeconvNeck(backbone.channels[-1], channels, dcn=dcn), heads, head_conv)

    return build


for _depth in (18, 34, 50, 101, 152):
    register_arch(f"res_{_depth}", head_conv=64)(_resnet(_depth, dcn=False))
    register_arch(f"resdcn_{_depth}", head_conv=64)(_resnet(_depth, dcn=True))
