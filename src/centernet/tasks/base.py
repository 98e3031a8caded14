"""The task seam: what a task adds on top of a detector that outputs head maps.

A task declares its heads (:class:`~centernet.models.heads.HeadSpec`), turns an annotated sample (already in
output-map pixels) into training targets, computes the loss from the head maps, decodes activated maps into
fixed-size detection rows, post-processes rows in image pixels with per-image ``meta`` (image id, size,
camera calibration, ...), turns them into results, draws them, and chooses the scorer for a data set.
Everything else (model, trainer, evaluator, predictor, export) is shared and never names a task.
"""
from __future__ import annotations

from typing import Any, ClassVar, Mapping

import numpy as np
import torch
from torch import Tensor

from ..data.pipeline import META_KEYS, sample_meta
from ..data.sample import DetectionSource, Sample
from ..evaluation.coco import detections_to_coco
from ..evaluation.scoring import Scorer, default_scorer
from ..models.heads import HEATMAP_PRIOR, Branch, HeadSpec
from ..ops.boxes import merge_detections
from ..viz.detections import draw_detections

#: per-image metadata: {"image_id": [B], "image_size": [B, 2] (w, h), "trans_inv": [B, 2, 3], "calib": [B, 3, 4]}
Meta = Mapping[str, Tensor]


def flip_lr(x: Tensor) -> Tensor:
    """Mirror maps [B, C, H, W] left-right."""
    return torch.flip(x, dims=[3])


class Task:
    """Base class. Subclasses set ``name`` and implement the methods marked "to override"."""

    name: ClassVar[str]
    #: columns of a detection row that hold (x, y) pairs in output-map pixels, e.g. (0, 1, 2, 3) for a box
    point_columns: ClassVar[tuple[int, ...]] = (0, 1, 2, 3)
    #: index of the score and class columns of a detection row
    score_column: ClassVar[int] = 4
    class_column: ClassVar[int] = 5
    #: named column ranges [start, stop) of a detection row, as results objects expose them (every task's rows
    #: start with x1, y1, x2, y2, score, class; a task adds its own fields, e.g. keypoints)
    row_fields: ClassVar[dict[str, tuple[int, int]]] = {"boxes": (0, 4), "scores": (4, 5), "class_ids": (5, 6)}
    #: left/right pairs of per-object points swapped by a horizontal flip (keypoint tasks)
    flip_pairs: ClassVar[tuple[tuple[int, int], ...]] = ()
    #: pycocotools iouTypes the task is scored with; the first is the headline metric
    iou_types: ClassVar[tuple[str, ...]] = ("bbox",)
    #: heads whose last bias starts at the heatmap prior (SPEC 3), heads whose last bias starts at another
    #: value than 0, and heads that read from a shared branch
    heatmap_heads: ClassVar[tuple[str, ...]] = ()
    head_biases: ClassVar[dict[str, float]] = {}
    head_branches: ClassVar[dict[str, Branch]] = {}
    #: "maps": the flip test averages the maps of the image and its mirror (``merge_flip``);
    #: "detections": both are decoded and their rows merged like test scales; None: no flip (train or test)
    flip_test: ClassVar[str | None] = "maps"
    #: whether training may mirror images (``flip_fields`` moves the task's own fields)
    can_flip: ClassVar[bool] = True
    #: keep_res test layout (``centernet.data.transforms.PAD_STYLES``): "centernet" or the original CornerNet's
    test_pad_style: ClassVar[str] = "centernet"
    #: share of training images augmented at all when ``data.augment_prob`` is None
    augment_prob: float = 1.0
    #: keyword arguments the data reader needs for this task (e.g. {"keypoints": True})
    data_options: ClassVar[dict[str, Any]] = {}
    #: error analysis: (row label, heads replaced by the ground truth), in the order of the paper's table
    analysis_rows: ClassVar[tuple[tuple[str, frozenset[str]], ...]] = ()
    #: the metrics (fractions in [0, 1]) the error-analysis table shows for each row
    analysis_columns: ClassVar[tuple[str, ...]] = ("AP", "AP50", "AP75")
    #: per-image metadata fields the task's batches carry (:meth:`sample_meta` fills them)
    meta_keys: ClassVar[tuple[str, ...]] = META_KEYS
    #: the named preset the ground-truth ("oracle") evaluation takes its geometry from
    oracle_preset: ClassVar[str] = ""

    def __init__(self, num_classes: int, weights: dict[str, float] | None = None, max_objects: int = 128,
                 max_detections: int = 100) -> None:
        self.num_classes = num_classes
        self.weights = {**self.default_weights(), **(weights or {})}
        self.max_objects = max_objects
        self.K = max_detections

    # -- to override -------------------------------------------------------------------------------------
    def head_channels(self) -> dict[str, int]:
        """{head name: output channels}."""
        raise NotImplementedError

    def default_weights(self) -> dict[str, float]:
        raise NotImplementedError

    def encode(self, sample: Sample, out_w: int, out_h: int) -> dict[str, np.ndarray]:
        """Targets for one sample whose geometry is already in output-map pixels."""
        raise NotImplementedError

    def loss(self, outputs: list[dict[str, Tensor]], batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """Total loss averaged over stacks, and its weight-free terms for logging."""
        raise NotImplementedError

    def activate(self, output: dict[str, Tensor]) -> dict[str, Tensor]:
        """Raw head maps -> decodable maps (sigmoid on heatmaps, ...)."""
        raise NotImplementedError

    def decode(self, maps: dict[str, Tensor]) -> Tensor:
        """Activated maps -> [B, K, D] detection rows in output-map pixels (pure tensor code, exportable)."""
        raise NotImplementedError

    def merge_flip(self, maps: dict[str, Tensor]) -> dict[str, Tensor]:
        """Activated maps of a [2B] batch (images, then their mirrors) -> maps of the B images."""
        raise NotImplementedError

    def oracle_maps(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Activated maps rebuilt from encoded targets (for the error analysis)."""
        raise NotImplementedError

    # -- hooks with defaults -------------------------------------------------------------------------------
    @classmethod
    def head_spec(cls, name: str, channels: int) -> HeadSpec:
        """The spec of head ``name``: heatmap prior, initial bias and branch as the class declares them."""
        prior = HEATMAP_PRIOR if name in cls.heatmap_heads else None
        return HeadSpec(name, channels, prior, cls.head_branches.get(name), cls.head_biases.get(name, 0.0))

    def heads(self) -> dict[str, HeadSpec]:
        """{name: HeadSpec} of every head, in the order the model builds them."""
        return {name: self.head_spec(name, n) for name, n in self.head_channels().items()}

    @classmethod
    def suits(cls, source: DetectionSource) -> bool:
        """Whether an oracle evaluation of ``source`` should pick this task when none is named."""
        return False

    def sample_meta(self, sample: Sample) -> dict[str, np.ndarray]:
        """Per-image metadata of ``sample`` for post-processing, results and drawing (``meta_keys``)."""
        return sample_meta(sample)

    def objects_beyond_limit(self, sample: Sample) -> int:
        """How many objects of ``sample`` get no training target because ``max_objects`` slots are full. Here
        slot k belongs to the k-th annotation (crowd regions take theirs), so the trained objects past the
        first ``max_objects`` annotations."""
        return int(np.count_nonzero(~sample.ignore[self.max_objects:]))

    def flip_fields(self, sample: Sample) -> Sample:
        """Mirror task-specific fields of an already mirrored ``sample`` (boxes and keypoints are done)."""
        return sample

    def unflip_rows(self, rows: Tensor, map_width: int) -> Tensor:
        """Rows [B, K, D] decoded from mirrored maps -> rows of the unmirrored image (``flip_test="detections"``)."""
        raise NotImplementedError

    def postprocess(self, rows: Tensor, meta: Meta) -> Tensor:
        """Rows [B, K, D] in image pixels -> final rows, with per-image ``meta`` (e.g. calibration)."""
        return rows

    def merge(self, per_pass: list[Tensor]) -> list[Tensor]:
        """Rows of several test passes (scales, flips), each [B, K, D] in image pixels -> one [M, D] per image.

        One pass goes through unchanged; several are concatenated and merged per class with Gaussian soft-NMS
        (sigma 0.5, drop below 0.001), keeping the top ``K`` (SPEC 4)."""
        if len(per_pass) == 1:
            return list(per_pass[0])
        return merge_detections(torch.cat(per_pass, dim=1), self.K, self.score_column, self.class_column)

    def heatmap(self, maps: dict[str, Tensor]) -> Tensor | None:
        """The map [B, C, h, w] in [0, 1] to overlay on pictures (None: none)."""
        return maps.get("hm")

    def to_results(self, rows: np.ndarray, meta: Mapping[str, Any], cat_ids: list[int]) -> list[dict]:
        """Rows [K, D] of one image (image pixels) with its ``meta`` -> result dicts (COCO format here)."""
        return detections_to_coco(rows, int(meta["image_id"]), cat_ids)

    def draw(self, image: np.ndarray, rows: np.ndarray, class_names: list[str], score_thresh: float,
             meta: Mapping[str, Any] | None = None) -> np.ndarray:
        """A picture of the detection rows [K, D] (image pixels) on ``image``."""
        return draw_detections(image, rows, class_names, score_thresh)

    def scorer(self, source: DetectionSource) -> Scorer:
        """What scores results on ``source``: COCO metrics of ``iou_types`` plus the data set's own."""
        return default_scorer(source, self.iou_types)

    # -- shared -------------------------------------------------------------------------------------------
    def stack_loss(self, outputs: list[dict[str, Tensor]], batch: dict[str, Tensor], one) -> tuple[Tensor, dict[str, Tensor]]:
        """Apply ``one(output, batch) -> {term: loss}`` to every stack, weight, and average over stacks."""
        totals: dict[str, Tensor] = {}
        for output in outputs:
            for term, value in one(output, batch).items():
                totals[term] = totals.get(term, 0) + value / len(outputs)
        loss = sum(self.weights[term] * value for term, value in totals.items())
        return loss, {term: value.detach() for term, value in totals.items()}
