"""KITTI object reader (real frames and bad input), the synthetic KITTI generator, and the 3D drawing helpers."""
from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from centernet.data import DataError, KittiDetection, open_dataset
from centernet.data.kitti import box3d_corners, project_to_image, read_calib, read_label_file
from centernet.data.kitti_labels import KITTI_TYPES
from centernet.data.synthetic_kitti import kitti_like_p2, make_synthetic_kitti
from centernet.evaluation.coco import coco_ground_truth, detections_to_coco, evaluate_coco
from centernet.viz.boxes3d import GT_COLOR, PRED_COLOR, draw_birds_eye, draw_box3d

CAR, PED, CYC = 0, 1, 2


@pytest.fixture(scope="module")
def kitti_root(shared_data) -> Path:
    return shared_data / "kitti_mini"


@pytest.fixture
def kitti_copy(kitti_root, tmp_path) -> Path:
    """A writable copy of kitti_mini (object layout under training/)."""
    shutil.copytree(kitti_root, tmp_path / "kitti")
    return tmp_path / "kitti"


def test_real_frames_classes_ignore_regions_and_3d_fields(kitti_root):
    source = KittiDetection(kitti_root)
    assert source.class_names == ["Car", "Pedestrian", "Cyclist"]
    assert [s.image_id for s in source.samples] == [0, 1, 2]
    ped, busy, last = source.samples
    for sample in source.samples:  # sizes from the PNG header agree with decoding
        assert (sample.width, sample.height) == cv2.imread(str(sample.path)).shape[1::-1]
    assert (ped.width, ped.height) == (1224, 370)
    assert ped.labels.tolist() == [PED] and not ped.ignore.any()
    np.testing.assert_allclose(ped.boxes[0], [712.40, 143.00, 810.73, 307.92], rtol=1e-6)
    np.testing.assert_allclose(ped.extra["dim"][0], [1.89, 0.48, 1.20], rtol=1e-6)
    np.testing.assert_allclose(ped.extra["loc"][0], [1.84, 1.47, 8.41], rtol=1e-6)
    assert ped.extra["rot_y"][0] == pytest.approx(0.01) and ped.extra["alpha"][0] == pytest.approx(-0.20)
    # Truck: ignore on Car only; Car and Cyclist trained; 4 DontCare regions: one ignore row per class each.
    assert busy.labels.tolist() == [CAR, CAR, CYC] + [CAR, PED, CYC] * 4
    assert busy.ignore.tolist() == [True, False, False] + [True] * 12
    assert busy.extra["ignore_class"].tolist() == [CAR, -1, -1] + [-2] * 12
    assert [KITTI_TYPES[t] for t in busy.extra["type_id"][:4]] == ["Truck", "Car", "Cyclist", "DontCare"]
    assert busy.extra["occ"][2] == 3 and busy.extra["trunc"][2] == 0
    np.testing.assert_allclose(busy.boxes[3::3], [[503.89, 169.71, 590.61, 190.13], [511.35, 174.96, 527.81, 187.45],
                                                  [532.37, 176.35, 542.68, 185.27], [559.62, 175.83, 575.40, 183.15]])
    assert last.labels.tolist() == [CAR] and not last.ignore.any()  # Misc dropped
    # P2 exactly as the file's third line
    line = (kitti_root / "training" / "calib" / "000000.txt").read_text().splitlines()[2].split()
    assert line[0] == "P2:"
    np.testing.assert_array_equal(ped.calib, np.array(line[1:], dtype=np.float32).reshape(3, 4))
    assert ped.calib[0, 0] == pytest.approx(707.0493) and ped.calib[0, 3] == pytest.approx(45.75831)
    # keypoint: the projected 3D box centre
    centre = ped.extra["loc"][0] - [0, ped.extra["dim"][0, 0] / 2, 0]
    np.testing.assert_allclose(ped.keypoints[0, 0, :2], project_to_image(centre[None], ped.calib)[0], rtol=1e-5)
    assert ped.keypoints[0, 0, 2] == 1 and busy.keypoints[3, 0, 2] == 0  # DontCare has no 3D centre


def test_root_variants_class_subset_and_open_dataset(kitti_root):
    assert len(KittiDetection(kitti_root / "training")) == 3
    opened = open_dataset(kitti_root)
    assert isinstance(opened, KittiDetection) and len(opened) == 3
    cars = KittiDetection(kitti_root, class_names=["Car"])
    busy = cars.samples[1]
    assert busy.labels.tolist() == [0] * 6 and busy.ignore.tolist() == [True, False] + [True] * 4
    assert len(cars.samples[0]) == 0  # the pedestrian is not a class: dropped
    with pytest.raises(DataError, match="subset"):
        KittiDetection(kitti_root, class_names=["Car", "Van"])


def test_split_files(kitti_copy, tmp_path):
    (kitti_copy / "ImageSets").mkdir()
    (kitti_copy / "ImageSets" / "val.txt").write_text("000001\n000002\n")
    val = KittiDetection(kitti_copy, split="val")
    assert [s.image_id for s in val.samples] == [1, 2]
    assert len(KittiDetection(kitti_copy / "training", split="val")) == 2  # ImageSets next to training/
    own = tmp_path / "mine.txt"
    own.write_text("000002\n")
    assert [s.image_id for s in KittiDetection(kitti_copy, split=own).samples] == [2]
    with pytest.raises(DataError, match="train"):
        KittiDetection(kitti_copy, split="train")
    own.write_text("000002\n000007\n")
    with pytest.raises(DataError, match=r"mine\.txt:2: frame '000007'"):
        KittiDetection(kitti_copy, split=own)


@pytest.mark.parametrize("damage, message", [
    (lambda r: (r / "label_2" / "000002.txt").write_text("Car 0.00 0 1.0 1 2 3\n"), r"000002\.txt:1: expected 15"),
    (lambda r: (r / "label_2" / "000002.txt").write_text("Boat " + "0 " * 14 + "\n"), r"000002\.txt:1: unknown"),
    (lambda r: (r / "label_2" / "000000.txt").write_text("Car 0 0 x" + " 0" * 11 + "\n"), r"000000\.txt:1: non-numeric"),
    (lambda r: (r / "calib" / "000001.txt").unlink(), r"calibration file not found: .*000001\.txt"),
    (lambda r: (r / "calib" / "000001.txt").write_text("P0: 1 2 3\n"), r"000001\.txt: no 'P2:'"),
    (lambda r: (r / "calib" / "000001.txt").write_text("P2: 1 2 3\n"), r"000001\.txt:1: P2 has 3 values"),
    (lambda r: (r / "image_2" / "000002.png").unlink(), r"000002\.txt: image .*000002\.png not found"),
])
def test_bad_input_names_the_file(kitti_copy, damage, message):
    damage(kitti_copy / "training")
    with pytest.raises(DataError, match=message):
        KittiDetection(kitti_copy)


def test_read_helpers(kitti_root):
    objects = read_label_file(kitti_root / "training" / "label_2" / "000001.txt")
    assert [o.type for o in objects][:3] == ["Truck", "Car", "Cyclist"] and objects[0].score is None
    assert objects[1].loc == (-16.53, 2.39, 58.49)
    assert read_calib(kitti_root / "training" / "calib" / "000001.txt")[0, 0] == pytest.approx(721.5377)


def test_coco_box_ground_truth_dont_care_is_crowd_for_every_class(kitti_root):
    source = KittiDetection(kitti_root)
    gt = coco_ground_truth(source)
    results = []
    for s in source.samples:  # every trained object found exactly, score 0.8
        keep = ~s.ignore
        rows = np.concatenate([s.boxes[keep], np.full((keep.sum(), 1), 0.8), s.labels[keep, None]], axis=1)
        results += detections_to_coco(rows, s.image_id, [1, 2, 3])
    perfect = evaluate_coco(gt, results)["AP"]
    assert perfect == pytest.approx(1.0)
    # a Pedestrian and a Cyclist detection on a DontCare region and a Car on the Truck cost nothing
    busy = source.samples[1]
    extra = np.array([[*busy.boxes[4], 0.9, PED], [*busy.boxes[5], 0.9, CYC], [*busy.boxes[0], 0.9, CAR]])
    assert evaluate_coco(gt, results + detections_to_coco(extra, 1, [1, 2, 3]))["AP"] == pytest.approx(perfect)
    # ... but a Pedestrian on the Truck is a false positive, ranked above the true pedestrian
    wrong = np.array([[*busy.boxes[0], 0.95, PED]])
    assert evaluate_coco(gt, results + detections_to_coco(wrong, 1, [1, 2, 3]))["AP"] < perfect


def test_synthetic_kitti_reads_back_consistently(tmp_path):
    paths = make_synthetic_kitti(tmp_path / "a", num_train=6, num_val=2, size=(320, 96), seed=3)
    train, val = KittiDetection(paths["root"], split="train"), KittiDetection(paths["root"], split="val")
    assert [s.image_id for s in train.samples] == list(range(6)) and [s.image_id for s in val.samples] == [6, 7]
    p2 = kitti_like_p2(320, 96)
    objects = 0
    for s in train.samples + val.samples:
        assert (s.width, s.height) == (320, 96)
        np.testing.assert_allclose(s.calib, p2, rtol=1e-6)
        assert not s.ignore.any() and len(s) >= 1
        image = cv2.imread(str(s.path)).astype(np.float32)
        for k in range(len(s)):
            objects += 1
            pts = project_to_image(box3d_corners(s.extra["dim"][k], s.extra["loc"][k], s.extra["rot_y"][k]), s.calib)
            extent = np.concatenate([pts.min(0).clip(0), pts.max(0).clip(None, [319, 95])])
            np.testing.assert_allclose(s.boxes[k], extent, atol=0.006)  # the label's 2-decimal rounding
            assert 5 <= s.extra["loc"][k, 2] <= 40 and 0 <= s.extra["trunc"][k] <= 0.7
            x1, y1, x2, y2 = np.round(s.boxes[k]).astype(int)
            road = image[int(s.calib[1, 2]) + 2:, :8].mean(axis=(0, 1))
            if s.extra["occ"][k] == 0 and (x2 - x1) * (y2 - y1) >= 16:  # drawn: the box is not plain road
                assert np.abs(image[y1:y2, x1:x2].mean(axis=(0, 1)) - road).max() > 10
    assert objects >= 8
    again = make_synthetic_kitti(tmp_path / "b", num_train=6, num_val=2, size=(320, 96), seed=3)
    other = make_synthetic_kitti(tmp_path / "c", num_train=6, num_val=2, size=(320, 96), seed=4)
    for rel in ("training/image_2/000004.png", "training/label_2/000004.txt", "training/calib/000004.txt",
                "ImageSets/val.txt"):
        assert (paths["root"] / rel).read_bytes() == (again["root"] / rel).read_bytes()
    assert (paths["root"] / "training/label_2/000004.txt").read_bytes() != \
        (other["root"] / "training/label_2/000004.txt").read_bytes()


def test_box_corners_and_drawings():
    corners = box3d_corners((1.5, 1.6, 4.0), (1.0, 1.7, 10.0), 0.0)
    np.testing.assert_allclose(corners[:4, 1], 1.7)  # bottom at loc.y, top h above (y points down)
    np.testing.assert_allclose(corners[4:, 1], 0.2)
    np.testing.assert_allclose(corners[[0, 1, 4, 5], 0], 3.0)  # front face at +l/2 along x for rot_y = 0
    turned = box3d_corners((1.5, 1.6, 4.0), (0.0, 0.0, 0.0), np.pi / 2)  # heading -z (towards the camera)
    np.testing.assert_allclose(turned[[0, 1, 4, 5], 2], -2.0, atol=1e-9)
    p2 = kitti_like_p2(320, 96)
    image = np.zeros((96, 320, 3), np.uint8)
    draw_box3d(image, project_to_image(corners, p2), PRED_COLOR)
    assert (image == PRED_COLOR).all(axis=2).sum() > 20
    bev = draw_birds_eye(gt=np.array([[1.5, 1.6, 4.0, 10.0, 1.7, 30.0, 0.0]]),
                         pred=np.array([[1.5, 1.6, 4.0, -10.0, 1.7, 30.0, 0.0]]), size=(400, 600))
    gt_y, gt_x = np.nonzero((bev == GT_COLOR).all(axis=2))
    pr_y, pr_x = np.nonzero((bev == PRED_COLOR).all(axis=2))
    # x = +10 m of [-20, 20] -> column 300; z = 30 m of [0, 60] -> row 300; the prediction mirrored at column 100
    assert abs(gt_x.mean() - 300) < 3 and abs(gt_y.mean() - 300) < 3 and abs(pr_x.mean() - 100) < 3
