"""The one evaluator: run a model (or the ground truth, in oracle mode) over a data source and score it."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from ..data.pipeline import TestDataset, TrainDataset, collate
from ..data.sample import DetectionSource, category_ids
from ..data.voc import VocDetection
from ..evaluation.voc import voc_ap
from ..evaluation.coco import coco_ground_truth, evaluate_coco
from ..tasks.base import Task
from .inference import detections, infer_maps, merge_scales

ORACLE_MAPS = {"hm": "heatmap", "wh": "size", "reg": "offset"}


@dataclass
class EvalSettings:
    """Test-time geometry and options (see DataConfig for their meaning)."""

    input_size: tuple[int, int] | None = (512, 512)  # None: keep_res (pad to (n | pad) + 1)
    down_ratio: int = 4
    mean: tuple[float, float, float] = (0.408, 0.447, 0.470)
    std: tuple[float, float, float] = (0.289, 0.274, 0.278)
    pad: int = 31
    flip: bool = False
    batch_size: int = 1
    num_workers: int = 0
    oracle: frozenset[str] = field(default_factory=frozenset)  # head names replaced by the ground truth
    scales: tuple[float, ...] = (1.0,)  # test scales; several are merged with soft-NMS (SPEC 4)
    train_geometry: bool = False  # the oracle path's geometry (TrainDataset, no augmentation) without an oracle


def parse_scales(text: str | None) -> tuple[float, ...]:
    """'0.5,0.75,1,1.25,1.5' -> (0.5, 0.75, 1.0, 1.25, 1.5); None or '' -> (1.0,)."""
    if not text:
        return (1.0,)
    try:
        scales = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ValueError(f"scales must be comma-separated numbers, got {text!r}") from None
    if not scales or any(s <= 0 for s in scales):
        raise ValueError(f"scales must be positive, got {text!r}")
    return scales


class MultiScaleDataset(Dataset):
    """One item per image: the list of its test items at every scale."""

    def __init__(self, datasets: list[TestDataset]) -> None:
        self.datasets = datasets

    def __len__(self) -> int:
        return len(self.datasets[0])

    def __getitem__(self, index: int) -> list[dict]:
        return [d[index] for d in self.datasets]


def collate_scales(items: list[list[dict]]) -> list[dict[str, torch.Tensor]]:
    """Per-image lists of per-scale items -> one batch per scale."""
    return [collate([item[s] for item in items]) for s in range(len(items[0]))]


@dataclass
class EvalResult:
    metrics: dict[str, float]
    results: list[dict[str, Any]]  # COCO result format


def _loader(dataset, settings: EvalSettings, collate_fn=collate) -> DataLoader:
    return DataLoader(dataset, batch_size=settings.batch_size, shuffle=False, collate_fn=collate_fn,
                      num_workers=settings.num_workers)


def run_detections(model: nn.Module | None, task: Task, source: DetectionSource, settings: EvalSettings,
                   device: torch.device | str = "cpu", progress: bool = True) -> Iterable[tuple[int, torch.Tensor]]:
    """Yield (image_id, [K, D] detections in image pixels) for every image of ``source``.

    With ``settings.oracle`` non-empty, those maps come from the encoded ground truth (the error
    analysis); with ``model=None`` every map does. With several ``settings.scales`` each scale is run
    (with the flip test if set) and the detections are merged with soft-NMS (at most K rows per image).
    """
    oracle = set(settings.oracle)
    if model is None:
        oracle = set(task.heads())
    scales = tuple(settings.scales) or (1.0,)
    train_geometry = bool(oracle) or settings.train_geometry
    if train_geometry and scales != (1.0,):
        raise ValueError("oracle evaluation runs at scale 1 only (no multi-scale test)")
    if train_geometry:
        if settings.input_size is None:
            raise ValueError("oracle evaluation needs a fixed input size (not keep_res)")
        dataset = TrainDataset(source, task, settings.input_size, settings.down_ratio, settings.mean,
                               settings.std, augment=False)
        loader = _loader(dataset, settings)
    else:
        datasets = [TestDataset(source, settings.input_size, settings.down_ratio, settings.mean, settings.std,
                                settings.pad, scale_factor=scale) for scale in scales]
        loader = _loader(MultiScaleDataset(datasets), settings, collate_scales)
    if model is not None:
        model.eval()
    for batches in tqdm(loader, desc="eval", disable=None if progress else True, leave=False):
        per_scale = []
        for batch in batches if isinstance(batches, list) else [batches]:
            batch = {k: v.to(device) for k, v in batch.items()}
            maps: dict[str, torch.Tensor] = {}
            if model is not None:
                maps = infer_maps(model, task, batch["input"], flip=settings.flip)
            if oracle:
                truth = task.oracle_maps(batch)
                maps.update({k: truth[k] for k in oracle if k in truth})
            per_scale.append(detections(task, maps, batch["trans_inv"]))
        for image_id, rows in zip(batch["image_id"].tolist(), merge_scales(task, per_scale)):
            yield image_id, rows


def score_results(task: Task, source: DetectionSource, results: list[dict[str, Any]],
                  verbose: bool = False) -> dict[str, float]:
    """COCO metrics of ``results`` for each of the task's iou types: the first unprefixed (AP, AP50, ...),
    the others prefixed (e.g. ``bbox_AP`` for the boxes of a keypoint task)."""
    gt = coco_ground_truth(source)
    metrics: dict[str, float] = {}
    for i, iou_type in enumerate(task.iou_types):
        # pycocotools replaces a result's bbox by its keypoints' extent: box metrics get box-only results
        typed = results if iou_type == "keypoints" else [
            {k: v for k, v in r.items() if k != "keypoints"} for r in results]
        scores = evaluate_coco(gt, typed, iou_type, verbose=verbose)
        metrics.update(scores if i == 0 else {f"{iou_type}_{k}": v for k, v in scores.items()})
    if isinstance(source, VocDetection) and "bbox" in task.iou_types:
        metrics["voc_AP50"] = voc_ap(source, results)["mAP"]  # the VOC devkit's all-point AP at IoU 0.5
    return metrics


def evaluate(model: nn.Module | None, task: Task, source: DetectionSource, settings: EvalSettings | None = None,
             device: torch.device | str = "cpu", progress: bool = True, verbose: bool = False) -> EvalResult:
    """COCO metrics (AP, AP50, AP75, APs/m/l, AR) of ``model`` on ``source``."""
    settings = settings or EvalSettings()
    cat_ids = category_ids(source)
    results: list[dict[str, Any]] = []
    for image_id, rows in run_detections(model, task, source, settings, device, progress):
        results += task.to_results(rows.float().cpu().numpy(), image_id, cat_ids)
    return EvalResult(score_results(task, source, results, verbose), results)
