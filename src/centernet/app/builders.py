"""Config -> objects: the task, the model, data sources, checkpoints, model-zoo entries and predictors.

The engine receives these objects (and the few config sections it needs); nothing here names a task."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import ExperimentConfig
from ..data.sample import DetectionSource
from ..engine.checkpoint import checkpoint_config, load_model_state
from ..engine.evaluator import EvalSettings
from ..engine.predictor import Predictor
from ..models import build_model
from ..tasks import TASKS, Task, build_task, task_options
from ..weights.official import load_official_checkpoint
from ..weights.pretrained import official_config
from ..weights.read import read_checkpoint


def task_from_config(cfg: ExperimentConfig) -> Task:
    """The configured task; ``radius_variant`` / ``min_overlap`` go to tasks that take them."""
    t = cfg.task
    options = dict(t.options)
    known = task_options(t.name)
    for name in ("radius_variant", "min_overlap"):
        if name in known:
            options.setdefault(name, getattr(t, name))
    return build_task(t.name, t.num_classes, t.weights or None, cfg.data.max_objects, t.max_detections, **options)


def set_classes(cfg: ExperimentConfig, source: DetectionSource) -> None:
    """Take the class count, names and category ids of the task from the training data."""
    cfg.task.num_classes = len(source.class_names)
    cfg.task.class_names = list(source.class_names)
    cfg.task.cat_ids = list(getattr(source, "cat_ids", None) or [])


def model_from_config(cfg: ExperimentConfig, task: Task) -> nn.Module:
    return build_model(cfg.model.arch, task.heads(), cfg.model.head_conv)


def open_source(spec: str, images: str | None = None, task: str | None = None,
                split: str | None = None) -> DetectionSource:
    """A data set in any supported format (its named ``split``, when given), opened with what ``task``
    needs from it (e.g. keypoints)."""
    from ..data import open_dataset

    options = dict(TASKS.get(task).data_options) if task else {}
    return open_dataset(spec, image_dir=images, split=split, **options)


def eval_settings(cfg: ExperimentConfig, **overrides: Any) -> EvalSettings:
    """The configuration's test geometry (see :meth:`EvalSettings.from_config`)."""
    return EvalSettings.from_config(cfg, **overrides)


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu"):
    """(config, model in eval mode, task) rebuilt from a checkpoint written by the trainer."""
    payload = read_checkpoint(path)
    cfg = checkpoint_config(payload, path)
    task = task_from_config(cfg)
    model = model_from_config(cfg, task)
    load_model_state(model, payload["model"], path)
    return cfg, model.to(device).eval(), task


def official_model(name: str, device: str | torch.device = "cpu", path: str | os.PathLike[str] | None = None,
                   cache: str | os.PathLike[str] | None = None, progress: bool = True):
    """(config, model in eval mode, task) of model-zoo entry ``name`` (its heads are its task's), its
    weights from ``path`` or the torch hub cache (downloaded when absent)."""
    cfg = official_config(name)
    task = task_from_config(cfg)
    model = model_from_config(cfg, task)
    load_official_checkpoint(model, Path(path) if path is not None else name, cache=cache, progress=progress)
    return cfg, model.to(device).eval(), task


def class_names(cfg: ExperimentConfig) -> list[str]:
    return cfg.task.class_names or [str(i) for i in range(cfg.task.num_classes)]


def load_predictor(path: str | Path, device: str = "cpu", **overrides: Any) -> Predictor:
    """A predictor from a checkpoint alone (it carries its configuration); ``overrides`` go to EvalSettings."""
    cfg, model, task = load_checkpoint(path, device)
    return Predictor(model, task, eval_settings(cfg, **overrides), class_names(cfg), cfg.task.cat_ids or None,
                     device)


def predictor_for_runner(runner: Any, cfg: ExperimentConfig, **overrides: Any) -> Predictor:
    """A predictor around any runner (e.g. an onnxruntime session) whose configuration is ``cfg``."""
    task = task_from_config(cfg)
    return Predictor(None, task, eval_settings(cfg, **overrides), class_names(cfg), cfg.task.cat_ids or None,
                     "cpu", runner)
