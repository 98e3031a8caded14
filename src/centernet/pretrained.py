"""Weights by name into models: the original model zoo (``"ctdet_coco_dla_2x"``), ImageNet backbones
(``--pretrained imagenet``) and the initial weights of a fine-tune (``--weights``).

Names resolve through :mod:`centernet.hub` (the torch hub cache, downloading when absent); every failure
is one line saying where to put the file. Models are built from the registry entry
(:mod:`centernet.weights`: architecture, task, heads, classes, input size), so a name is all it takes.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .builders import model_from_config, task_from_config
from .config import ExperimentConfig
from .engine.checkpoint import FORMAT as CHECKPOINT_FORMAT
from .hub import PRETRAINED_HINT, resolve_pretrained, resolve_weights
from .models.official import LoadReport, load_pretrained_backbone
from .models.official import load_official_checkpoint as load_official_state
from .models.weights_file import load_weights_file
from .tasks import TASKS
from .weights import CATEGORY_IDS, is_known, known_weights, weights_info

ZOO_HINT = "pass a local file instead"


def _is_name(source: Any) -> bool:
    return isinstance(source, str) and is_known(source) and not Path(source).expanduser().is_file()


def load_official_checkpoint(model: nn.Module, source: str | os.PathLike[str] | Mapping[str, Any],
                             strict: bool = True, cache: str | os.PathLike[str] | None = None,
                             progress: bool = True) -> LoadReport:
    """Load an original CenterNet checkpoint into ``model``: a state dict, a file, or a model-zoo name
    (e.g. ``"ctdet_coco_dla_2x"``, see :func:`centernet.weights.known_weights`), found in the torch hub
    cache or downloaded there (a missing file's error says where to put it)."""
    if _is_name(source):
        source = resolve_weights(source, cache=cache, progress=progress, hint=ZOO_HINT)
    return load_official_state(model, source, strict=strict)


def official_config(name: str) -> ExperimentConfig:
    """The configuration of model-zoo entry ``name``: architecture, task, classes (names and dataset
    category ids), input size and normalisation of the original."""
    info = weights_info(name)
    if info.kind != "detector":
        raise ValueError(f"{name} holds a backbone's ImageNet weights, not a detector: use it with --pretrained")
    if info.task not in TASKS.names():
        raise ValueError(f"{name} is a {info.task!r} model; this version has no such task "
                         f"(tasks: {', '.join(TASKS.names())})")
    cfg = ExperimentConfig()
    cfg.model.arch, cfg.model.weights = info.arch, name
    if info.input_size is not None:
        height, width = info.input_size
        cfg.data.input_size = (width, height)
    cfg.data.mean, cfg.data.std = tuple(info.mean), tuple(info.std)
    cfg.task.name, cfg.task.num_classes = info.task, info.num_classes
    cfg.task.class_names = list(info.class_names)
    cfg.task.cat_ids = list(CATEGORY_IDS.get(info.classes or "", ()))
    return cfg


def official_model(name: str, device: str | torch.device = "cpu", path: str | os.PathLike[str] | None = None,
                   cache: str | os.PathLike[str] | None = None, progress: bool = True):
    """(config, model in eval mode, task) of model-zoo entry ``name``, its weights from ``path`` or the
    cache (downloaded when absent)."""
    cfg = official_config(name)
    task = task_from_config(cfg)
    expected = weights_info(name).heads
    if dict(task.head_channels()) != dict(expected):
        raise ValueError(f"{name}: its heads {expected} differ from the {cfg.task.name} task's "
                         f"{task.head_channels()}")
    model = model_from_config(cfg, task)
    file = Path(path) if path is not None else resolve_weights(name, cache=cache, progress=progress, hint=ZOO_HINT)
    load_official_state(model, file)
    return cfg, model.to(device).eval(), task


def detector_names() -> list[str]:
    """The model-zoo names (``centernet predict NAME ...``)."""
    return known_weights("detector")


def is_detector_name(text: str) -> bool:
    return is_known(text) and weights_info(text).kind == "detector"


def resolve_backbone(cfg: ExperimentConfig, progress: bool = True) -> Path | None:
    """The file of ``model.pretrained`` (``imagenet``: the architecture's ImageNet weights, downloaded
    into the cache when absent; ``none``: None); errors are one line offering ``--pretrained none``."""
    return resolve_pretrained(cfg.model.pretrained, cfg.model.arch, progress=progress)


def load_backbone(model: nn.Module, path: Path) -> str:
    """Load ImageNet weights from ``path`` into the model's backbone; returns a one-line report."""
    report = load_pretrained_backbone(model, path)
    return f"pretrained backbone {path.name}: {report}"


def resolve_initial_weights(source: str, progress: bool = True) -> Path:
    """The file of ``model.weights``: a path, or a known name found in / downloaded to the cache."""
    return resolve_weights(source, progress=progress, hint="train without them (drop --weights)")


def load_initial_weights(model: nn.Module, path: Path) -> str:
    """Load a whole model's weights from ``path`` (a centernet checkpoint, or an original CenterNet file):
    every tensor whose name and shape fit; the rest (e.g. a heatmap head for another class count) stay
    fresh. Returns a one-line report; a file of which nothing fits is a ``ValueError``."""
    payload = load_weights_file(path)
    if isinstance(payload, Mapping) and payload.get("format") == CHECKPOINT_FORMAT:
        report = load_fitting(model, payload["model"])
    else:
        report = load_official_state(model, path, strict=False)
    if not report.loaded:
        raise ValueError(f"{path}: no tensor fits the {getattr(model, 'arch', 'model')!r} model "
                         f"({report.describe(3)})")
    return f"initial weights {path.name}: {report}"


def load_fitting(model: nn.Module, state: Mapping[str, torch.Tensor]) -> LoadReport:
    """Load the tensors of ``state`` (our names) whose names and shapes fit ``model``."""
    ours = model.state_dict()
    report = LoadReport()
    fitting = {}
    for key, value in state.items():
        if key not in ours:
            report.unexpected.append((key, tuple(value.shape)))
        elif value.shape != ours[key].shape:
            report.mismatched.append((key, tuple(value.shape), tuple(ours[key].shape)))
        else:
            fitting[key] = value
    report.missing = [(k, tuple(v.shape)) for k, v in ours.items() if k not in state]
    model.load_state_dict(fitting, strict=False)
    report.loaded = sorted(fitting)
    return report


__all__ = ["PRETRAINED_HINT", "detector_names", "is_detector_name", "load_backbone", "load_fitting",
           "load_initial_weights", "load_official_checkpoint", "official_config", "official_model",
           "resolve_backbone", "resolve_initial_weights"]
