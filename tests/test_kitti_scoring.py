"""The KITTI scorer on in-memory results: ground truth from the reader (DontCare once, ignore types kept),
detections from result dicts, flat metrics and headline, the table, result files, 2D-only results."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from centernet.data import KittiDetection
from centernet.data.kitti import DONT_CARE_CLASS, read_label_file
from centernet.data.kitti_labels import KITTI_TYPES
from centernet.data.sample import DetectionSource, Sample
from centernet.data.synthetic_kitti import make_synthetic_kitti
from centernet.evaluation.scoring import SCORERS, CocoScorer, Scorers

kitti = pytest.importorskip("centernet.evaluation.kitti")
from centernet.evaluation.kitti_scoring import KittiScorer, ground_truth_objects, label_results  # noqa: E402


FRAMES = 45  # the devkit samples precision at up to 41 recall points: 100 AP needs more objects than that
CLASSES = ("Pedestrian", "Car", "Cyclist")
# per trained class: (h, w, l) metres, x metres, 2D box (x1, y1, x2, y2) pixels; all 60 px tall
OBJECTS = {"Pedestrian": ((1.8, 0.6, 0.8), -4.0, (400, 150, 430, 210)),
           "Car": ((1.5, 1.6, 3.9), 0.0, (560, 160, 660, 220)),
           "Cyclist": ((1.7, 0.6, 1.8), 4.0, (760, 150, 800, 210))}
VAN = ((2.0, 1.9, 5.0), 9.0, (900, 140, 1000, 200))
DONT_CARE_BOX = (100, 150, 200, 200)


def in_memory_source() -> DetectionSource:
    """FRAMES frames, each with one easy Pedestrian, Car and Cyclist at 15 m, a Van (ignore on Car) and a
    DontCare region (one row per class channel, as KittiDetection keeps it); no images."""
    samples = []
    for frame in range(FRAMES):
        rows = [(CLASSES.index(n), -1, n, *OBJECTS[n]) for n in CLASSES]
        rows.append((CLASSES.index("Car"), CLASSES.index("Car"), "Van", *VAN))
        rows += [(c, DONT_CARE_CLASS, "DontCare", (-1, -1, -1), -1000.0, DONT_CARE_BOX) for c in range(3)]
        ry = 0.1 * frame
        samples.append(Sample(
            image_id=frame, path=Path(f"{frame:06d}.png"), width=1242, height=375,
            boxes=np.array([r[5] for r in rows], np.float32), labels=np.array([r[0] for r in rows]),
            ignore=np.array([r[1] != -1 for r in rows]), calib=np.eye(3, 4, dtype=np.float32),
            extra={"dim": np.array([r[3] for r in rows], np.float32),
                   "loc": np.array([(r[4], 1.6, 15.0) for r in rows], np.float32),
                   "rot_y": np.full(len(rows), ry, np.float32), "alpha": np.full(len(rows), ry, np.float32),
                   "trunc": np.zeros(len(rows), np.float32), "occ": np.zeros(len(rows), np.int64),
                   "type_id": np.array([KITTI_TYPES.index(r[2]) for r in rows]),
                   "ignore_class": np.array([r[1] for r in rows])}))
    source = DetectionSource()
    source.class_names, source.samples = list(CLASSES), samples
    return source


@pytest.fixture(scope="module")
def memory():
    return in_memory_source()


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    paths = make_synthetic_kitti(tmp_path_factory.mktemp("synk"), num_train=0, num_val=10, size=(1242, 375), seed=4)
    return KittiDetection(paths["root"], split="val", class_names=CLASSES)


def moved(results: list[dict], class_id: int, dz: float = 0.0, score: float | None = None) -> list[dict]:
    """``results`` with the depth of class ``class_id`` (category id) moved by ``dz`` (and its score set)."""
    out = []
    for r in results:
        r = dict(r, location=list(r["location"]))
        if r["category_id"] == class_id:
            r["location"][2] += dz
            r["score"] = r["score"] if score is None else score
        out.append(r)
    return out


def test_ground_truth_has_every_type_the_devkit_needs_once(shared_data):
    source = KittiDetection(shared_data / "kitti_mini")
    frame = source.samples[1]  # Truck, Car, Cyclist, 4 DontCare (Misc / Tram are dropped)
    labels = [o.type for o in read_label_file(shared_data / "kitti_mini/training/label_2/000001.txt")]
    objects = ground_truth_objects(frame)
    assert sorted(o.type for o in objects) == sorted(t for t in labels if t not in ("Misc", "Tram"))
    car = next(o for o in objects if o.type == "Car")
    assert car.location == pytest.approx((-16.53, 2.39, 58.49)) and car.dimensions == pytest.approx((1.67, 1.87, 3.69))
    assert car.score is None and car.occluded == 0


def test_perfect_results_score_100_and_a_depth_error_only_hurts_3d(memory):
    scorer = SCORERS.get("kitti")(memory)
    scorer.add(label_results(memory))
    perfect = scorer.result()
    assert scorer.headline == "kitti_3d_moderate"
    for name in CLASSES:
        for metric in ("bbox", "aos", "bev", "3d"):
            for difficulty in ("easy", "moderate", "hard"):
                assert perfect[f"{name}_{metric}_{difficulty}"] == pytest.approx(1.0)
                assert perfect[f"{name}_{metric}_{difficulty}_R40"] == pytest.approx(1.0)
    assert perfect["kitti_3d_moderate"] == pytest.approx(1.0)
    shifted = KittiScorer(memory)
    shifted.add(moved(label_results(memory), CLASSES.index("Car") + 1, dz=3.0))  # 3 m: no 3D overlap
    worse = shifted.result()
    assert worse["Car_bbox_moderate"] == pytest.approx(1.0) and worse["Car_aos_moderate"] == pytest.approx(1.0)
    assert worse["Car_3d_moderate"] == 0.0 and worse["Car_bev_moderate"] == 0.0
    assert worse["Pedestrian_3d_moderate"] == pytest.approx(1.0)
    assert worse["kitti_3d_moderate"] == pytest.approx(2 / 3)  # the mean over the three classes


def test_van_and_dont_care_absorb_detections(memory):
    """A Car detection on the Van or inside the DontCare region is no false positive; elsewhere it is."""
    car = CLASSES.index("Car") + 1
    base = label_results(memory)
    extra = []
    for frame in range(FRAMES):
        for box in (VAN[2], DONT_CARE_BOX):
            x1, y1, x2, y2 = box
            extra.append(dict(base[0], image_id=frame, category_id=car, score=2.0, bbox=[x1, y1, x2 - x1, y2 - y1],
                              location=[VAN[1], 1.6, 15.0], dimensions=list(VAN[0])))
    absorbed = KittiScorer(memory)
    absorbed.add(base + extra)
    assert absorbed.result()["Car_bbox_moderate"] == pytest.approx(1.0)
    stray = KittiScorer(memory)  # the same detections 300 px lower: false positives ranked first
    stray.add(base + [dict(r, bbox=[r["bbox"][0], r["bbox"][1] + 300] + r["bbox"][2:]) for r in extra[::2]])
    assert stray.result()["Car_bbox_moderate"] < 0.6


def test_no_results_score_zero_and_2d_results_score_2d_only(memory):
    assert KittiScorer(memory).result()["kitti_3d_moderate"] == 0.0
    flat = KittiScorer(memory)
    flat.add([{k: r[k] for k in ("image_id", "category_id", "score", "bbox")} for r in label_results(memory)])
    metrics = flat.result()
    assert metrics["Car_bbox_moderate"] == pytest.approx(1.0) and metrics["kitti_bbox_moderate"] == pytest.approx(1.0)
    assert not any(("_3d_" in k or "_bev_" in k or "_aos_" in k) for k in metrics if k != "kitti_3d_moderate")


def test_result_files_read_back_to_the_same_figures(synthetic, tmp_path):
    scorer = KittiScorer(synthetic)
    results = moved(label_results(synthetic), synthetic.class_names.index("Car") + 1, dz=0.4, score=0.5)
    scorer.add(results[: len(results) // 2])
    scorer.merge([results[len(results) // 2:]])  # a sharded run's other half
    metrics = scorer.result()
    paths = scorer.write(tmp_path / "det")
    assert [p.name for p in paths] == [f"{s.image_id:06d}.txt" for s in synthetic.samples]
    gt_dir = synthetic.label_dir
    from_files = kitti.evaluate_kitti(gt_dir, tmp_path / "det", classes=scorer.classes)
    for name in scorer.classes:  # 2-decimal files: the same AP
        for metric, values in from_files[name].items():
            for difficulty, value in values.items():
                assert metrics[f"{name}_{metric}_{difficulty}"] == pytest.approx(value / 100, abs=0.01)
    table = scorer.report()
    assert "11 recall points" in table and "40 recall points" in table and "Cyclist" in table


def test_composite_forwards_report_and_write_and_rejects_unknown_images(synthetic, tmp_path):
    both = Scorers([KittiScorer(synthetic), CocoScorer(synthetic)])
    both.add(label_results(synthetic))
    metrics = both.result()
    assert both.headline == "kitti_3d_moderate" and metrics["AP50"] == pytest.approx(1.0)
    assert "KITTI AP" in both.report() and len(both.write(tmp_path / "w")) == len(synthetic)
    stray = KittiScorer(synthetic)
    stray.add([dict(label_results(synthetic)[0], image_id=999)])
    with pytest.raises(ValueError, match="999"):
        stray.result()
