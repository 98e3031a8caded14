"""Format readers on the real data sets in ../shared/data (skipped when absent)."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from centernet.data import CocoDetection, DetectionSource, VocDetection, YoloDetection, open_dataset, read_image

DATA = (Path(__file__).resolve().parents[1] / ".." / "shared" / "data").resolve()


def require(*parts: str) -> Path:
    path = DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not available: {path}")
    return path


def check_source(ds: DetectionSource, num_read: int = 3) -> None:
    """Every box inside its image with positive size, labels in range; a few images decode at their size."""
    num_classes = len(ds.class_names)
    for sample in ds:
        b = sample.boxes
        assert (b[:, 0] >= 0).all() and (b[:, 1] >= 0).all(), sample.path
        assert (b[:, 2] <= sample.width).all() and (b[:, 3] <= sample.height).all(), sample.path
        assert (b[:, 2] > b[:, 0]).all() and (b[:, 3] > b[:, 1]).all(), sample.path
        assert ((sample.labels >= 0) & (sample.labels < num_classes)).all(), sample.path
    ds.check_images()
    step = max(1, len(ds) // num_read)
    for sample in ds.samples[::step][:num_read]:
        assert read_image(sample.path).shape == (sample.height, sample.width, 3)


def count(ds: DetectionSource) -> tuple[int, int, int]:
    """(images, boxes, ignored boxes)."""
    return len(ds), sum(len(s) for s in ds), sum(int(s.ignore.sum()) for s in ds)


@pytest.mark.parametrize("split, images, boxes, crowd", [("train", 80, 739, 8), ("val", 79, 624, 5)])
def test_coco_mini_instances(split, images, boxes, crowd):
    root = require("coco_mini")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the real file needs no skipping or clipping
        ds = CocoDetection(root / "annotations" / f"instances_{split}2017.json", root / f"{split}2017")
    assert count(ds) == (images, boxes, crowd)  # README: 80 / 79 images, 739 / 624 boxes incl. crowd
    assert len(ds.class_names) == 80 and ds.cat_ids[0] == 1 and ds.cat_ids[-1] == 90
    assert ds.class_names[0] == "person"
    check_source(ds)
    assert isinstance(open_dataset(root / "annotations" / f"instances_{split}2017.json"), CocoDetection)


@pytest.mark.parametrize("split, annotations, people, crowd", [("train", 172, 86, 5), ("val", 118, 68, 1)])
def test_coco_mini_keypoints(split, annotations, people, crowd):
    root = require("coco_mini")
    ds = open_dataset(root / "annotations" / f"person_keypoints_{split}2017.json")
    assert isinstance(ds, CocoDetection) and ds.keypoints
    assert ds.class_names == ["person"] and len(ds.keypoint_names) == 17 and len(ds.skeleton) == 19
    n_images, n_boxes, n_crowd = count(ds)
    assert (n_images, n_boxes, n_crowd) == (len(ds), annotations, crowd)
    labelled = sum(int(((s.keypoints[:, :, 2] > 0).sum(axis=1) > 0).sum()) for s in ds)
    assert labelled == people  # README: keypoints for 86 / 68 people
    for sample in ds:
        assert sample.keypoints.shape == (len(sample), 17, 3) and sample.keypoints.dtype == np.float32
    check_source(ds, num_read=2)


def test_raccoon_voc():
    root = require("raccoon_voc")
    ds = VocDetection(root / "annotations", root / "images")
    assert count(ds) == (160, 173, 0)
    assert ds.class_names == ["raccoon"]
    check_source(ds)
    assert isinstance(open_dataset(root), VocDetection)
    gt = ds.to_coco_dict()
    assert len(gt["images"]) == 160 and len(gt["annotations"]) == 173


def test_coco128_yolo():
    root = require("coco128")
    with pytest.warns(UserWarning, match="2 label files"):  # 000000000656/659.txt have no image
        ds = YoloDetection(root / "images" / "train2017")
    assert count(ds) == (128, 929, 0)
    assert len(ds.class_names) == 80  # indices 0..79 (71 of them used)
    assert sum(len(s) == 0 for s in ds) == 2  # 000000000250/508.jpg have no label file
    check_source(ds)
    with pytest.warns(UserWarning):
        assert len(open_dataset(root)) == 128
