"""CenterNet monocular 3D detection ("ddd", SPEC 6) as a task: the centre peak of an object plus its depth,
3D size and orientation, lifted to a KITTI 3D box with the image's camera matrix (``meta["calib"]``).

The tensor work (targets, losses, decoding, lifting) lives in :mod:`.ddd_core`; this module wires it into
the task seam: heads, options, per-image calibration, results (COCO 2D fields plus the KITTI 3D fields),
pictures (projected 3D boxes and a bird's-eye view) and scoring (KITTI AP first, then COCO box AP).
Rows are ``[B, K, 17]`` after post-processing (layout :data:`.ddd_core.COLUMNS`).
"""
from __future__ import annotations

from typing import Any, ClassVar, Mapping

import numpy as np
from torch import Tensor

from ..data.kitti_labels import ORIGINAL_CLASS_ORDER
from ..data.sample import DetectionSource, Sample
from ..evaluation.kitti_scoring import KittiScorer
from ..evaluation.scoring import CocoScorer, Scorer, Scorers
from ..viz.detections import draw_detections
from ..viz.boxes3d import GT_COLOR, draw_birds_eye, draw_boxes3d
from .base import Meta, Task
from .ddd_core import (
    COLUMNS, DDD_WEIGHTS, LOSS_NORMS, ORIGINAL_AUGMENT_PROB, POINT_COLUMNS, CenterKind, activate_ddd, ddd_heads,
    ddd_losses, ddd_postprocess, decode_ddd, encode_ddd, oracle_ddd_maps,
)

#: columns of a row that make a drawable 3D box: h w l x y z rot_y
BOX3D_COLUMNS = [COLUMNS[k] for k in ("h", "w", "l", "x", "y", "z", "rot_y")]
#: the meta key of optional ground-truth 3D boxes [N, 7] (h w l x y z rot_y) drawn beside the predictions
GT_BOXES_KEY = "gt_boxes3d"
#: the bird's-eye view's extent (metres): x across, z ahead of the camera; its width follows from the height
BEV_X_RANGE, BEV_Z_RANGE = (-20.0, 20.0), (0.0, 60.0)
NO_CALIB = ("3D detection needs the camera matrix: the image has no calibration (P2 [3, 4]); pass --calib "
            "with a KITTI calibration file, or meta={'calib': P2}")

#: the error analysis: KITTI AP with the ground truth substituted for the heatmap, then the 3D heads
DDD_ANALYSIS_ROWS = (
    ("none", frozenset()),
    ("hm", frozenset({"hm"})),
    ("hm + dep", frozenset({"hm", "dep"})),
    ("hm + dep + dim + rot", frozenset({"hm", "dep", "dim", "rot"})),
    ("hm + dep + dim + rot + wh + reg", frozenset({"hm", "dep", "dim", "rot", "wh", "reg"})),
)


class DddTask(Task):
    """KITTI-style monocular 3D boxes. Options: ``center`` ("box": the 2D box centre is the keypoint, as the
    original; "projected": the projected 3D centre), ``radius_variant`` / ``min_overlap`` as ctdet,
    ``loss_norm`` ("objects": L1 means over the real objects, padded slots out of the rotation loss; "original":
    the original code's losses for reproducing the paper, see :func:`.ddd_core.ddd_losses`, which also makes
    half the training images unaugmented, as its aug_ddd 0.5, unless ``data.augment_prob`` says otherwise).

    No horizontal flip (the 3D fields are not mirrored; the original does not flip), in training or test."""

    name = "ddd"
    point_columns: ClassVar[tuple[int, ...]] = POINT_COLUMNS
    heatmap_heads = ("hm",)
    can_flip = False
    flip_test = None
    data_options = {"class_names": ORIGINAL_CLASS_ORDER}
    analysis_rows = DDD_ANALYSIS_ROWS
    analysis_columns = ("kitti_bbox_moderate", "kitti_aos_moderate", "kitti_bev_moderate", "kitti_3d_moderate")
    oracle_preset = "ddd_dla34_3dop"

    def __init__(self, num_classes: int = 3, weights: dict[str, float] | None = None, max_objects: int = 50,
                 max_detections: int = 100, center: CenterKind = "box", radius_variant: str = "centernet",
                 min_overlap: float = 0.7, loss_norm: str = "objects") -> None:
        if center not in ("box", "projected"):
            raise ValueError(f"ddd center must be 'box' or 'projected', got {center!r}")
        if loss_norm not in LOSS_NORMS:
            raise ValueError(f"ddd loss_norm must be one of {LOSS_NORMS}, got {loss_norm!r}")
        super().__init__(num_classes, weights, max_objects, max_detections)
        self.center = center
        self.radius_variant = radius_variant
        self.min_overlap = min_overlap
        self.loss_norm = loss_norm
        # the original's depth / size losses skip augmented images, so it augments only half of them
        self.augment_prob = ORIGINAL_AUGMENT_PROB if loss_norm == "original" else 1.0

    @classmethod
    def suits(cls, source: DetectionSource) -> bool:
        """Data whose every sample carries a camera matrix (KITTI)."""
        return bool(source.samples) and all(s.calib is not None for s in source.samples)

    def head_channels(self) -> dict[str, int]:
        return ddd_heads(self.num_classes)

    def default_weights(self) -> dict[str, float]:
        return dict(DDD_WEIGHTS)

    # -- training ------------------------------------------------------------------------------------------
    def encode(self, sample: Sample, out_w: int, out_h: int) -> dict[str, np.ndarray]:
        return encode_ddd(sample, out_w, out_h, self.num_classes, self.max_objects, self.center,
                          self.radius_variant, self.min_overlap)

    def objects_beyond_limit(self, sample: Sample) -> int:
        """Ignore rows take no slot here: the trained objects past the first ``max_objects`` of them (at most;
        an object cropped away by the augmentation frees its slot)."""
        return max(0, int(np.count_nonzero(~sample.ignore)) - self.max_objects)

    def loss(self, outputs: list[dict[str, Tensor]], batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        return self.stack_loss(outputs, batch, lambda output, targets: ddd_losses(output, targets, self.loss_norm))

    # -- inference -----------------------------------------------------------------------------------------
    def activate(self, output: dict[str, Tensor]) -> dict[str, Tensor]:
        return activate_ddd(output)

    def decode(self, maps: dict[str, Tensor]) -> Tensor:
        return decode_ddd(maps["hm"], maps["dep"], maps["rot"], maps["dim"], maps["wh"], maps.get("reg"),
                          K=self.K)  # [B, K, 13]

    def merge_flip(self, maps: dict[str, Tensor]) -> dict[str, Tensor]:
        raise ValueError("ddd has no flip test (its orientation maps are not mirrored)")

    def oracle_maps(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return oracle_ddd_maps(batch)

    def postprocess(self, rows: Tensor, meta: Meta) -> Tensor:
        """Rows [B, K, 13] in image pixels -> [B, K, 17] with the KITTI location and rotation_y."""
        if "calib" not in meta:
            raise ValueError(NO_CALIB)
        return ddd_postprocess(rows, meta["calib"])  # calib [B, 3, 4]

    # -- output --------------------------------------------------------------------------------------------
    def to_results(self, rows: np.ndarray, meta: Mapping[str, Any], cat_ids: list[int]) -> list[dict]:
        """One dict per row: COCO ``image_id`` / ``category_id`` / ``bbox`` (xywh) / ``score`` and the KITTI
        ``alpha``, ``dimensions`` (h, w, l), ``location`` (x, y, z: bottom centre) and ``rotation_y``."""
        c = COLUMNS
        results = []
        for row in np.asarray(rows, dtype=np.float64).tolist():
            x1, y1, x2, y2 = row[:4]
            results.append({
                "image_id": int(meta["image_id"]), "category_id": cat_ids[int(row[c["class"]])],
                "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                "score": round(row[c["score"]], 5), "alpha": round(row[c["alpha"]], 4),
                "dimensions": [round(row[c[k]], 4) for k in ("h", "w", "l")],
                "location": [round(row[c[k]], 4) for k in ("x", "y", "z")],
                "rotation_y": round(row[c["rot_y"]], 4),
            })
        return results

    def draw(self, image: np.ndarray, rows: np.ndarray, class_names: list[str], score_thresh: float,
             meta: Mapping[str, Any] | None = None) -> np.ndarray:
        """The image with the 2D boxes and projected 3D boxes (front face crossed) of rows above
        ``score_thresh``, and a bird's-eye view beside it; ground-truth boxes ``meta["gt_boxes3d"]``
        [N, 7] (h w l x y z rot_y), when given, in green there and on the image. Without ``meta["calib"]``
        only the 2D boxes are drawn."""
        meta = meta or {}
        kept = rows[rows[:, COLUMNS["score"]] >= score_thresh]
        out = draw_detections(image, kept[:, :6], class_names, score_thresh)
        if "calib" not in meta:
            return out
        calib = np.asarray(meta["calib"], dtype=np.float64).reshape(3, 4)
        gt = meta.get(GT_BOXES_KEY)
        gt = None if gt is None else np.asarray(gt, dtype=np.float64).reshape(-1, 7)
        if gt is not None:
            out = draw_boxes3d(out, gt, calib, color=GT_COLOR)
        out = draw_boxes3d(out, kept[:, BOX3D_COLUMNS], calib)
        height = out.shape[0]
        width = round(height * (BEV_X_RANGE[1] - BEV_X_RANGE[0]) / (BEV_Z_RANGE[1] - BEV_Z_RANGE[0]))
        bev = draw_birds_eye(gt, kept[:, BOX3D_COLUMNS], size=(width, height), x_range=BEV_X_RANGE,
                             z_range=BEV_Z_RANGE)
        return np.concatenate([out, bev], axis=1)

    def scorer(self, source: DetectionSource) -> Scorer:
        """KITTI AP (2D, AOS, BEV, 3D; its headline leads), then COCO box AP."""
        return Scorers([KittiScorer(source), CocoScorer(source, ("bbox",))])


def gt_boxes3d(sample: Sample) -> np.ndarray:
    """The labelled 3D boxes [N, 7] (h w l x y z rot_y) of ``sample``'s trained objects (for :meth:`DddTask.draw`
    via ``meta["gt_boxes3d"]``)."""
    if "dim" not in sample.extra:
        return np.zeros((0, 7), np.float32)
    keep = ~sample.ignore
    return np.concatenate([sample.extra["dim"][keep], sample.extra["loc"][keep],
                           sample.extra["rot_y"][keep, None]], axis=1).astype(np.float32)

