"""The task seam: what a task adds on top of a detector that outputs head maps.

A task names its heads, turns an annotated sample (already in output-map pixels) into training targets,
computes the loss from the head maps, and decodes head maps into fixed-size detection rows. Everything
else (model, trainer, evaluator, predictor, export) is shared.
"""
from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from ..data.sample import Sample
from ..evaluation.coco import detections_to_coco
from ..visualize import draw_detections


def flip_lr(x: Tensor) -> Tensor:
    """Mirror maps [B, C, H, W] left-right."""
    return torch.flip(x, dims=[3])


class Task:
    """Base class. Subclasses set ``name`` and implement the methods below."""

    name: ClassVar[str]
    #: columns of a detection row that hold (x, y) pairs in output-map pixels, e.g. (0, 1, 2, 3) for a box
    point_columns: ClassVar[tuple[int, ...]] = (0, 1, 2, 3)
    #: index of the score and class columns of a detection row
    score_column: ClassVar[int] = 4
    class_column: ClassVar[int] = 5
    #: left/right pairs of per-object points swapped by a horizontal flip (keypoint tasks)
    flip_pairs: ClassVar[tuple[tuple[int, int], ...]] = ()
    #: pycocotools iouTypes the task is scored with; the first is the headline metric
    iou_types: ClassVar[tuple[str, ...]] = ("bbox",)

    def __init__(self, num_classes: int, weights: dict[str, float] | None = None, max_objects: int = 128,
                 max_detections: int = 100) -> None:
        self.num_classes = num_classes
        self.weights = {**self.default_weights(), **(weights or {})}
        self.max_objects = max_objects
        self.K = max_detections

    # -- to override -------------------------------------------------------------------------------------
    def heads(self) -> dict[str, int]:
        raise NotImplementedError

    def default_weights(self) -> dict[str, float]:
        raise NotImplementedError

    def encode(self, sample: Sample, out_w: int, out_h: int) -> dict[str, np.ndarray]:
        """Targets for one sample whose geometry is already in output-map pixels."""
        raise NotImplementedError

    def loss(self, outputs: list[dict[str, Tensor]], batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """Total loss averaged over stacks, and its weighted-free terms for logging."""
        raise NotImplementedError

    def activate(self, output: dict[str, Tensor]) -> dict[str, Tensor]:
        """Raw head maps -> decodable maps (sigmoid on heatmaps, ...)."""
        raise NotImplementedError

    def decode(self, maps: dict[str, Tensor]) -> Tensor:
        """Activated maps -> [B, K, D] detection rows in output-map pixels."""
        raise NotImplementedError

    def merge_flip(self, maps: dict[str, Tensor]) -> dict[str, Tensor]:
        """Activated maps of a [2B] batch (images, then their mirrors) -> maps of the B images."""
        raise NotImplementedError

    def oracle_maps(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Activated maps rebuilt from encoded targets (for the error analysis)."""
        raise NotImplementedError

    def to_results(self, rows: np.ndarray, image_id: int, cat_ids: list[int]) -> list[dict]:
        """Detection rows [K, D] in image pixels -> COCO result dicts."""
        return detections_to_coco(rows, image_id, cat_ids)

    def draw(self, image: np.ndarray, rows: np.ndarray, class_names: list[str], score_thresh: float) -> np.ndarray:
        """A picture of the detections rows [K, D] (image pixels) on ``image``."""
        return draw_detections(image, rows, class_names, score_thresh)

    # -- shared -------------------------------------------------------------------------------------------
    def stack_loss(self, outputs: list[dict[str, Tensor]], batch: dict[str, Tensor], one) -> tuple[Tensor, dict[str, Tensor]]:
        """Apply ``one(output, batch) -> {term: loss}`` to every stack, weight, and average over stacks."""
        totals: dict[str, Tensor] = {}
        for output in outputs:
            for term, value in one(output, batch).items():
                totals[term] = totals.get(term, 0) + value / len(outputs)
        loss = sum(self.weights[term] * value for term, value in totals.items())
        return loss, {term: value.detach() for term, value in totals.items()}
