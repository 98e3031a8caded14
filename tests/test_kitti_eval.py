"""KITTI evaluation: figures of the original devkit reproduced (tests/data/kitti_devkit_figures.json, made
by the compiled devkit on the same generated labels), hand-computed cases, overlaps and label files."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest

from centernet.evaluation.kitti import (DIFFICULTIES, evaluate_kitti, evaluate_kitti_labels,
                                        format_kitti_table)
from centernet.data.kitti_labels import KittiObject, format_kitti_line, read_kitti_labels, write_kitti_labels
from centernet.evaluation.rotated_iou import bev_overlap, box3d_overlap, image_overlap
from helpers.kitti_synthetic import noisy_detections, synthetic_kitti_labels

FIGURES = Path(__file__).parent / "data" / "kitti_devkit_figures.json"
TOLERANCE = 0.01  # AP points


def _digest(gt: dict, dets: dict) -> str:
    h = hashlib.sha256()
    for f in sorted(gt):
        h.update(f"{f}\n".encode())
        for o in gt[f]:
            h.update((format_kitti_line(o) + "\n").encode())
        h.update(b"--\n")
        for o in dets.get(f, []):
            h.update((format_kitti_line(o) + "\n").encode())
    return h.hexdigest()


def _write(root: Path, gt: dict, dets: dict) -> tuple[Path, Path]:
    (root / "gt").mkdir(), (root / "det").mkdir()
    for f in gt:
        write_kitti_labels(root / "gt" / f"{f:06d}.txt", gt[f])
    for f in dets:
        write_kitti_labels(root / "det" / f"{f:06d}.txt", dets[f])
    return root / "gt", root / "det"


def _check_against_devkit(gt: dict, dets: dict, devkit: dict, tmp_path: Path) -> None:
    gt_dir, det_dir = _write(tmp_path, gt, dets)
    for overlaps, by_points in devkit.items():
        for points, printed in by_points.items():
            mine = evaluate_kitti(gt_dir, det_dir, overlaps=overlaps, recall_points=int(points))
            for cls, metrics in printed.items():
                assert set(mine[cls]) == set(metrics), (overlaps, points, cls)
                for metric, values in metrics.items():  # [easy, moderate, hard]
                    for d, value in zip(DIFFICULTIES, values):
                        assert mine[cls][metric][d] == pytest.approx(value, abs=TOLERANCE), \
                            (overlaps, points, cls, metric, d)


def test_synthetic_frames_match_devkit(tmp_path):
    spec = json.loads(FIGURES.read_text())["synthetic"]
    gt, dets = synthetic_kitti_labels(spec["num_frames"], seed=spec["seed"])
    assert _digest(gt, dets) == spec["labels_sha256"], "the generator changed: regenerate the devkit figures"
    _check_against_devkit(gt, dets, spec["devkit"], tmp_path)


def test_real_frames_match_devkit(shared_data, tmp_path):
    label_dir = shared_data / "kitti_mini" / "training" / "label_2"
    gt = {f: read_kitti_labels(label_dir / f"{f:06d}.txt") for f in range(3)}
    for case in json.loads(FIGURES.read_text())["real_frames"]:
        rng = np.random.default_rng(case["seed"])
        dets = {f: noisy_detections(objs, rng, noise=case["noise"], false_positives=case["false_positives"])
                for f, objs in gt.items()}
        assert _digest(gt, dets) == case["labels_sha256"]
        root = tmp_path / f"seed{case['seed']}"
        root.mkdir()
        _check_against_devkit(gt, dets, case["devkit"], root)


# --- hand-computed cases -------------------------------------------------------------------------------

def _car(x1: float = 100.0, height: float = 50.0, z: float = 20.0, type_: str = "Car", occluded: int = 0,
         score: float | None = None, x: float = 0.0) -> KittiObject:
    return KittiObject(type_, 0.0, occluded, 0.3, (x1, 100.0, x1 + 80.0, 100.0 + height), (1.5, 1.6, 3.9),
                       (x, 1.6, z), 0.3, score)


def _dontcare(box: tuple[float, float, float, float]) -> KittiObject:
    return KittiObject("DontCare", -1.0, -1, -10.0, box, (-1.0, -1.0, -1.0), (-1000.0, -1000.0, -1000.0), -10.0)


def _perfect(num: int) -> tuple[dict, dict]:
    """num frames with one easy car each, detected exactly (distinct scores)."""
    gt = {f: [_car()] for f in range(num)}
    dets = {f: [dataclasses.replace(gt[f][0], score=0.9 - f / 1000)] for f in range(num)}
    return gt, dets


def test_perfect_detections_score_100():
    gt, dets = _perfect(41)
    for points in (11, 40):
        car = evaluate_kitti_labels(gt, dets, recall_points=points)["Car"]
        assert set(car) == {"bbox", "aos", "bev", "3d"}
        for metric in car:
            assert all(car[metric][d] == pytest.approx(100.0) for d in DIFFICULTIES)


def test_single_object_fills_one_sample():
    # The devkit fills its precision samples one per recall threshold: one found object is sample 0 only.
    gt, dets = _perfect(1)
    assert evaluate_kitti_labels(gt, dets)["Car"]["bbox"]["easy"] == pytest.approx(100 / 11)
    assert evaluate_kitti_labels(gt, dets, recall_points=40)["Car"]["bbox"]["easy"] == 0.0


def test_one_miss_of_41():
    gt, dets = _perfect(41)
    dets[40] = []
    # 40 true positives, no false positive: thresholds fill samples 0..39 with precision 1, sample 40 is 0.
    assert evaluate_kitti_labels(gt, dets)["Car"]["bbox"]["easy"] == pytest.approx(10 / 11 * 100)
    assert evaluate_kitti_labels(gt, dets, recall_points=40)["Car"]["bbox"]["easy"] == pytest.approx(39 / 40 * 100)
    dets = {f: [] for f in gt}
    assert evaluate_kitti_labels(gt, dets)["Car"]["bbox"]["easy"] == 0.0


def test_dontcare_swallows_a_false_positive():
    gt, dets = _perfect(41)
    fp = _car(x1=600.0, score=0.99, z=60.0, x=10.0)  # highest score, overlaps nothing
    dets[0] = dets[0] + [fp]
    lowered = evaluate_kitti_labels(gt, dets)["Car"]
    assert lowered["bbox"]["easy"] < 99.0
    gt[0] = gt[0] + [_dontcare((595.0, 95.0, 690.0, 160.0))]  # covers the detection
    swallowed = evaluate_kitti_labels(gt, dets)["Car"]
    assert swallowed["bbox"]["easy"] == pytest.approx(100.0)
    # The region has no 3D box (location -1000), so the detection stays a false positive in BEV, as the devkit.
    assert swallowed["bev"]["easy"] == pytest.approx(lowered["bev"]["easy"])
    assert lowered["bev"]["easy"] < 99.0


def test_min_height_of_detections_and_objects():
    gt, dets = _perfect(41)
    dets[0] = dets[0] + [_car(x1=600.0, height=30.0, score=0.99, z=60.0, x=10.0)]  # 30 px: below easy's 40
    car = evaluate_kitti_labels(gt, dets)["Car"]["bbox"]
    assert car["easy"] == pytest.approx(100.0) and car["moderate"] < 99.0
    gt, dets = _perfect(41)
    gt[0] = gt[0] + [_car(x1=600.0, height=30.0, z=60.0, x=10.0)]  # missed, too small for easy
    car = evaluate_kitti_labels(gt, dets)["Car"]["bbox"]
    assert car["easy"] == pytest.approx(100.0) and car["moderate"] < 99.0


def test_neighbouring_class_is_ignored_other_classes_are_not():
    gt, dets = _perfect(41)
    gt[0] = gt[0] + [_car(x1=600.0, type_="Van", z=60.0, x=10.0)]
    dets[0] = dets[0] + [_car(x1=600.0, score=0.99, z=60.0, x=10.0)]  # a Car detection on the Van
    assert evaluate_kitti_labels(gt, dets)["Car"]["bbox"]["easy"] == pytest.approx(100.0)
    gt[0][1] = dataclasses.replace(gt[0][1], type="Truck")
    assert evaluate_kitti_labels(gt, dets)["Car"]["bbox"]["easy"] < 99.0


def test_official_overlaps_are_stricter_in_bev():
    gt, dets = _perfect(41)
    # Shift every detection 1 m along the car's length: BEV IoU ~ 0.59, between 0.5 and 0.7.
    shifted = {f: [dataclasses.replace(o, location=(o.location[0] + math.cos(0.3), 1.6,
                                                    o.location[2] - math.sin(0.3))) for o in ds]
               for f, ds in dets.items()}
    assert evaluate_kitti_labels(gt, shifted)["Car"]["bev"]["easy"] == pytest.approx(100.0)
    assert evaluate_kitti_labels(gt, shifted, overlaps="official")["Car"]["bev"]["easy"] == 0.0


# --- overlaps -----------------------------------------------------------------------------------------

def _box3d(x: float, z: float, l: float, w: float, ry: float, h: float = 1.0, y: float = 0.0) -> np.ndarray:
    return np.array([[h, w, l, x, y, z, ry]])


def test_rotated_square_overlap_is_the_octagon():
    a, b = _box3d(0, 10, 2, 2, 0.0), _box3d(0, 10, 2, 2, math.pi / 4)
    octagon = 8 * (math.sqrt(2) - 1)  # a 2x2 square and the same turned 45 degrees share a regular octagon
    assert bev_overlap(a, b)[0] == pytest.approx(octagon / (8 - octagon), rel=1e-12)
    assert bev_overlap(a, b, relative_to_first=True)[0] == pytest.approx(octagon / 4, rel=1e-12)
    # Half the height shared (y is the bottom, boxes span [y - h, y]): half the intersection volume.
    c = _box3d(0, 10, 2, 2, math.pi / 4, y=0.5)
    assert box3d_overlap(a, c)[0] == pytest.approx(octagon / 2 / (8 - octagon / 2), rel=1e-12)


def test_rectangle_overlaps_by_hand():
    a = _box3d(0, 10, 4, 2, 0.0)
    assert bev_overlap(a, _box3d(0, 10, 4, 2, math.pi / 2))[0] == pytest.approx(4 / 12)  # a 2x2 cross
    assert bev_overlap(a, _box3d(1, 10, 4, 2, 0.0))[0] == pytest.approx(6 / 10)  # shifted 1 m along l
    assert bev_overlap(a, _box3d(5, 10, 4, 2, 0.3))[0] == 0.0
    assert bev_overlap(a, a)[0] == pytest.approx(1.0)
    boxes = np.array([[0, 0, 10, 10], [5, 5, 15, 15]], float)
    assert image_overlap(boxes[:1], boxes[1:])[0] == pytest.approx(25 / 175)  # no +1 on widths
    assert image_overlap(boxes[:1], boxes[1:], relative_to_first=True)[0] == pytest.approx(25 / 100)


def test_bev_overlap_is_symmetric_and_rigid_invariant():
    rng = np.random.default_rng(0)
    n = 500
    a = np.column_stack([np.ones(n), rng.uniform(0.5, 3, n), rng.uniform(0.5, 5, n), rng.uniform(-2, 2, n),
                         np.zeros(n), rng.uniform(-2, 2, n), rng.uniform(-np.pi, np.pi, n)])
    b = np.column_stack([np.ones(n), rng.uniform(0.5, 3, n), rng.uniform(0.5, 5, n), rng.uniform(-2, 2, n),
                         np.zeros(n), rng.uniform(-2, 2, n), rng.uniform(-np.pi, np.pi, n)])
    iou = bev_overlap(a, b)
    assert np.allclose(iou, bev_overlap(b, a)) and (iou > 0).mean() > 0.3 and iou.max() <= 1 + 1e-12
    theta, shift = 0.7, np.array([3.0, -1.0])  # rotate both boxes about the origin, then translate

    def move(boxes: np.ndarray) -> np.ndarray:
        out = boxes.copy()
        c, s = math.cos(theta), math.sin(theta)  # the devkit's rotation maps (x, z) by [[c, s], [-s, c]]
        out[:, 3] = c * boxes[:, 3] + s * boxes[:, 5] + shift[0]
        out[:, 5] = -s * boxes[:, 3] + c * boxes[:, 5] + shift[1]
        out[:, 6] = boxes[:, 6] + theta
        return out

    assert np.allclose(bev_overlap(move(a), move(b)), iou, atol=1e-9)


# --- label files and errors ---------------------------------------------------------------------------

def test_label_files_round_trip(tmp_path):
    gt, dets = synthetic_kitti_labels(5, seed=3)
    for f in gt:
        write_kitti_labels(tmp_path / "gt.txt", gt[f])
        write_kitti_labels(tmp_path / "det.txt", dets[f])
        assert read_kitti_labels(tmp_path / "gt.txt", with_score=False) == gt[f]
        assert read_kitti_labels(tmp_path / "det.txt", with_score=True) == dets[f]
    obj = _car(score=0.123456789)
    write_kitti_labels(tmp_path / "two.txt", [obj], decimals=2)
    line = (tmp_path / "two.txt").read_text().split()
    assert line[2] == "0" and line[4] == "100.00" and line[-1] == "0.123456789"


@pytest.mark.parametrize("line, message", [
    ("Car 0 0 0.3 1 2 3 4 1.5 1.6 3.9 0 1.6", "expected 15 fields"),
    ("Car 0 0 abc 1 2 3 4 1.5 1.6 3.9 0 1.6 20 0.3", "field 'alpha' is not a number: 'abc'"),
    ("Car 0 0.5 0.3 1 2 3 4 1.5 1.6 3.9 0 1.6 20 0.3", "field 'occluded' is not an integer"),
])
def test_malformed_line_names_file_and_line(tmp_path, line, message):
    path = tmp_path / "000007.txt"
    path.write_text(format_kitti_line(_car()) + "\n\n" + line + "\n")
    with pytest.raises(ValueError, match=f"000007.txt:3: {message}"):
        read_kitti_labels(path)


def test_folder_errors(tmp_path):
    gt, dets = _perfect(2)
    gt_dir, det_dir = _write(tmp_path, gt, dets)
    write_kitti_labels(det_dir / "000005.txt", dets[0])
    with pytest.raises(FileNotFoundError, match="000005.txt: no ground truth"):
        evaluate_kitti(gt_dir, det_dir)
    (det_dir / "000005.txt").unlink()
    write_kitti_labels(det_dir / "000001.txt", gt[1])  # no score column
    with pytest.raises(ValueError, match="000001.txt:1: expected 16 fields"):
        evaluate_kitti(gt_dir, det_dir)
    with pytest.raises(ValueError, match="recall_points"):
        evaluate_kitti_labels(gt, dets, recall_points=12)
    with pytest.raises(ValueError, match="no minimum overlaps"):
        evaluate_kitti_labels(gt, dets, classes=("Tram",))


def test_only_frames_with_detections_count_and_table():
    gt, dets = _perfect(41)
    gt[99] = [_car()]  # never detected, but it has no detection entry: not evaluated
    results = evaluate_kitti_labels(gt, dets)
    assert results["Car"]["bbox"]["easy"] == pytest.approx(100.0)
    assert results["Pedestrian"]["bbox"]["easy"] == 0.0  # no pedestrians at all
    no_orientation = {f: [dataclasses.replace(o, alpha=-10.0) for o in ds] for f, ds in dets.items()}
    assert "aos" not in evaluate_kitti_labels(gt, no_orientation)["Car"]
    table = format_kitti_table(results)
    assert table.splitlines()[0].split() == ["class", "metric", "easy", "moderate", "hard"]
    assert "Car          bbox      100.00    100.00    100.00" in table
