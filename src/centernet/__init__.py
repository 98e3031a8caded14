"""CenterNet ("Objects as Points") in pure PyTorch: detectors, tasks, training, evaluation, export.

Names are imported on first use, so ``centernet --help`` never loads torch.
"""
from __future__ import annotations

from typing import Any

__all__ = ["CenterNet", "Result", "build_model", "load_official_checkpoint", "load_pretrained_backbone"]


def build_model(arch: str, heads, head_conv: int | None = None):
    """Build architecture ``arch`` with ``heads``: plain {name: channels} take each head's initial prior and
    branch from the task that declares it (``hm`` starts at the heatmap prior, ...); HeadSpecs pass through.
    The model's forward returns a list with one {head: [B, n, H/4, W/4]} dict per stack."""
    from collections.abc import Mapping

    from .models import build_model as build
    from .tasks import resolve_heads

    if isinstance(heads, Mapping) and all(isinstance(v, int) for v in heads.values()):
        heads = resolve_heads(heads)
    return build(arch, heads, head_conv)


def __getattr__(name: str) -> Any:
    if name in ("CenterNet", "Result"):
        from . import api

        return getattr(api, name)
    if name == "load_official_checkpoint":  # also takes model-zoo names ("ctdet_coco_dla_2x")
        from .pretrained import load_official_checkpoint

        return load_official_checkpoint
    if name == "load_pretrained_backbone":
        from .models import official

        return official.load_pretrained_backbone
    raise AttributeError(f"module 'centernet' has no attribute {name!r}")
