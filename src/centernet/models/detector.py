"""The detector: backbone -> neck (stride-4 map per stack) -> branches -> heads (dict of maps per stack)."""
from __future__ import annotations

from torch import Tensor, nn

from .heads import Heads, HeadsArg, as_specs, make_branches


class Detector(nn.Module):
    """Composes a backbone, a neck and, per stack, the heads' shared branches and one :class:`Heads`.

    ``forward`` returns a list with one {head name: [B, n, H/4, W/4]} dict per stack; in eval mode only the
    last stack's heads are computed (intermediate supervision is a training-time matter). Parameters are
    named ``backbone.*``, ``neck.*``, ``branches.<stack>.<branch>.*`` and ``heads.<stack>.<head>.*``.
    """

    def __init__(self, backbone: nn.Module, neck: nn.Module, heads: HeadsArg, head_conv: int,
                 num_stacks: int = 1) -> None:
        super().__init__()
        specs = as_specs(heads)
        self.backbone = backbone
        self.neck = neck
        self.head_specs = specs
        self.branches = nn.ModuleList(make_branches(neck.out_channels, specs) for _ in range(num_stacks))
        self.heads = nn.ModuleList(Heads(neck.out_channels, specs, head_conv) for _ in range(num_stacks))
        self.down_ratio: int = neck.out_stride

    def _stack(self, i: int, feature: Tensor) -> dict[str, Tensor]:  # feature: [B, C, H/4, W/4]
        branched = {name: branch(feature) for name, branch in self.branches[i].items()}
        return self.heads[i](feature, branched)

    def forward(self, x: Tensor) -> list[dict[str, Tensor]]:  # x: [B, 3, H, W]
        features = self.neck(self.backbone(x))  # list of [B, C, H/4, W/4], one per stack
        if not self.training:
            return [self._stack(len(self.heads) - 1, features[-1])]
        return [self._stack(i, f) for i, f in enumerate(features)]


def __getattr__(name: str):
    if name == "CenterNet":  # the old name, one release: ``centernet.CenterNet`` is the facade
        import warnings

        warnings.warn("centernet.models.detector.CenterNet is now Detector", DeprecationWarning, stacklevel=2)
        return Detector
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
