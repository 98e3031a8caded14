"""CornerNet training targets (SPEC 2 and 7): corner heatmaps, sub-pixel offsets and corner indices.

Numpy, per sample; the gaussians are drawn per object, never per pixel.
"""
from __future__ import annotations

from typing import Literal

import numpy as np

from ..ops.heatmap import draw_gaussian, object_radius

Penalty = Literal["object", "fixed", "none"]
PENALTIES = ("object", "fixed", "none")
CORNER_MIN_OVERLAP = 0.3  # CornerNet's gaussian_iou: a corner pair inside the radius keeps IoU >= 0.3
FIXED_RADIUS = 2  # radius of the "fixed" penalty ablation (a choice of ours; the original's config has none)


def corner_radii(box_w: np.ndarray, box_h: np.ndarray, penalty: Penalty = "object", fixed_radius: int = FIXED_RADIUS,
                 min_overlap: float = CORNER_MIN_OVERLAP) -> np.ndarray:
    """Integer gaussian radius per object [N] for the CornerNet paper's penalty-reduction ablation.

    ``object`` (default): the corrected ``gaussian_radius`` at ``min_overlap`` on the ceil'ed box size in
    output pixels; ``fixed``: ``fixed_radius`` for every object; ``none``: 0, only the corner pixel is
    positive and every other pixel is a full-weight negative.
    """
    n = np.shape(box_w)[0]
    if penalty == "object":
        return object_radius(box_h, box_w, min_overlap, "cornernet").reshape(n)
    if penalty == "fixed":
        if fixed_radius < 0:
            raise ValueError(f"fixed_radius must be >= 0, got {fixed_radius}")
        return np.full(n, int(fixed_radius), dtype=np.int64)
    if penalty == "none":
        return np.zeros(n, dtype=np.int64)
    raise ValueError(f"unknown corner penalty {penalty!r}; expected one of {PENALTIES}")


def encode_corners(boxes: np.ndarray, labels: np.ndarray, ignore: np.ndarray, out_w: int, out_h: int,
                   num_classes: int, max_objects: int, penalty: Penalty = "object", fixed_radius: int = FIXED_RADIUS,
                   min_overlap: float = CORNER_MIN_OVERLAP) -> dict[str, np.ndarray]:
    """Targets of one image whose ``boxes`` [N, 4] (x1, y1, x2, y2) are in output-map pixels (float).

    Corners are clipped into the map ([0, W) x [0, H)); the training pipeline has already clipped them to the
    input crop as the original does (``data.pipeline.clip_to_input``: at most 127.75 on a 128 map from a 511
    input, so a box touching the right or bottom edge keeps its sub-pixel offset). Objects with no positive
    clipped width or height, ``ignore``d ones (crowds) and those past ``max_objects`` get no target. Slot k
    belongs to the k-th box. Returns

    * ``tl_heat``, ``br_heat`` [C, H, W]: a gaussian per corner (radius from ``penalty``, see
      :func:`corner_radii`) on the object's class, merged by max; exactly 1 at the corner pixel
    * ``tl_regr``, ``br_regr`` [M, 2]: corner - floor(corner), in [0, 1)
    * ``tl_ind``, ``br_ind`` [M]: flat index y * W + x of each corner pixel (the original's ``tl_tags``)
    * ``tag_mask`` [M]: 1 for the objects that have targets, else 0 (float32)
    """
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)[:max_objects].copy()
    n = len(boxes)
    labels = np.asarray(labels, dtype=np.int64)[:n]
    ignore = np.asarray(ignore, dtype=bool)[:n]
    if len(labels) != n or len(ignore) != n:
        raise ValueError(f"encode_corners: {len(boxes)} boxes but {len(labels)} labels and {len(ignore)} ignore flags")
    if n and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"encode_corners: labels must lie in [0, {num_classes}), got {labels.min()}..{labels.max()}")
    inside = np.nextafter(np.array([out_w, out_h], np.float32), np.float32(0))  # largest values below the size
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, inside[0])
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, inside[1])
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    keep = (w > 0) & (h > 0) & ~ignore
    radii = corner_radii(w, h, penalty, fixed_radius, min_overlap)
    tl, br = boxes[:, :2], boxes[:, 2:]  # [N, 2] (x, y)
    tl_int, br_int = np.floor(tl).astype(np.int64), np.floor(br).astype(np.int64)

    tl_heat = np.zeros((num_classes, out_h, out_w), dtype=np.float32)
    br_heat = np.zeros((num_classes, out_h, out_w), dtype=np.float32)
    for k in np.flatnonzero(keep):
        draw_gaussian(tl_heat[labels[k]], tl_int[k], radii[k])
        draw_gaussian(br_heat[labels[k]], br_int[k], radii[k])

    targets = {
        "tl_regr": np.zeros((max_objects, 2), dtype=np.float32),
        "br_regr": np.zeros((max_objects, 2), dtype=np.float32),
        "tl_ind": np.zeros(max_objects, dtype=np.int64),
        "br_ind": np.zeros(max_objects, dtype=np.int64),
        "tag_mask": np.zeros(max_objects, dtype=np.float32),
    }
    targets["tl_regr"][:n] = tl - tl_int
    targets["br_regr"][:n] = br - br_int
    targets["tl_ind"][:n] = tl_int[:, 1] * out_w + tl_int[:, 0]
    targets["br_ind"][:n] = br_int[:, 1] * out_w + br_int[:, 0]
    targets["tag_mask"][:n] = keep
    return {"tl_heat": tl_heat, "br_heat": br_heat, **targets}
