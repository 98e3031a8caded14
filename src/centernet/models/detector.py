"""The detector: backbone -> neck (stride-4 map per stack) -> heads (dict of maps per stack)."""
from __future__ import annotations

from torch import Tensor, nn

from .heads import Heads


class CenterNet(nn.Module):
    """Composes a backbone, a neck and one :class:`Heads` per stack.

    ``forward`` returns a list with one {head name: [B, n, H/4, W/4]} dict per stack; in eval mode only the
    last stack's heads are computed (intermediate supervision is a training-time matter).
    """

    def __init__(self, backbone: nn.Module, neck: nn.Module, heads: dict[str, int], head_conv: int,
                 num_stacks: int = 1) -> None:
        super().__init__()
        self.backbone = backbone
        self.neck = neck
        self.head_spec = dict(heads)
        self.heads = nn.ModuleList(Heads(neck.out_channels, heads, head_conv) for _ in range(num_stacks))
        self.down_ratio: int = neck.out_stride

    def forward(self, x: Tensor) -> list[dict[str, Tensor]]:  # x: [B, 3, H, W]
        features = self.neck(self.backbone(x))  # list of [B, C, H/4, W/4], one per stack
        if not self.training:
            return [self.heads[-1](features[-1])]
        return [heads(f) for heads, f in zip(self.heads, features)]
