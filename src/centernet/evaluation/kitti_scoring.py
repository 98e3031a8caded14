"""The KITTI scorer: result dicts of a KITTI data set -> the devkit's AP per class, metric and difficulty.

Ground truth comes from the source's samples (:class:`centernet.data.kitti.KittiDetection` keeps every type
the devkit needs: the trained classes, Van / Truck / Person_sitting as ignore rows and DontCare regions),
detections from the results (COCO ``bbox`` / ``score`` / ``category_id`` plus, from a 3D task, ``alpha``,
``dimensions``, ``location`` and ``rotation_y``; without them AOS, BEV and 3D are left out, as the devkit
does). Every image of the source is evaluated, with or without detections.
"""
from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ..data.kitti import DONT_CARE_CLASS
from ..data.kitti_labels import (KITTI_CLASSES, KITTI_TYPES, NO_ALPHA, NO_DIM, NO_LOCATION, KittiObject, frame_file,
                                 write_kitti_labels)
from ..data.sample import DetectionSource, Sample, category_ids
from .scoring import SCORERS, Scorer

#: the difficulty whose 3D AP, averaged over the classes with objects at that difficulty, is the headline
HEADLINE_METRIC, HEADLINE_DIFFICULTY = "3d", "moderate"
#: the devkit's moderate difficulty, to tell which classes have objects there (height, occlusion, truncation)
MODERATE = (25.0, 1, 0.3)
RECALL_POINTS = (11, 40)  # 11-point AP (the paper's) unsuffixed, 40-point AP suffixed "_R40"
PERCENT = 100.0
Results = dict[str, dict[str, dict[str, float]]]


def _devkit() -> ModuleType:
    """The KITTI evaluation module (imported when first needed)."""
    from . import kitti

    return kitti


def ground_truth_objects(sample: Sample) -> list[KittiObject]:
    """The KITTI label objects of one sample: trained objects, ignore types and DontCare regions (once each,
    although the reader repeats a DontCare region on every class channel)."""
    extra = sample.extra
    if "type_id" not in extra:
        raise ValueError(f"{sample.path}: KITTI scoring needs KITTI labels (read the data with KittiDetection)")
    objects = []
    for i in range(len(sample)):
        if extra["ignore_class"][i] == DONT_CARE_CLASS and sample.labels[i] != 0:
            continue  # the same region on another class channel
        objects.append(KittiObject(
            type=KITTI_TYPES[int(extra["type_id"][i])], truncated=float(extra["trunc"][i]),
            occluded=int(extra["occ"][i]), alpha=float(extra["alpha"][i]),
            bbox=tuple(float(v) for v in sample.boxes[i]), dimensions=tuple(float(v) for v in extra["dim"][i]),
            location=tuple(float(v) for v in extra["loc"][i]), rotation_y=float(extra["rot_y"][i])))
    return objects


def result_object(result: Mapping[str, Any], class_name: str) -> KittiObject:
    """A KITTI detection object of one result dict (truncation and occlusion 0, as the original writes)."""
    x, y, w, h = (float(v) for v in result["bbox"])
    return KittiObject(
        type=class_name, truncated=0.0, occluded=0, alpha=float(result.get("alpha", NO_ALPHA)),
        bbox=(x, y, x + w, y + h), dimensions=tuple(float(v) for v in result.get("dimensions", (NO_DIM,) * 3)),
        location=tuple(float(v) for v in result.get("location", (NO_LOCATION,) * 3)),
        rotation_y=float(result.get("rotation_y", NO_ALPHA)), score=float(result["score"]))


def label_results(source: DetectionSource) -> list[dict[str, Any]]:
    """The source's trained objects as results (score 1): what a perfect 2D + 3D detector reports. On a small
    set the devkit's AP of these is below 1 (it samples precision at no more recall points than there are
    objects), so they give the best AP reachable there."""
    cat_ids = category_ids(source)
    results = []
    for s in source.samples:
        for k in np.flatnonzero(~s.ignore):
            x1, y1, x2, y2 = (float(v) for v in s.boxes[k])
            results.append({"image_id": int(s.image_id), "category_id": cat_ids[int(s.labels[k])], "score": 1.0,
                            "bbox": [x1, y1, x2 - x1, y2 - y1], "alpha": float(s.extra["alpha"][k]),
                            "dimensions": [float(v) for v in s.extra["dim"][k]],
                            "location": [float(v) for v in s.extra["loc"][k]],
                            "rotation_y": float(s.extra["rot_y"][k])})
    return results


def flatten(results: Results, suffix: str = "") -> dict[str, float]:
    """results[class][metric][difficulty] (percent) -> {"Car_3d_moderate" + suffix: fraction in [0, 1]}."""
    return {f"{name}_{metric}_{difficulty}{suffix}": value / PERCENT
            for name, metrics in results.items() for metric, values in metrics.items()
            for difficulty, value in values.items()}


class KittiScorer(Scorer):
    """The devkit's AP (``overlaps`` "centernet" or "official") of a 2D or 3D task on a KITTI source.

    :meth:`result` gives flat fractions ``<Class>_<metric>_<difficulty>`` (metric bbox / aos / bev / 3d;
    11-point AP, and 40-point AP with the suffix ``_R40``) and the means over classes ``kitti_<metric>_
    <difficulty>`` over the classes with objects at moderate difficulty; the headline is
    ``kitti_3d_moderate`` (11-point). Detections scoring at most ``score_thresh`` are left out (the
    original writes only those above 0.2; 0 keeps every one, which can only raise AP)."""

    headline = f"kitti_{HEADLINE_METRIC}_{HEADLINE_DIFFICULTY}"

    def __init__(self, source: DetectionSource, overlaps: str = "centernet", score_thresh: float = 0.0) -> None:
        super().__init__()
        self.source, self.overlaps, self.score_thresh = source, overlaps, score_thresh
        self.classes = [c for c in KITTI_CLASSES if c in source.class_names]
        self.tables: dict[int, Results] | None = None  # recall points -> results, after :meth:`result`

    def add(self, results: Iterable[dict[str, Any]]) -> None:
        super().add(results)
        self.tables = None

    def merge(self, states: Sequence[list[dict[str, Any]]]) -> None:
        super().merge(states)
        self.tables = None

    def frames(self) -> tuple[dict[int, list[KittiObject]], dict[int, list[KittiObject]]]:
        """(ground truth, detections): KITTI objects per image id, every image of the source in both."""
        gt = {int(s.image_id): ground_truth_objects(s) for s in self.source.samples}
        names = dict(zip(category_ids(self.source), self.source.class_names))
        dets: dict[int, list[KittiObject]] = {frame: [] for frame in gt}
        for r in self.results:
            if r["score"] > self.score_thresh and names.get(r["category_id"]) in self.classes:
                frame = int(r["image_id"])
                if frame not in dets:
                    raise ValueError(f"a result for image {frame}, which the data set does not have")
                dets[frame].append(result_object(r, names[r["category_id"]]))
        return gt, dets

    def compute(self) -> dict[int, Results]:
        """{recall points: results[class][metric][difficulty] in percent} (cached until new results come)."""
        if self.tables is None:
            gt, dets = self.frames()
            self.tables = {n: _devkit().evaluate_kitti_labels(gt, dets, self.overlaps, n, self.classes)
                           for n in RECALL_POINTS}
        return self.tables

    def present_classes(self) -> list[str]:
        """The evaluated classes with at least one object at the devkit's moderate difficulty."""
        height, occlusion, truncation = MODERATE
        present = set()
        for s in self.source.samples:
            for obj in ground_truth_objects(s):
                if (obj.type in self.classes and obj.bbox[3] - obj.bbox[1] >= height and obj.occluded <= occlusion
                        and obj.truncated <= truncation):
                    present.add(obj.type)
        return [c for c in self.classes if c in present]

    def result(self, verbose: bool = False) -> dict[str, float]:
        tables = self.compute()
        metrics: dict[str, float] = {}
        for n, table in tables.items():
            metrics.update(flatten(table, "" if n == RECALL_POINTS[0] else f"_R{n}"))
        present = self.present_classes() or self.classes
        for metric in ("bbox", "aos", "bev", "3d"):
            for difficulty in ("easy", "moderate", "hard"):
                values = [metrics.get(f"{c}_{metric}_{difficulty}") for c in present]
                if values and all(v is not None for v in values):
                    metrics[f"kitti_{metric}_{difficulty}"] = float(np.mean(values))
        metrics.setdefault(self.headline, 0.0)
        return metrics

    def report(self) -> str:
        """The devkit's table (class x metric x difficulty, percent) for 11 and 40 recall points."""
        kitti = _devkit()
        parts = [f"KITTI AP, {n} recall points, overlaps {self.overlaps!r}:\n{kitti.format_kitti_table(table)}"
                 for n, table in self.compute().items()]
        return "\n\n".join(parts)

    def write(self, folder: str | Path) -> list[Path]:
        """The detections as KITTI result files ``folder/%06d.txt`` (one per image, empty ones too; values
        to 2 decimals as KITTI's files); returns the paths."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        _, dets = self.frames()
        return [write_kitti_labels(frame_file(folder, frame), objects, decimals=2)
                for frame, objects in sorted(dets.items())]


SCORERS.register("kitti")(KittiScorer)
