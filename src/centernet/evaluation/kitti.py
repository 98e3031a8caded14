"""KITTI object detection AP (2D box, orientation AOS, bird's-eye view, 3D) as the offline devkit shipped
with the original CenterNet (src/tools/kitti_eval/evaluate_object_3d_offline.cpp) computes it.

Per class, metric and difficulty: Easy / Moderate / Hard keep objects at least 40 / 25 / 25 px tall,
occluded at most 0 / 1 / 2 and truncated at most 0.15 / 0.3 / 0.5; other objects of the class, and the
neighbouring class (Van for Car, Person_sitting for Pedestrian), are ignored (may absorb a detection, never
count as missed). Detections lower than the difficulty's minimum height are ignored (of any class: the
devkit lets such a detection absorb an object of the evaluated class too), and a detection covering a
DontCare region (intersection over its own area above the class threshold) is no false positive.
Figures are percent; the 11-point AP (the CenterNet paper's) averages precision at recall 0, 0.1, ..., 1,
the 40-point AP at recall 1/40, ..., 1.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..data.kitti_labels import KITTI_CLASSES, NO_ALPHA, NO_LOCATION, KittiObject, frame_file, read_kitti_labels
from .kitti_match import N_SAMPLES, MatchInput, precision_curves
from .rotated_iou import bev_intersection, bev_overlap, box3d_overlap, image_overlap

DIFFICULTIES = ("easy", "moderate", "hard")
MIN_HEIGHT = (40, 25, 25)  # pixels
MAX_OCCLUSION = (0, 1, 2)
MAX_TRUNCATION = (0.15, 0.3, 0.5)
METRICS = ("bbox", "aos", "bev", "3d")
# Minimum overlaps per class: (2D box, bird's-eye view, 3D). "centernet" is the devkit shipped with the
# original CenterNet (its paper's figures); "official" is KITTI's benchmark server.
OVERLAPS = {
    "centernet": {"car": (0.7, 0.5, 0.5), "pedestrian": (0.5, 0.25, 0.25), "cyclist": (0.5, 0.25, 0.25)},
    "official": {"car": (0.7, 0.7, 0.7), "pedestrian": (0.5, 0.5, 0.5), "cyclist": (0.5, 0.5, 0.5)},
}
NEIGHBOURS = {"car": ("van",), "pedestrian": ("person_sitting",)}
Results = dict[str, dict[str, dict[str, float]]]


@dataclass(frozen=True)
class _Table:
    """The objects of all frames as flat arrays, grouped by frame (0, 1, ...) in file order."""

    frame: np.ndarray  # [N] int
    type: np.ndarray  # [N] lower-case names
    truncated: np.ndarray
    occluded: np.ndarray
    alpha: np.ndarray
    box: np.ndarray  # [N, 4] x1, y1, x2, y2
    box3d: np.ndarray  # [N, 7] h, w, l, x, y, z, rotation_y
    score: np.ndarray

    @classmethod
    def build(cls, frames: Sequence[Sequence[KittiObject]]) -> "_Table":
        objs = [o for objects in frames for o in objects]
        rows = np.array([[o.truncated, o.occluded, o.alpha, *o.bbox, *o.dimensions, *o.location,
                          o.rotation_y, np.nan if o.score is None else o.score] for o in objs]).reshape(-1, 15)
        return cls(frame=np.repeat(np.arange(len(frames)), [len(f) for f in frames]),
                   type=np.array([o.type.lower() for o in objs], dtype=object), truncated=rows[:, 0],
                   occluded=rows[:, 1], alpha=rows[:, 2], box=rows[:, 3:7], box3d=rows[:, 7:14],
                   score=rows[:, 14])


def _frame_pairs(frame_a: np.ndarray, frame_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All (i, j) with frame_a[i] == frame_b[j]; frame_b sorted. Returns index arrays, i-major."""
    start = np.searchsorted(frame_b, frame_a, "left")
    reps = np.searchsorted(frame_b, frame_a, "right") - start
    ia = np.repeat(np.arange(len(frame_a)), reps)
    offsets = np.arange(reps.sum()) - np.repeat(np.cumsum(reps) - reps, reps)
    return ia, np.repeat(start, reps) + offsets


def _average_precision(curve: np.ndarray, recall_points: int) -> float:
    """Percent. 11 points: samples 0, 4, ..., 40 (recall 0, 0.1, ..., 1); 40 points: samples 1..40."""
    samples = curve[:: (N_SAMPLES - 1) // 10] if recall_points == 11 else curve[1:]
    return float(np.mean(samples) * 100)


def _evaluate_class(gt: _Table, det: _Table, name: str, min_overlaps: tuple[float, float, float],
                    compute_aos: bool, recall_points: int) -> dict[str, dict[str, float]]:
    name = name.lower()
    of_class = det.type == name
    gi = np.flatnonzero(np.isin(gt.type, (name,) + NEIGHBOURS.get(name, ())))
    det_height = np.abs(det.box[:, 3] - det.box[:, 1])  # the devkit's int(h) < min iff h < min
    di = np.flatnonzero(of_class | (det_height < max(MIN_HEIGHT)))  # candidates at some difficulty
    ki, ci = np.flatnonzero(of_class), np.flatnonzero(gt.type == "dontcare")
    pair_gt, pair_det = _frame_pairs(gt.frame[gi], det.frame[di])
    dc_det, dc_region = _frame_pairs(det.frame[ki], gt.frame[ci])
    has_dets = len(ki) > 0
    evaluated = {"bbox": not has_dets or bool(np.any(det.box[ki, 0] >= 0)),
                 "bev": not has_dets or bool(np.any(det.box3d[ki, 3] != NO_LOCATION)),
                 "3d": not has_dets or bool(np.any(det.box3d[ki, 4] != NO_LOCATION))}
    gt_height = gt.box[gi, 3] - gt.box[gi, 1]
    sides = ((det.box3d[di][pair_det], gt.box3d[gi][pair_gt]), (det.box3d[ki][dc_det], gt.box3d[ci][dc_region]))
    if evaluated["bev"] or evaluated["3d"]:  # x-z intersections, shared by the two metrics
        inter = [bev_intersection(a, b) for a, b in sides]
    results: dict[str, dict[str, float]] = {}
    for metric, min_overlap in zip(("bbox", "bev", "3d"), min_overlaps):
        if not evaluated[metric]:
            continue
        if metric == "bbox":
            overlap = image_overlap(det.box[di][pair_det], gt.box[gi][pair_gt])
            in_region = image_overlap(det.box[ki][dc_det], gt.box[ci][dc_region], relative_to_first=True)
        else:
            fn = bev_overlap if metric == "bev" else box3d_overlap
            overlap = fn(*sides[0], intersection=inter[0])
            in_region = fn(*sides[1], relative_to_first=True, intersection=inter[1])
        in_region = in_region > min_overlap
        swallowed = np.zeros(len(det.frame), bool)
        swallowed[ki[np.unique(dc_det[in_region])]] = True
        results[metric] = {}
        if metric == "bbox" and compute_aos:
            results["aos"] = {}
        for d, difficulty in enumerate(DIFFICULTIES):
            gt_ignored = ((gt.type[gi] != name) | (gt.occluded[gi] > MAX_OCCLUSION[d])
                          | (gt.truncated[gi] > MAX_TRUNCATION[d]) | (gt_height < MIN_HEIGHT[d]))
            state = np.where(det_height[di] < MIN_HEIGHT[d], 1, np.where(of_class[di], 0, -1))
            inp = MatchInput(gt.frame[gi], gt_ignored, gt.alpha[gi], det.frame[di], state, det.score[di],
                             det.alpha[di], swallowed[di], pair_gt, pair_det, overlap)
            precision, similarity = precision_curves(inp, min_overlap)
            results[metric][difficulty] = _average_precision(precision, recall_points)
            if metric == "bbox" and compute_aos:
                results["aos"][difficulty] = _average_precision(similarity, recall_points)
    return results


def evaluate_kitti_labels(gt: Mapping[int, Sequence[KittiObject]], dets: Mapping[int, Sequence[KittiObject]],
                          overlaps: str | Mapping[str, tuple[float, float, float]] = "centernet",
                          recall_points: int = 11, classes: Sequence[str] = KITTI_CLASSES) -> Results:
    """AP in percent, ``results[class][metric][difficulty]``, of detections (with scores) against labels.

    Only the frames that are keys of ``dets`` are evaluated (as the devkit evaluates only frames with a
    result file); each must be a key of ``gt``. ``overlaps``: "centernet", "official", or a mapping
    lower-case class -> (2D, BEV, 3D) minimum overlap. ``recall_points``: 11 or 40. Metrics: "bbox",
    "aos", "bev", "3d". As the devkit: "aos" is left out if any detection has alpha -10; "bbox" / "bev" /
    "3d" for a class whose detections all lack it (x1 < 0 / x = -1000 / y = -1000). A class without
    detections scores 0 (the devkit prints nothing for it).
    """
    if recall_points not in (11, 40):
        raise ValueError(f"recall_points must be 11 or 40, got {recall_points}")
    table = OVERLAPS.get(overlaps) if isinstance(overlaps, str) else {k.lower(): v for k, v in overlaps.items()}
    if table is None:
        raise ValueError(f"unknown overlap set {overlaps!r}; expected one of {sorted(OVERLAPS)} or a mapping")
    unknown = [c for c in classes if c.lower() not in table]
    if unknown:
        raise ValueError(f"no minimum overlaps for classes {unknown}; known: {sorted(table)}")
    frames = sorted(dets)
    missing = [f for f in frames if f not in gt]
    if missing:
        raise KeyError(f"detections for frames without ground truth: {missing[:10]}")
    for f in frames:
        if any(o.score is None for o in dets[f]):
            raise ValueError(f"frame {f}: a detection has no score")
    gt_table = _Table.build([gt[f] for f in frames])
    det_table = _Table.build([dets[f] for f in frames])
    compute_aos = not bool(np.any(det_table.alpha == NO_ALPHA))
    return {c: _evaluate_class(gt_table, det_table, c, table[c.lower()], compute_aos, recall_points)
            for c in classes}


def _frame_files(folder: Path) -> dict[int, Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a folder")
    return {int(p.stem): p for p in folder.iterdir() if re.fullmatch(r"\d+\.txt", p.name)}


def evaluate_kitti(gt_dir: str | Path, det_dir: str | Path,
                   overlaps: str | Mapping[str, tuple[float, float, float]] = "centernet",
                   recall_points: int = 11, classes: Sequence[str] = KITTI_CLASSES) -> Results:
    """evaluate_kitti_labels on two folders of KITTI label files (%06d.txt; detections with a score).

    Every detection file's frame is evaluated and needs a label file of the same number in ``gt_dir``.
    """
    gt_dir, det_dir = Path(gt_dir), Path(det_dir)
    det_files = _frame_files(det_dir)
    gt, dets = {}, {}
    for frame, path in sorted(det_files.items()):
        gt_path = frame_file(gt_dir, frame)
        if not gt_path.is_file():
            raise FileNotFoundError(f"{gt_path}: no ground truth for detection file {path}")
        gt[frame] = read_kitti_labels(gt_path)
        dets[frame] = read_kitti_labels(path, with_score=True)
    return evaluate_kitti_labels(gt, dets, overlaps, recall_points, classes)


def format_kitti_table(results: Results) -> str:
    """A text table: one line per class and metric, columns easy / moderate / hard."""
    lines = [f"{'class':<12s} {'metric':<6s} " + " ".join(f"{d:>9s}" for d in DIFFICULTIES)]
    for name, metrics in results.items():
        for metric in METRICS:
            if metric in metrics:
                values = metrics[metric]
                lines.append(f"{name:<12s} {metric:<6s} "
                             + " ".join(f"{values[d]:9.2f}" if d in values else f"{'-':>9s}" for d in DIFFICULTIES))
    return "\n".join(lines)
