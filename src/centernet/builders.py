"""Config -> objects. The only place (with the CLI) that reads configuration dataclasses."""
from __future__ import annotations

from torch import nn

from .config import DataConfig, ExperimentConfig
from .data.pipeline import TrainDataset
from .data.sample import DetectionSource
from .engine.evaluator import EvalSettings
from .models import build_model
from .tasks import Task, build_task


def task_from_config(cfg: ExperimentConfig) -> Task:
    t = cfg.task
    options = dict(t.options)
    if t.name in ("ctdet", "multi_pose"):
        options.update(radius_variant=t.radius_variant, min_overlap=t.min_overlap)
    return build_task(t.name, t.num_classes, t.weights or None, cfg.data.max_objects, t.max_detections, **options)


def set_classes(cfg: ExperimentConfig, source: DetectionSource) -> None:
    """Take the class count, names and category ids of the task from the training data."""
    cfg.task.num_classes = len(source.class_names)
    cfg.task.class_names = list(source.class_names)
    cfg.task.cat_ids = list(getattr(source, "cat_ids", None) or [])


def model_from_config(cfg: ExperimentConfig, task: Task) -> nn.Module:
    return build_model(cfg.model.arch, task.heads(), cfg.model.head_conv)


def open_source(spec: str, images: str | None = None, keypoints: bool = False) -> DetectionSource:
    from .data import open_dataset

    return open_dataset(spec, image_dir=images, keypoints=keypoints)


def train_dataset(cfg: ExperimentConfig, source: DetectionSource, task: Task) -> TrainDataset:
    d: DataConfig = cfg.data
    return TrainDataset(source, task, d.input_size, d.down_ratio, d.mean, d.std, augment=True,
                        random_crop=d.random_crop, scale_jitter=d.scale_jitter, shift_jitter=d.shift_jitter,
                        flip_prob=d.flip_prob, color=d.color_aug, seed=cfg.train.seed)


def test_pad(cfg: ExperimentConfig) -> int:
    """The keep_res padding: the configured one, else what the architecture's down-sampling needs."""
    from .models import INPUT_MULTIPLE

    return cfg.data.test_pad if cfg.data.test_pad is not None else INPUT_MULTIPLE.get(cfg.model.arch, 32) - 1


def eval_settings(cfg: ExperimentConfig, **overrides) -> EvalSettings:
    d = cfg.data
    settings = EvalSettings(input_size=None if d.test_keep_res else tuple(d.input_size), down_ratio=d.down_ratio,
                            mean=tuple(d.mean), std=tuple(d.std), pad=test_pad(cfg))
    for key, value in overrides.items():
        setattr(settings, key, value)
    return settings
