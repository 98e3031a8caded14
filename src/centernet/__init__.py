"""CenterNet ("Objects as Points") and CornerNet in pure PyTorch."""
from .models import build_model
from .models.official import load_official_checkpoint, load_pretrained_backbone

__all__ = ["build_model", "load_official_checkpoint", "load_pretrained_backbone"]
