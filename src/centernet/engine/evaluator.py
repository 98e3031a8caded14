"""The one evaluator: run a model, any runner (e.g. an ONNX model) or the ground truth ("oracle") over a
data source, and score it with the task's scorer."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Union

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from ..config import COCO_MEAN, COCO_STD, ExperimentConfig
from ..data.pipeline import TestDataset, TrainDataset, collate
from ..data.sample import DetectionSource, category_ids
from ..evaluation.scoring import Scorer
from ..tasks.base import Task
from .inference import Runner, as_runner, predict_passes


@dataclass
class EvalSettings:
    """Test-time geometry and options (see DataConfig for their meaning)."""

    input_size: tuple[int, int] | None = (512, 512)  # None: keep_res (pad to (n | pad) + 1)
    down_ratio: int = 4
    mean: tuple[float, float, float] = COCO_MEAN
    std: tuple[float, float, float] = COCO_STD
    pad: int = 31
    pad_style: str | None = None  # keep_res layout (data.transforms.PAD_STYLES); None: the task's test_pad_style
    flip: bool = False
    batch_size: int = 1
    num_workers: int = 0
    oracle: frozenset[str] = field(default_factory=frozenset)  # head names replaced by the ground truth
    scales: tuple[float, ...] = (1.0,)  # test scales; several are merged by the task (soft-NMS, SPEC 4)
    train_geometry: bool = False  # the oracle path's geometry (TrainDataset, no augmentation) without an oracle
    precision: str = "fp32"  # fp32, bf16, fp16: granted only where it pays (engine/precision.py)

    @classmethod
    def from_config(cls, cfg: ExperimentConfig, **overrides: Any) -> "EvalSettings":
        """The test geometry and flip of a configuration (keep_res padding follows the architecture), then
        overrides."""
        from ..models import INPUT_MULTIPLE

        d = cfg.data
        pad = d.test_pad if d.test_pad is not None else INPUT_MULTIPLE.get(cfg.model.arch, 32) - 1
        settings = cls(input_size=None if d.test_keep_res else tuple(d.input_size), down_ratio=d.down_ratio,
                       mean=tuple(d.mean), std=tuple(d.std), pad=pad, flip=d.test_flip)
        for key, value in overrides.items():
            if not hasattr(settings, key):
                raise AttributeError(f"EvalSettings has no field {key!r}")
            setattr(settings, key, value)
        settings.scales = check_scales(settings.scales)
        return settings


def pad_style(settings: EvalSettings, task: Task) -> str:
    """The keep_res layout of a test: the settings' own, else the task's (CornerNet's differs)."""
    return settings.pad_style or task.test_pad_style


def parse_scales(text: str | None) -> tuple[float, ...]:
    """'0.5,0.75,1,1.25,1.5' -> (0.5, 0.75, 1.0, 1.25, 1.5); None or '' -> (1.0,)."""
    if not text:
        return (1.0,)
    try:
        scales = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ValueError(f"scales must be comma-separated numbers, got {text!r}") from None
    return check_scales(scales, text)


#: the largest test scale (the original tests up to 1.5; 4x already makes a 512 input 2048 pixels wide)
MAX_TEST_SCALE = 4.0


def check_scales(scales: Any, given: Any = None) -> tuple[float, ...]:
    """``scales`` as a tuple of floats in (0, :data:`MAX_TEST_SCALE`]; a ValueError naming ``given`` else."""
    shown = repr(given if given is not None else scales)
    try:
        scales = tuple(float(s) for s in scales)
    except (TypeError, ValueError):
        raise ValueError(f"scales must be numbers, got {shown}") from None
    if not scales or not all(0 < s <= MAX_TEST_SCALE for s in scales):  # also refuses nan
        raise ValueError(f"scales must be numbers in (0, {MAX_TEST_SCALE:g}], got {shown}")
    return scales


class MultiScaleDataset(Dataset):
    """One item per image: the list of its test items at every scale."""

    def __init__(self, datasets: list[Dataset]) -> None:
        self.datasets = datasets

    def __len__(self) -> int:
        return len(self.datasets[0])

    def __getitem__(self, index: int) -> list[dict]:
        return [d[index] for d in self.datasets]


def collate_scales(items: list[list[dict]]) -> list[dict[str, torch.Tensor]]:
    """Per-image lists of per-scale items -> one batch per scale."""
    return [collate([item[s] for item in items]) for s in range(len(items[0]))]


#: the columns of a detection row every task has: x1, y1, x2, y2, score, class (image pixels)
BOX_COLUMNS = 6


@dataclass
class EvalResult:
    metrics: dict[str, float]
    results: list[dict[str, Any]]  # the task's result format (COCO for box and keypoint tasks)
    headline: str = "AP"  # the scorer's headline metric
    scorer: Scorer | None = None  # holds the results: its report() and write(folder) hooks
    per_class: Any = None  # per-class PR curves when the scorer computed them (Scorer.per_class)
    boxes: dict[int, np.ndarray] = field(default_factory=dict)  # image id -> [M, 6] rows' box columns


Model = Union[nn.Module, Runner, None]


def _loader(source: DetectionSource, task: Task, settings: EvalSettings, oracle: bool) -> DataLoader:
    scales = tuple(settings.scales) or (1.0,)
    if oracle or settings.train_geometry:
        if scales != (1.0,):
            raise ValueError("oracle evaluation runs at scale 1 only (no multi-scale test)")
        if settings.input_size is None:
            raise ValueError("oracle evaluation needs a fixed input size (not keep_res)")
        datasets: list[Dataset] = [TrainDataset(source, task, settings.input_size, settings.down_ratio,
                                                settings.mean, settings.std, augment=False)]
    else:
        datasets = [TestDataset(source, settings.input_size, settings.down_ratio, settings.mean, settings.std,
                                settings.pad, scale_factor=scale, meta_fn=task.sample_meta,
                                pad_style=pad_style(settings, task)) for scale in scales]
    return DataLoader(MultiScaleDataset(datasets), batch_size=settings.batch_size, shuffle=False,
                      collate_fn=collate_scales, num_workers=settings.num_workers)


def run_detections(model: Model, task: Task, source: DetectionSource, settings: EvalSettings,
                   device: torch.device | str = "cpu", progress: bool = True
                   ) -> Iterable[tuple[dict[str, Any], torch.Tensor]]:
    """Yield (meta of the image, [M, D] final rows in image pixels) for every image of ``source``.

    ``model`` is a module, a runner (images -> activated maps, e.g. an ONNX session) or None (every map from
    the encoded ground truth). With ``settings.oracle`` non-empty, those maps come from the ground truth
    (the error analysis). Several ``settings.scales`` are merged by the task (soft-NMS)."""
    oracle = set(task.heads()) if model is None else set(settings.oracle)
    if isinstance(model, nn.Module):
        model.eval()
    runner = as_runner(model, task, settings.precision, device)
    for passes in tqdm(_loader(source, task, settings, bool(oracle)), desc="eval",
                       disable=None if progress else True, leave=False):
        passes = [{k: v.to(device) for k, v in batch.items()} for batch in passes]
        run = runner
        if oracle:
            truth = {k: v for k, v in task.oracle_maps(passes[0]).items() if k in oracle}
            run = (lambda images: {**runner(images), **truth}) if runner is not None else (lambda images: truth)
        rows, _ = predict_passes(run, task, passes, settings.flip and not oracle, settings.down_ratio)
        for i, image_rows in enumerate(rows):
            yield image_meta(passes[0], i, task.meta_keys), image_rows


def image_meta(batch: dict[str, torch.Tensor], i: int, keys: Iterable[str]) -> dict[str, Any]:
    """The metadata ``keys`` of image ``i`` of a batch as numpy values (what ``task.to_results`` / ``draw``
    receive)."""
    return {k: batch[k][i].cpu().numpy() for k in keys if k in batch}


def scorer_results(model: Model, task: Task, source: DetectionSource, settings: EvalSettings,
                   device: torch.device | str = "cpu", progress: bool = True,
                   boxes: dict[int, np.ndarray] | None = None) -> list[dict[str, Any]]:
    """The task's results (COCO format for box and keypoint tasks) of every image of ``source``; ``boxes``,
    when given, receives each image's rows' first :data:`BOX_COLUMNS` columns (for the run reports)."""
    cat_ids = category_ids(source)
    results: list[dict[str, Any]] = []
    for meta, rows in run_detections(model, task, source, settings, device, progress):
        rows = rows.float().cpu().numpy()
        results += task.to_results(rows, meta, cat_ids)
        if boxes is not None:
            boxes[int(meta["image_id"])] = rows[:, :BOX_COLUMNS].copy()
    return results


def evaluate(model: Model, task: Task, source: DetectionSource, settings: EvalSettings | None = None,
             device: torch.device | str = "cpu", progress: bool = True, verbose: bool = False) -> EvalResult:
    """Metrics of ``model`` (a module, a runner, or None for the ground truth) on ``source``, from the task's
    scorer (COCO AP, AP50, ... for boxes; plus the data set's own, e.g. VOC AP50), with the per-class curves
    when the scorer computes them and every image's detected boxes."""
    settings = settings or EvalSettings()
    scorer = task.scorer(source)
    boxes: dict[int, np.ndarray] = {}
    results = scorer_results(model, task, source, settings, device, progress, boxes)
    scorer.add(results)
    metrics = scorer.result(verbose)
    return EvalResult(metrics, results, scorer.headline, scorer=scorer, per_class=getattr(scorer, "per_class", None),
                      boxes=boxes)
