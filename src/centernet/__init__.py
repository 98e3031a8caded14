"""CenterNet ("Objects as Points") and CornerNet in pure PyTorch."""
from .models import build_model

__all__ = ["build_model"]
