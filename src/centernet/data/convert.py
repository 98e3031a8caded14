"""Helpers shared by the format readers: box cleaning, image checks and export to a COCO-style dict."""
from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .io import DataError, printable, read_image
from .sample import DetectionSource, Sample, category_ids

# A box may stick out of its image by this much (pixels) before it counts as clipped.
CLIP_TOLERANCE = 1e-3


class BoxCleaner:
    """Clips boxes to their image and drops the unusable ones, counting both.

    A box partly outside the image is clipped to it (COCO has boxes that exceed their image by a
    fraction of a pixel); a box with non-positive width or height, before or after clipping (which
    includes boxes entirely outside the image), is skipped. :meth:`report` then emits one
    ``warnings.warn`` summary for the whole data set, so nothing is dropped silently.
    """

    def __init__(self, source_name: str | Path) -> None:
        self.source_name = str(source_name)
        self.skipped = 0
        self.clipped = 0

    def clean(self, x1: float, y1: float, x2: float, y2: float, width: int, height: int) -> tuple[float, float, float, float] | None:
        """Return the box clipped to ``width`` x ``height``, or None when it must be skipped."""
        if not (x2 > x1 and y2 > y1) or not np.all(np.isfinite([x1, y1, x2, y2])):
            self.skipped += 1
            return None
        cx1, cy1 = min(max(x1, 0.0), width), min(max(y1, 0.0), height)
        cx2, cy2 = min(max(x2, 0.0), width), min(max(y2, 0.0), height)
        if not (cx2 > cx1 and cy2 > cy1):
            self.skipped += 1
            return None
        if max(abs(cx1 - x1), abs(cy1 - y1), abs(cx2 - x2), abs(cy2 - y2)) > CLIP_TOLERANCE:
            self.clipped += 1
        return cx1, cy1, cx2, cy2

    def report(self) -> None:
        """Warn once about what was skipped or clipped (silent when nothing was)."""
        if self.skipped:
            msg = f"skipped {self.skipped} degenerate boxes in {self.source_name} (zero/negative size or outside the image)"
            if self.clipped:
                msg += f"; clipped {self.clipped} boxes to the image"
            warnings.warn(msg, stacklevel=3)
        elif self.clipped:
            warnings.warn(f"clipped {self.clipped} boxes to the image in {self.source_name}", stacklevel=3)


def clean_boxes(x1: np.ndarray, y1: np.ndarray, x2: np.ndarray, y2: np.ndarray, width: np.ndarray,
                height: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, int]:
    """:meth:`BoxCleaner.clean` of many boxes at once (float64 corners, each box's image size): (which boxes are
    kept [M] bool, the clipped boxes [M, 4] float32 (those not kept: anything), skipped, clipped)."""
    with np.errstate(invalid="ignore", over="ignore"):
        finite = np.isfinite(x1) & np.isfinite(y1) & np.isfinite(x2) & np.isfinite(y2)
        width, height = np.asarray(width, dtype=np.float64), np.asarray(height, dtype=np.float64)
        cx1, cy1 = np.minimum(np.maximum(x1, 0.0), width), np.minimum(np.maximum(y1, 0.0), height)
        cx2, cy2 = np.minimum(np.maximum(x2, 0.0), width), np.minimum(np.maximum(y2, 0.0), height)
        keep = (x2 > x1) & (y2 > y1) & finite & (cx2 > cx1) & (cy2 > cy1)
        moved = np.maximum(np.maximum(np.abs(cx1 - x1), np.abs(cy1 - y1)),
                           np.maximum(np.abs(cx2 - x2), np.abs(cy2 - y2))) > CLIP_TOLERANCE
    boxes = np.stack([cx1, cy1, cx2, cy2], axis=1).astype(np.float32)
    return keep, boxes, int(len(keep) - np.count_nonzero(keep)), int(np.count_nonzero(keep & moved))


def check_images(samples: Sequence[Sample], decode: bool = False, where: str = "") -> None:
    """Verify every sample's image exists (and, with ``decode``, that it decodes at its stated size).

    Raises :class:`DataError` listing up to 10 offending files and the total count.
    """
    missing = [s.path for s in samples if not Path(s.path).is_file()]
    if missing:
        raise DataError(_listing(f"{len(missing)} of {len(samples)} images not found{where}", missing))
    if not decode:
        return

    def problem(sample: Sample) -> str | None:
        try:
            h, w = read_image(sample.path).shape[:2]
        except DataError as exc:
            return str(exc)
        if (w, h) != (sample.width, sample.height):
            return f"{sample.path}: decoded size {w}x{h} differs from annotated {sample.width}x{sample.height}"
        return None

    with ThreadPoolExecutor(max_workers=4) as pool:
        bad = [p for p in pool.map(problem, samples) if p is not None]
    if bad:
        raise DataError(_listing(f"{len(bad)} of {len(samples)} images unusable{where}", bad))


def _listing(head: str, items: Sequence[Any], limit: int = 10) -> str:
    lines = [f"  {printable(item)}" for item in items[:limit]]  # one line each, whatever a file name holds
    if len(items) > limit:
        lines.append(f"  ... and {len(items) - limit} more")
    return head + ":\n" + "\n".join(lines)


def to_coco_dict(source: DetectionSource) -> dict[str, Any]:
    """A COCO-style ground-truth dict (images, annotations, categories) for pycocotools' ``COCO``.

    Category ids are ``source.cat_ids`` when the source has them, else 1..C in label order.
    Annotation ids start at 1 (pycocotools treats id 0 as "unmatched"). Ignored objects (crowd,
    VOC ``difficult``) become ``iscrowd=1`` so the COCO evaluator neither rewards nor penalises
    detections on them. ``area`` is the box area. Keypoints are exported when samples have them.
    """
    cat_ids = category_ids(source)
    if len(cat_ids) != len(source.class_names):
        raise ValueError(f"{len(cat_ids)} category ids for {len(source.class_names)} class names")
    categories: list[dict[str, Any]] = []
    keypoint_names = getattr(source, "keypoint_names", None)
    skeleton = getattr(source, "skeleton", None)
    for cat_id, name in zip(cat_ids, source.class_names):
        cat: dict[str, Any] = {"id": int(cat_id), "name": name, "supercategory": name}
        if keypoint_names:
            cat["keypoints"] = list(keypoint_names)
            cat["skeleton"] = [list(pair) for pair in (skeleton or [])]
        categories.append(cat)

    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for sample in source.samples:
        images.append({"id": int(sample.image_id), "file_name": Path(sample.path).name,
                       "width": int(sample.width), "height": int(sample.height)})
        for k in range(len(sample)):
            x1, y1, x2, y2 = (float(v) for v in sample.boxes[k])
            ann: dict[str, Any] = {
                "id": len(annotations) + 1,
                "image_id": int(sample.image_id),
                "category_id": int(cat_ids[int(sample.labels[k])]),
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "area": (x2 - x1) * (y2 - y1),
                "iscrowd": int(bool(sample.ignore[k])),
            }
            if sample.keypoints is not None:
                kps = sample.keypoints[k]
                ann["keypoints"] = [float(v) for v in kps.reshape(-1)]
                ann["num_keypoints"] = int((kps[:, 2] > 0).sum())
            annotations.append(ann)
    return {"images": images, "annotations": annotations, "categories": categories}
