"""Small-data augmentation that mixes images: a 4-image mosaic (YOLOv4's) and mixup (two images blended).

Both are options of :class:`~centernet.data.pipeline.TrainDataset` (``data.mosaic``, ``data.mixup``), off by
default, and draw every random choice from the item's own ``RandomState``, so an item stays a function of
(seed, epoch, index).

Mosaic: the item's image and three others, each scaled so that its longer side is ``tile`` pixels (the input's
longer side), are placed around a random centre (xc, yc) of a ``2 tile x 2 tile`` canvas, one per quadrant
(top-left: the image's bottom-right corner on the centre, top-right: its bottom-left corner, ...). What falls
outside its quadrant or the canvas is cut; boxes are clipped to their tile, and boxes left thinner than
:data:`MIN_SIDE` canvas pixels or with less than :data:`MIN_VISIBLE` of their area inside are dropped
(keypoints outside the tile become invisible). The pipeline then crops the canvas with the usual affine
augmentation drawn for the central ``tile x tile`` window (:func:`mosaic_crop`), so objects keep the scales
of the plain pipeline.

Mixup: the item (after its own augmentation) is blended 50 / 50 with another, independently augmented item;
the objects of both are kept at full weight (:func:`blend`, :func:`merge_samples`).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from ..ops.transforms import affine_transform
from .sample import Sample
from .transforms import AugmentParams, sample_augment, warp_affine

#: boxes (clipped to their tile) thinner or lower than this many canvas pixels are dropped
MIN_SIDE = 2.0
#: boxes with less than this share of their area inside their tile are dropped
MIN_VISIBLE = 0.25
#: mixup's blend weight of the item (the other image gets 1 - it)
MIXUP_WEIGHT = 0.5

#: an image [H, W, 3] uint8 and its sample (geometry in that image's pixels)
Item = tuple[np.ndarray, Sample]


def check_mixable(task: Any, source: Any, option: str) -> None:
    """Refuse ``option`` ("data.mosaic" / "data.mixup") for a task whose targets are tied to the camera: one
    that cannot mirror its images (3D boxes) or whose samples carry a camera matrix. Moving and rescaling
    images independently of that camera would teach wrong depths."""
    first = source[0] if len(source) else None
    if not getattr(task, "can_flip", True) or (first is not None and first.calib is not None):
        name = getattr(task, "name", type(task).__name__)
        raise ValueError(f"{option} needs a task whose targets follow the image (boxes, keypoints); the "
                         f"{name} task's targets depend on the camera (set {option}=0)")


def select_objects(sample: Sample, keep: np.ndarray) -> Sample:
    """``sample`` with only the objects where ``keep`` [N] bool is true (every per-object field)."""
    extra = {k: v[keep] if isinstance(v, np.ndarray) and len(v) == len(keep) else v
             for k, v in sample.extra.items()}
    keypoints = None if sample.keypoints is None else sample.keypoints[keep]
    return dataclasses.replace(sample, boxes=sample.boxes[keep], labels=sample.labels[keep],
                               ignore=sample.ignore[keep], keypoints=keypoints, extra=extra)


def merge_samples(first: Sample, others: Sequence[Sample], width: int, height: int) -> Sample:
    """The objects of ``first`` then of each of ``others`` in one sample of ``width x height`` (image id,
    path and camera of ``first``). Keypoints and extra fields are kept where every sample has them."""
    parts = [first, *others]
    keypoints = None
    if all(s.keypoints is not None for s in parts):
        keypoints = np.concatenate([s.keypoints for s in parts]).astype(np.float32)  # [N, J, 3]
    keys = set.intersection(*(set(s.extra) for s in parts))
    extra = {k: np.concatenate([np.asarray(s.extra[k]) for s in parts]) for k in sorted(keys)}
    return Sample(first.image_id, first.path, width, height,
                  np.concatenate([s.boxes for s in parts]), np.concatenate([s.labels for s in parts]),
                  np.concatenate([s.ignore for s in parts]), keypoints, first.calib, extra)


def tile_placement(width: int, height: int, tile: int, quadrant: int, xc: int, yc: int
                   ) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Where a ``width x height`` image goes in quadrant ``quadrant`` (0 top-left, 1 top-right, 2 bottom-left,
    3 bottom-right) around the centre (xc, yc) of a ``2 tile`` canvas: its 2x3 image -> canvas matrix (scale
    ``tile / max(width, height)``, then a shift) and its region (x0, y0, x1, y1), end excluded, in canvas pixels:
    the quadrant's part of the placed image, inside the canvas."""
    r = tile / max(width, height)
    w, h = width * r, height * r
    left, top = quadrant in (1, 3), quadrant in (2, 3)  # the image starts at the centre on that axis
    tx = float(xc) if left else xc - w
    ty = float(yc) if top else yc - h
    trans = np.array([[r, 0.0, tx], [0.0, r, ty]], dtype=np.float64)
    side = 2 * tile
    x0, x1 = (xc, min(side, int(np.ceil(xc + w)))) if left else (max(0, int(np.floor(xc - w))), xc)
    y0, y1 = (yc, min(side, int(np.ceil(yc + h)))) if top else (max(0, int(np.floor(yc - h))), yc)
    return trans, (x0, y0, x1, y1)


def place_objects(sample: Sample, trans: np.ndarray, region: tuple[int, int, int, int],
                  min_side: float = MIN_SIDE, min_visible: float = MIN_VISIBLE) -> Sample:
    """The objects of ``sample`` mapped through ``trans`` (2x3) and clipped to ``region`` (x0, y0, x1, y1, end
    excluded; boxes reach at most the last pixel x1 - 1); objects thinner than ``min_side`` or with less than
    ``min_visible`` of their area left are dropped, keypoints outside the region made invisible."""
    x0, y0, x1, y1 = region
    boxes = affine_transform(sample.boxes.reshape(-1, 2), trans).reshape(-1, 4)  # [N, 4] canvas pixels
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    clipped = boxes.copy()
    clipped[:, [0, 2]] = clipped[:, [0, 2]].clip(x0, x1 - 1)
    clipped[:, [1, 3]] = clipped[:, [1, 3]].clip(y0, y1 - 1)
    w, h = clipped[:, 2] - clipped[:, 0], clipped[:, 3] - clipped[:, 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        visible = np.where(area > 0, w * h / np.maximum(area, 1e-12), 0.0)
    keep = (w >= min_side) & (h >= min_side) & (visible >= min_visible)
    keypoints = sample.keypoints
    if keypoints is not None:
        keypoints = keypoints.copy()  # [N, J, 3]
        keypoints[..., :2] = affine_transform(keypoints[..., :2].reshape(-1, 2), trans).reshape(
            keypoints.shape[:-1] + (2,))
        x, y = keypoints[..., 0], keypoints[..., 1]
        outside = (x < x0) | (x > x1 - 1) | (y < y0) | (y > y1 - 1)
        keypoints[..., 2] = np.where(outside, 0.0, keypoints[..., 2])
    placed = dataclasses.replace(sample, boxes=clipped.astype(np.float32), keypoints=keypoints)
    return select_objects(placed, keep)


def mosaic(rng: np.random.RandomState, items: Sequence[Item], tile: int) -> Item:
    """Four (image, sample) items on a ``2 tile x 2 tile`` canvas around a random centre; -> the canvas
    [2 tile, 2 tile, 3] uint8 (zeros where no image lies) and its sample (the first item's id and path)."""
    if len(items) != 4:
        raise ValueError(f"a mosaic takes 4 images, got {len(items)}")
    side = 2 * tile
    xc, yc = (int(rng.uniform(0.5 * tile, 1.5 * tile)) for _ in range(2))  # the centre, in the middle half
    canvas = np.zeros((side, side, 3), dtype=np.uint8)
    placed = []
    for quadrant, (image, sample) in enumerate(items):
        trans, (x0, y0, x1, y1) = tile_placement(sample.width, sample.height, tile, quadrant, xc, yc)
        if x1 > x0 and y1 > y0:
            shifted = trans - np.array([[0, 0, x0], [0, 0, y0]], dtype=np.float64)  # image -> region
            canvas[y0:y1, x0:x1] = warp_affine(image, shifted, (x1 - x0, y1 - y0)).reshape(y1 - y0, x1 - x0, -1)
        placed.append(place_objects(sample, trans, (x0, y0, x1, y1)))
    return canvas, merge_samples(placed[0], placed[1:], side, side)


def mosaic_crop(rng: np.random.RandomState, tile: int, random_crop: bool = True, scale_jitter: float = 0.4,
                shift_jitter: float = 0.1, flip_prob: float = 0.5) -> AugmentParams:
    """The usual crop / scale / flip draw (:func:`~.transforms.sample_augment`) for the central
    ``tile x tile`` window of a mosaic canvas, in canvas pixels (a flip mirrors the whole canvas)."""
    aug = sample_augment(rng, tile, tile, random_crop, scale_jitter, shift_jitter, flip_prob)
    # the window starts at tile / 2: a flip of it (x -> tile - x - 1) is then the canvas's (x -> 2 tile - x - 1)
    return AugmentParams(aug.center + np.float32(tile / 2), aug.scale, aug.flipped)


def blend(first: np.ndarray, second: np.ndarray, weight: float = MIXUP_WEIGHT) -> np.ndarray:
    """``weight * first + (1 - weight) * second`` of two uint8 images of one shape [H, W, 3], rounded."""
    if first.shape != second.shape:
        raise ValueError(f"mixup blends images of one shape, got {first.shape} and {second.shape}")
    mixed = weight * first.astype(np.float32) + (1.0 - weight) * second.astype(np.float32)
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)
