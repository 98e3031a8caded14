"""Synthetic KITTI labels and noisy detections derived from labels, for checking the evaluator against
the devkit (tests/test_kitti_eval.py) and for benchmarks (benchmarks/bench_kitti_eval.py). Objects are placed
in front of a KITTI-like camera and their 2D boxes are the projections of their 3D boxes (the corners of
:func:`centernet.data.kitti.box3d_corners`), so box heights, truncation and distance agree as in real labels.

Numbers are rounded to 2 decimals (scores to 3, so that ties occur) as KITTI's files hold them: written
and read back, they are the same floats. The output is a pure function of the seed.
"""
from __future__ import annotations

import math

import numpy as np

from centernet.data.kitti import box3d_corners
from centernet.data.kitti_labels import KittiObject
from centernet.data.synthetic_kitti import CAMERA_HEIGHT

FOCAL, CX, CY = 721.5, 609.6, 172.9  # KITTI's P2 (training frame 000000)
IMAGE_W, IMAGE_H = 1242, 375
# Mean (h, w, l) in metres and how often each type is drawn.
DIMENSIONS = {"Car": (1.53, 1.63, 3.88), "Van": (2.21, 1.90, 5.08), "Truck": (3.25, 2.59, 10.1),
              "Pedestrian": (1.76, 0.66, 0.84), "Person_sitting": (1.27, 0.59, 0.80), "Cyclist": (1.74, 0.60, 1.76)}
TYPE_WEIGHTS = {"Car": 8, "Van": 1.5, "Truck": 0.5, "Pedestrian": 3, "Person_sitting": 0.5, "Cyclist": 2}
# A detector's label confusions: true type -> (reported type, probability).
CONFUSIONS = {"Car": ("Cyclist", 0.03), "Van": ("Car", 0.5), "Person_sitting": ("Pedestrian", 0.5),
              "Truck": ("Car", 0.3), "Cyclist": ("Pedestrian", 0.05), "Pedestrian": ("Cyclist", 0.05)}


def _r(value: float, decimals: int = 2) -> float:
    scale = 10.0 ** decimals  # round half to even, then the nearest float to the decimal: exact on re-reading
    return round(float(value) * scale) / scale


def _wrap(angle: float) -> float:
    return (angle + math.pi) % (2 * math.pi) - math.pi


def project_box(dimensions: tuple[float, float, float], location: tuple[float, float, float],
                rotation_y: float) -> tuple[np.ndarray, float] | None:
    """The image box (x1, y1, x2, y2) of a 3D box clipped to the image and its truncation (the box area
    outside the image), or None when a corner is behind the camera or the box leaves the image."""
    cx, cy, cz = box3d_corners(dimensions, location, rotation_y).T
    if cz.min() < 0.5:
        return None
    u, v = FOCAL * cx / cz + CX, FOCAL * cy / cz + CY
    full = np.array([u.min(), v.min(), u.max(), v.max()])
    box = np.clip(full, 0, [IMAGE_W - 1, IMAGE_H - 1, IMAGE_W - 1, IMAGE_H - 1])
    if box[2] - box[0] < 2 or box[3] - box[1] < 2:
        return None
    area = (box[2] - box[0]) * (box[3] - box[1])
    return box, 1.0 - area / ((full[2] - full[0]) * (full[3] - full[1]))


def _object(type_: str, dims: np.ndarray, loc: tuple[float, float, float], ry: float, occluded: int,
            score: float | None = None) -> KittiObject | None:
    dims, loc, ry = tuple(_r(v) for v in dims), tuple(_r(v) for v in loc), _r(_wrap(ry))
    projected = project_box(dims, loc, ry)
    if projected is None:
        return None
    box, truncated = projected
    alpha = _r(_wrap(ry - math.atan2(loc[0], loc[2])))
    return KittiObject(type_, _r(truncated), occluded, alpha, tuple(_r(v) for v in box), dims, loc, ry,
                       None if score is None else _r(score, 3))


def random_object(rng: np.random.Generator, type_: str | None = None,
                  score: float | None = None) -> KittiObject | None:
    """An object of a random (or the given) type somewhere in view; None if it fell outside the image."""
    types = list(TYPE_WEIGHTS)
    weights = np.array([TYPE_WEIGHTS[t] for t in types])
    type_ = type_ or types[rng.choice(len(types), p=weights / weights.sum())]
    dims = np.array(DIMENSIONS[type_]) * rng.uniform(0.85, 1.15, 3)
    z = rng.uniform(4.0, 70.0)
    loc = (rng.uniform(-0.9, 0.9) * z, CAMERA_HEIGHT + rng.normal(0, 0.15), z)
    return _object(type_, dims, loc, rng.uniform(-math.pi, math.pi), int(rng.integers(0, 4)), score)


def _dontcare(rng: np.random.Generator) -> KittiObject:
    x1, y1 = rng.uniform(0, IMAGE_W - 100), rng.uniform(100, IMAGE_H - 60)
    box = (x1, y1, x1 + rng.uniform(10, 100), y1 + rng.uniform(8, 50))
    return KittiObject("DontCare", -1.0, -1, -10.0, tuple(_r(v) for v in box), (-1.0, -1.0, -1.0),
                       (-1000.0, -1000.0, -1000.0), -10.0)


def noisy_detections(objects: list[KittiObject], rng: np.random.Generator, noise: float = 1.0,
                     miss_rate: float = 0.15, false_positives: float = 1.5) -> list[KittiObject]:
    """Detections of ``objects``: jittered 2D boxes, locations, sizes and rotations (sometimes flipped),
    ``noise`` scaling every jitter; some confused labels, misses and duplicates, scores that fall with
    the error, Poisson(false_positives) random false positives, and one inside each DontCare region half
    of the time."""
    dets = []
    for obj in objects:
        if obj.type == "DontCare":
            if rng.random() < 0.5:
                x1, y1, x2, y2 = obj.bbox
                box = (_r(x1 + 1), _r(y1 + 1), _r(x2 - 1), _r(y2 - 1))
                dets.append(KittiObject("Car", 0.0, 0, -1.0, box, (1.5, 1.6, 3.9), (0.0, 1.6, 30.0), 0.0,
                                        _r(rng.uniform(0.05, 0.9), 3)))
            continue
        if obj.type not in DIMENSIONS or rng.random() < miss_rate:
            continue
        for duplicate in range(1 + int(rng.random() < 0.1)):
            type_ = obj.type
            if type_ in CONFUSIONS and rng.random() < CONFUSIONS[type_][1]:
                type_ = CONFUSIONS[type_][0]
            x1, y1, x2, y2 = obj.bbox
            size = np.array([x2 - x1, y2 - y1, x2 - x1, y2 - y1])
            jitter = rng.normal(0, 0.06 * noise, 4) * size
            b = np.array(obj.bbox) + jitter
            x1, x2, y1, y2 = min(b[0], b[2]), max(b[0], b[2]), min(b[1], b[3]), max(b[1], b[3])
            box = (x1, y1, max(x2, x1 + 1), max(y2, y1 + 1))
            z = obj.location[2]
            loc = (obj.location[0] + rng.normal(0, 0.01 * noise * z), obj.location[1] + rng.normal(0, 0.1 * noise),
                   z * math.exp(rng.normal(0, 0.03 * noise)))
            dims = np.array(obj.dimensions) * np.exp(rng.normal(0, 0.08 * noise, 3))
            ry = obj.rotation_y + rng.normal(0, 0.25 * noise) + (math.pi if rng.random() < 0.1 else 0.0)
            error = np.abs(jitter / size).mean() + abs(math.log(loc[2] / z))
            score = 1 / (1 + math.exp(-(2.5 - 25 * error + rng.normal(0, 1.0)))) * (0.6 if duplicate else 1.0)
            alpha = _r(_wrap(ry - math.atan2(loc[0], loc[2])))
            dets.append(KittiObject(type_, 0.0, 0, alpha, tuple(_r(v) for v in box), tuple(_r(v) for v in dims),
                                    tuple(_r(v) for v in loc), _r(_wrap(ry)), _r(score, 3)))
    for _ in range(rng.poisson(false_positives)):
        fp = random_object(rng, score=rng.uniform(0.0, 0.7))
        if fp is not None and fp.type in ("Car", "Pedestrian", "Cyclist", "Van"):
            dets.append(fp)
    return dets


def synthetic_kitti_labels(num_frames: int, seed: int = 0, max_objects: int = 12
                           ) -> tuple[dict[int, list[KittiObject]], dict[int, list[KittiObject]]]:
    """(labels, detections) of ``num_frames`` frames numbered 0..: 0..max_objects objects and 0..3
    DontCare regions per frame, detections from noisy_detections."""
    rng = np.random.default_rng(seed)
    gt, dets = {}, {}
    for frame in range(num_frames):
        objects = [random_object(rng) for _ in range(int(rng.integers(0, max_objects + 1)))]
        objects = [o for o in objects if o is not None]
        objects += [_dontcare(rng) for _ in range(int(rng.integers(0, 4)))]
        gt[frame] = objects
        dets[frame] = noisy_detections(objects, rng)
    return gt, dets
