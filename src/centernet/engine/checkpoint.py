"""Checkpoints that carry their configuration, so eval / predict / export need only the file."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import ExperimentConfig

FORMAT = "centernet-checkpoint-v1"


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside DistributedDataParallel / torch.compile wrappers."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


def save_checkpoint(path: str | Path, cfg: ExperimentConfig, model: nn.Module, **state: Any) -> None:
    """Write {format, config, model, **state} atomically (a crash never leaves half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, "config": cfg.to_dict(), "model": unwrap(model).state_dict(), **state}
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    payload = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        hint = " (an original CenterNet file? use centernet.load_official_checkpoint)" \
            if isinstance(payload, dict) and "state_dict" in payload else ""
        raise ValueError(f"{path} is not a centernet checkpoint{hint}")
    return payload
