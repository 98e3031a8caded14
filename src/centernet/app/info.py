"""``centernet info MODEL``: what a checkpoint, an exported ``.onnx`` model, a model-zoo name or a preset is,
without running it: architecture, parameters, GFLOPs at its input size, heads, classes, and its training in
brief. Nothing is downloaded; a zoo entry's network is built without its weights."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..config import ExperimentConfig
from ..data.io import printable
from ..engine.console import LABEL_WIDTH, count_flops, count_parameters
from ..engine.recipe import OPTIMIZERS
from .builders import model_from_config, task_from_config

SHOWN_CLASSES = 10  # class names listed (the rest are counted)


def describe(spec: str | os.PathLike[str], input_size: tuple[int, int] | None = None,
             flops: bool = True) -> list[tuple[str, str]]:
    """(label, text) lines describing ``spec``; ``input_size`` (w, h) replaces the model's own for GFLOPs."""
    from ..presets import PRESETS
    from ..weights.pretrained import is_detector_name

    text = os.fspath(spec)
    path = Path(text).expanduser()
    if path.suffix.lower() == ".onnx" and path.is_file():
        cfg, lines = _onnx(path)
    elif path.is_file():
        cfg, lines = _checkpoint(path)
    elif is_detector_name(text):
        cfg, lines = _zoo(text)
    elif text in PRESETS.names():
        cfg, lines = PRESETS.get(text)(), [("model", f"preset {text} (a configuration to train; no weights)")]
    else:
        raise FileNotFoundError(f"{text}: no such file, and not a model-zoo name or preset (see centernet presets)")
    trained = [] if lines[0][1].startswith("model-zoo") else _training(cfg)  # the zoo's: the original authors'
    return lines + _network(cfg, input_size, flops) + trained


def format_info(lines: list[tuple[str, str]]) -> str:
    """The lines as ``label  text``, every string escaped for the terminal (they come from the user's file)."""
    return "\n".join(f"{label:<{LABEL_WIDTH}} {printable(text)}" for label, text in lines)


def _checkpoint(path: Path) -> tuple[ExperimentConfig, list[tuple[str, str]]]:
    from ..engine.checkpoint import checkpoint_config
    from ..weights.read import read_checkpoint

    payload = read_checkpoint(path)
    cfg = checkpoint_config(payload, path)
    epoch = payload.get("epoch")
    what = f"checkpoint {path}"
    if epoch is not None:
        what += f", epoch {epoch} of {cfg.train.epochs}"
        what += "" if "optimizer" in payload else " (weights only)"
    lines = [("model", what)]
    best, best_epoch = payload.get("best"), payload.get("best_epoch")
    if isinstance(best, (int, float)) and best > float("-inf"):
        lines.append(("best", f"{best:.4f} ({payload.get('headline', 'AP')}) at epoch {best_epoch}"))
    return cfg, lines


def _onnx(path: Path) -> tuple[ExperimentConfig, list[tuple[str, str]]]:
    from ..engine.errors import require
    from ..export.onnx import META_CONFIG, META_DCN_OP, META_OUTPUTS, opset_of

    onnx = require("onnx", "onnx", "reading an .onnx model")
    model = onnx.load(str(path), load_external_data=False)
    meta = {p.key: p.value for p in model.metadata_props}
    if META_CONFIG not in meta:
        raise ValueError(f"{path}: an .onnx model without a centernet configuration (not exported by centernet)")
    cfg = ExperimentConfig.from_dict(json.loads(meta[META_CONFIG]))
    opset = opset_of(model)
    dims = [d.dim_value or d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim]
    text = (f"ONNX model {path}, opset {opset}, input {dims}, outputs {meta.get(META_OUTPUTS, 'maps')}"
            + (f", DCN as {meta[META_DCN_OP]}" if META_DCN_OP in meta else ""))
    return cfg, [("model", text)]


def _zoo(name: str) -> tuple[ExperimentConfig, list[tuple[str, str]]]:
    from ..weights.catalogue import weights_info
    from ..weights.pretrained import official_config

    info = weights_info(name)
    size = f", {info.size / 1e6:.1f} MB" if info.size else ""
    lines = [("model", f"model-zoo entry {name} (the original's {info.file}{size}; weights not loaded here)")]
    if info.note:
        lines.append(("note", info.note))
    return official_config(name), lines


def _network(cfg: ExperimentConfig, input_size: tuple[int, int] | None, flops: bool) -> list[tuple[str, str]]:
    task = task_from_config(cfg)
    model = model_from_config(cfg, task).eval()
    w, h = input_size or tuple(cfg.data.input_size)
    params = count_parameters(model)
    text = f"{cfg.model.arch}: {params / 1e6:.2f}M parameters"
    if flops:
        text += f", {count_flops(model, (h, w)) / 1e9:.3g} GFLOPs at {w}x{h}"
    heads = ", ".join(f"{name} {channels}" for name, channels in task.head_channels().items())
    names = list(cfg.task.class_names) or [str(i) for i in range(cfg.task.num_classes)]
    shown = ", ".join(names[:SHOWN_CLASSES]) + (f" and {len(names) - SHOWN_CLASSES} more" if len(names) > SHOWN_CLASSES
                                                 else "")
    return [("network", text), ("task", f"{cfg.task.name}; heads {heads}"),
            ("classes", f"{cfg.task.num_classes}: {shown}")]


def _training(cfg: ExperimentConfig) -> list[tuple[str, str]]:
    t, d = cfg.train, cfg.data
    steps = ", ".join(str(s) for s in t.lr_steps) or "none"
    schedule = (f"cosine to x{t.lr_factor:g}" if t.schedule == "cosine" else f"x{t.lr_factor:g} at epochs {steps}")
    schedule += f", {t.warmup_epochs:g} warm-up epochs" if t.warmup_epochs else ""
    schedule += f", EMA {t.ema:g}" if t.ema else ""
    optimizer = OPTIMIZERS[t.optimizer].__name__ if t.optimizer in OPTIMIZERS else printable(t.optimizer)
    optimizer += f" (weight decay {t.weight_decay:g})" if t.weight_decay else ""
    text = (f"{t.epochs} epochs, batch {t.batch_size}, {optimizer}, lr {t.lr:g} ({schedule}), "
            f"input {d.input_size[0]}x{d.input_size[1]}, pretrained {cfg.model.pretrained or 'none'}")
    mixing = [f"mosaic {d.mosaic:g}" if d.mosaic else "", f"mixup {d.mixup:g}" if d.mixup else "",
              f"multi-scale x{d.multiscale[0]:g}-{d.multiscale[1]:g}" if d.multiscale else ""]
    text += "".join(f", {m}" for m in mixing if m)
    lines = [("train", text)]
    if d.train:
        lines.append(("data", f"train {d.train}" + (f", val {d.val}" if d.val else "")))
    return lines
