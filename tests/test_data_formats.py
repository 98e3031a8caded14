"""Format readers on synthetic and deliberately broken inputs written to tmp_path."""
from __future__ import annotations

import contextlib
import io
import json
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

from centernet.data import (CocoDetection, DataError, VocDetection, YoloDetection, make_synthetic_dataset,
                            open_dataset, read_image)


# ---------------------------------------------------------------- helpers

def write_image(path: Path, width: int = 64, height: int = 48) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((height, width, 3), 127, np.uint8))
    return path


def write_coco(path: Path, annotations: list[dict], categories: list[dict] | None = None,
               images: list[dict] | None = None) -> Path:
    images = images or [{"id": 1, "file_name": "a.png", "width": 64, "height": 48}]
    categories = categories or [{"id": 1, "name": "thing"}]
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path


def ann(ann_id: int, bbox: list[float], category_id: int = 1, image_id: int = 1, **extra) -> dict:
    return {"id": ann_id, "image_id": image_id, "category_id": category_id, "bbox": bbox, "iscrowd": 0, **extra}


def voc_xml(filename: str, objects: list[tuple], width: int = 64, height: int = 48) -> str:
    objs = "".join(
        f"<object><name>{name}</name><difficult>{int(diff)}</difficult><bndbox><xmin>{b[0]}</xmin>"
        f"<ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>" for name, b, diff in objects)
    return (f"<annotation><filename>{filename}</filename><size><width>{width}</width><height>{height}</height>"
            f"<depth>3</depth></size>{objs}</annotation>")


def quiet_coco(data: dict):
    from pycocotools.coco import COCO
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = data
        coco.createIndex()
    return coco


# ---------------------------------------------------------------- synthetic

def test_synthetic_deterministic_and_valid(tmp_path):
    a = make_synthetic_dataset(tmp_path / "a", num_train=12, num_val=4, seed=3)
    b = make_synthetic_dataset(tmp_path / "b", num_train=12, num_val=4, seed=3)
    c = make_synthetic_dataset(tmp_path / "c", num_train=12, num_val=4, seed=4)
    for key in ("train_ann", "val_ann"):
        assert a[key].read_bytes() == b[key].read_bytes()
    files = sorted(p.name for p in a["train_images"].iterdir())
    assert len(files) == 12
    assert all((a["train_images"] / f).read_bytes() == (b["train_images"] / f).read_bytes() for f in files)
    assert (a["train_images"] / files[0]).read_bytes() != (c["train_images"] / files[0]).read_bytes()

    ds = CocoDetection(a["train_ann"], a["train_images"])
    assert ds.class_names == ["rectangle", "ellipse", "triangle"] and ds.cat_ids == [1, 2, 3]
    assert len(ds) == 12 and len(open_dataset(a["val_ann"])) == 4
    for sample in ds:
        assert 1 <= len(sample) <= 6
        assert (sample.boxes[:, :2] >= 0).all() and (sample.boxes[:, 2] <= 128).all() and (sample.boxes[:, 3] <= 128).all()
        assert (sample.boxes[:, 2:] > sample.boxes[:, :2]).all()
        assert read_image(sample.path).shape == (128, 128, 3)
    ds.check_images(decode=True)


def test_synthetic_boxes_are_tight(tmp_path):
    paths = make_synthetic_dataset(tmp_path, num_train=6, num_val=0, image_size=(96, 80), num_classes=5, seed=1)
    ds = CocoDetection(paths["train_ann"], paths["train_images"])
    assert ds.class_names[-1] == "cross"
    gt = json.loads(paths["train_ann"].read_text())
    for a in gt["annotations"]:
        x, y, w, h = a["bbox"]
        assert all(isinstance(v, int) for v in a["bbox"])  # tight boxes of pixel masks are whole pixels
        # the visible pixels fit in the box and fill a good part of it (a loose box would not)
        assert 0.2 * w * h < a["area"] <= w * h
    for sample in ds:
        image = read_image(sample.path).astype(np.int32)
        assert image.shape == (80, 96, 3)
        for x1, y1, x2, y2 in sample.boxes.astype(int):
            assert image[y1:y2, x1:x2].std() > 5  # something is drawn there


def test_synthetic_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="num_classes"):
        make_synthetic_dataset(tmp_path, num_classes=9)


# ---------------------------------------------------------------- COCO

def test_coco_labels_boxes_crowd(tmp_path):
    write_image(tmp_path / "img" / "a.png")
    cats = [{"id": 7, "name": "seven"}, {"id": 3, "name": "three"}]
    annotations = [ann(1, [10, 5, 20, 10], 7), ann(2, [0, 0, 5, 5], 3, iscrowd=1)]
    ds = CocoDetection(write_coco(tmp_path / "a.json", annotations, cats), tmp_path / "img")
    assert ds.cat_ids == [3, 7] and ds.class_names == ["three", "seven"]
    sample = ds[0]
    assert sample.image_id == 1 and sample.path == tmp_path / "img" / "a.png"
    np.testing.assert_allclose(sample.boxes, [[10, 5, 30, 15], [0, 0, 5, 5]])
    assert sample.labels.tolist() == [1, 0] and sample.ignore.tolist() == [False, True]
    assert sample.keypoints is None
    assert ds.ann_file == tmp_path / "a.json" and ds.to_coco_dict()["categories"] == cats
    ds.check_images(decode=True)


@pytest.mark.parametrize("content, message", [
    ("", "empty"),
    ("{not json", "not valid json"),
    ("[1, 2]", "json object"),
    ('{"images": [], "annotations": []}', "categories"),
])
def test_coco_malformed_file(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(DataError, match=message) as err:
        CocoDetection(path, tmp_path)
    assert str(path) in str(err.value)


def test_coco_missing_file(tmp_path):
    with pytest.raises(DataError, match="not found"):
        CocoDetection(tmp_path / "nope.json", tmp_path)


def test_coco_unknown_category(tmp_path):
    path = write_coco(tmp_path / "a.json", [ann(1, [1, 1, 5, 5]), ann(42, [1, 1, 5, 5], category_id=99)])
    with pytest.raises(DataError) as err:
        CocoDetection(path, tmp_path)
    text = str(err.value)
    assert str(path) in text and "annotation id 42" in text and "99" in text


def test_coco_unknown_image_and_bad_bbox(tmp_path):
    path = write_coco(tmp_path / "a.json", [ann(5, [1, 1, 5, 5], image_id=8)])
    with pytest.raises(DataError, match="annotation id 5 refers to unknown image id 8"):
        CocoDetection(path, tmp_path)
    path = write_coco(tmp_path / "b.json", [ann(6, [1, 1, 5])])
    with pytest.raises(DataError, match="annotation id 6 has malformed 'bbox'"):
        CocoDetection(path, tmp_path)


def test_coco_degenerate_and_clipped_boxes_warn_once(tmp_path):
    annotations = [
        ann(1, [10, 10, 0, 5]),        # zero width: skipped
        ann(2, [10, 10, 5, -1]),       # negative height: skipped
        ann(3, [100, 100, 5, 5]),      # entirely outside the 64x48 image: skipped
        ann(4, [60, 40, 4.5, 8.4]),    # slightly outside: clipped
        ann(5, [1, 1, 5, 5]),          # fine
    ]
    path = write_coco(tmp_path / "a.json", annotations)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = CocoDetection(path, tmp_path)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1, messages
    assert f"skipped 3 degenerate boxes in {path}" in messages[0] and "clipped 1" in messages[0]
    np.testing.assert_allclose(ds[0].boxes, [[60, 40, 64, 48], [1, 1, 6, 6]])


def test_coco_check_images_missing_and_unreadable(tmp_path):
    images = [{"id": k, "file_name": f"{k}.png", "width": 64, "height": 48} for k in range(1, 15)]
    path = write_coco(tmp_path / "a.json", [], images=images)
    (tmp_path / "img").mkdir()
    ds = CocoDetection(path, tmp_path / "img")  # lazy: no image is touched here
    with pytest.raises(DataError) as err:
        ds.check_images()
    text = str(err.value)
    assert "14 of 14 images not found" in text and "1.png" in text and "and 4 more" in text
    for k in range(1, 15):
        write_image(tmp_path / "img" / f"{k}.png")
    (tmp_path / "img" / "3.png").write_bytes(b"this is not a png")
    ds.check_images()  # all exist
    with pytest.raises(DataError, match="3.png"):
        ds.check_images(decode=True)
    with pytest.raises(DataError, match="could not be decoded"):
        read_image(tmp_path / "img" / "3.png")
    with pytest.raises(DataError, match="image not found"):
        read_image(tmp_path / "img" / "99.png")


def test_coco_keypoints(tmp_path):
    cats = [{"id": 1, "name": "person", "keypoints": ["nose", "eye"], "skeleton": [[1, 2]]}]
    annotations = [ann(1, [1, 1, 10, 10], keypoints=[2, 3, 2, 4, 5, 1], num_keypoints=2),
                   ann(2, [20, 20, 10, 10], keypoints=[0] * 6, num_keypoints=0)]
    ds = CocoDetection(write_coco(tmp_path / "a.json", annotations, cats), tmp_path, keypoints=True)
    assert ds.keypoint_names == ["nose", "eye"] and ds.skeleton == [[1, 2]]
    kps = ds[0].keypoints
    assert kps.shape == (2, 2, 3) and kps.dtype == np.float32
    np.testing.assert_array_equal(kps[0], [[2, 3, 2], [4, 5, 1]])
    assert not kps[1].any() and len(ds[0]) == 2

    bad = [ann(1, [1, 1, 10, 10], keypoints=[1, 2, 2]), ann(9, [1, 1, 10, 10], keypoints=[1] * 5)]
    path = write_coco(tmp_path / "b.json", bad, cats)
    with pytest.raises(DataError) as err:
        CocoDetection(path, tmp_path, keypoints=True)
    assert str(path) in str(err.value) and "annotation id 1" in str(err.value) and "expected 6" in str(err.value)
    with pytest.raises(DataError, match="no category lists 'keypoints'"):
        CocoDetection(write_coco(tmp_path / "c.json", []), tmp_path, keypoints=True)


# ---------------------------------------------------------------- YOLO

def make_yolo(root: Path, labels: dict[str, str], extra_images: tuple[str, ...] = ()) -> Path:
    for stem in list(labels) + list(extra_images):
        write_image(root / "images" / "train" / f"{stem}.jpg", width=100, height=50)
    (root / "labels" / "train").mkdir(parents=True, exist_ok=True)
    for stem, text in labels.items():
        (root / "labels" / "train" / f"{stem}.txt").write_text(text)
    return root / "images" / "train"


def test_yolo_reads_and_denormalises(tmp_path):
    image_dir = make_yolo(tmp_path, {"a": "1 0.5 0.5 0.2 0.4\n\n0 0.1 0.1 0.2 0.2\n", "b": "2 0.1 0.2 0.3 0.2 0.2 0.6\n"},
                          extra_images=("c",))
    ds = YoloDetection(image_dir)
    assert ds.label_dir == tmp_path / "labels" / "train"
    assert ds.class_names == ["0", "1", "2"] and len(ds) == 3
    a, b, c = ds.samples
    assert (a.width, a.height) == (100, 50) and [s.image_id for s in ds] == [1, 2, 3]
    np.testing.assert_allclose(a.boxes, [[40, 15, 60, 35], [0, 0, 20, 10]], atol=1e-4)
    assert a.labels.tolist() == [1, 0]
    np.testing.assert_allclose(b.boxes, [[10, 10, 30, 30]], atol=1e-4)  # polygon -> its bounding box
    assert len(c) == 0  # no label file: an image without objects
    ds = YoloDetection(image_dir, class_names=["x", "y", "z", "w"])
    assert ds.class_names == ["x", "y", "z", "w"]


@pytest.mark.parametrize("text, message", [
    ("0 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.2\n", "line 2: expected"),
    ("0 0.5 abc 0.2 0.2\n", "line 1: non-numeric"),
    ("-1 0.5 0.5 0.2 0.2\n", "line 1: class index must be"),
    ("nan 0.5 0.5 0.2 0.2\n", "line 1: class index must be"),
    ("1.5 0.5 0.5 0.2 0.2\n", "line 1: class index must be"),
    ("0 0.5 0.5 20 30\n", "line 1: coordinates must be normalised"),
    ("3 0.5 0.5 0.2 0.2\n", "line 1: class index 3 out of range for 2 classes"),
])
def test_yolo_bad_lines(tmp_path, text, message):
    image_dir = make_yolo(tmp_path, {"a": text})
    with pytest.raises(DataError, match=message) as err:
        YoloDetection(image_dir, class_names=["p", "q"])
    assert str(tmp_path / "labels" / "train" / "a.txt") in str(err.value)


def test_yolo_unreadable_image_and_empty_folder(tmp_path):
    image_dir = make_yolo(tmp_path, {"a": ""})
    (image_dir / "broken.jpg").write_bytes(b"\xff\xd8 nope")
    with pytest.raises(DataError, match="broken.jpg"):
        YoloDetection(image_dir)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        YoloDetection(tmp_path / "empty")


def test_yolo_to_coco_dict_scores_perfectly(tmp_path):
    from pycocotools.cocoeval import COCOeval
    image_dir = make_yolo(tmp_path, {"a": "0 0.5 0.5 0.4 0.6\n1 0.2 0.3 0.2 0.2\n", "b": "1 0.7 0.5 0.3 0.5\n"})
    ds = YoloDetection(image_dir)
    gt = ds.to_coco_dict()
    assert [c["id"] for c in gt["categories"]] == [1, 2]
    assert [a["id"] for a in gt["annotations"]] == [1, 2, 3]
    coco_gt = quiet_coco(gt)
    dets = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
            for a in gt["annotations"]]
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(coco_gt, coco_gt.loadRes(dets), "bbox")
        ev.evaluate(), ev.accumulate(), ev.summarize()
    assert ev.stats[0] == pytest.approx(1.0)


# ---------------------------------------------------------------- VOC

def make_voc(root: Path, files: dict[str, str]) -> tuple[Path, Path]:
    (root / "annotations").mkdir(parents=True)
    for stem, text in files.items():
        (root / "annotations" / f"{stem}.xml").write_text(text)
    return root / "annotations", root / "images"


def test_voc_reads_convention_and_difficult(tmp_path):
    ann_dir, image_dir = make_voc(tmp_path, {
        "x1": voc_xml("x1.jpg", [("dog", (1, 1, 10, 20), False), ("cat", (5, 6, 7, 8), True)]),
        "x2": voc_xml("x2.jpg", []),
    })
    ds = VocDetection(ann_dir, image_dir)
    assert ds.class_names == ["cat", "dog"] and len(ds) == 2
    s = ds[0]
    assert s.path == image_dir / "x1.jpg" and (s.width, s.height) == (64, 48)
    np.testing.assert_allclose(s.boxes, [[0, 0, 10, 20], [4, 5, 7, 8]])  # (xmin-1, ymin-1, xmax, ymax)
    assert s.labels.tolist() == [1, 0] and s.ignore.tolist() == [False, True]
    assert len(ds[1]) == 0
    gt = ds.to_coco_dict()
    assert gt["annotations"][1]["iscrowd"] == 1 and gt["annotations"][0]["bbox"] == [0, 0, 10, 20]
    assert [c["name"] for c in gt["categories"]] == ["cat", "dog"]
    quiet_coco(gt)
    with pytest.raises(DataError, match="not found"):
        ds.check_images()
    assert len(open_dataset(tmp_path, image_dir=image_dir)) == 2


def test_voc_errors(tmp_path):
    ann_dir, image_dir = make_voc(tmp_path / "a", {"bad": "<annotation><filename>x.jpg</filename"})
    with pytest.raises(DataError, match="malformed VOC xml") as err:
        VocDetection(ann_dir, image_dir)
    assert str(ann_dir / "bad.xml") in str(err.value)

    ann_dir, image_dir = make_voc(tmp_path / "b", {"u": voc_xml("u.jpg", [("zebra", (1, 1, 5, 5), False)])})
    with pytest.raises(DataError, match="'zebra' is not one of the classes") as err:
        VocDetection(ann_dir, image_dir, class_names=["dog"])
    assert str(ann_dir / "u.xml") in str(err.value)

    no_box = "<annotation><filename>n.jpg</filename><size><width>9</width><height>9</height></size>" \
             "<object><name>dog</name></object></annotation>"
    ann_dir, image_dir = make_voc(tmp_path / "c", {"n": no_box})
    with pytest.raises(DataError, match="missing <bndbox/xmin> in object 0"):
        VocDetection(ann_dir, image_dir)

    ann_dir, image_dir = make_voc(tmp_path / "d", {"d": voc_xml("d.jpg", [("dog", (7, 5, 5, 9), False)])})
    with pytest.warns(UserWarning, match="skipped 1 degenerate boxes"):
        assert len(VocDetection(ann_dir, image_dir)[0]) == 0


# ---------------------------------------------------------------- open_dataset

def test_open_dataset_guesses(tmp_path):
    paths = make_synthetic_dataset(tmp_path / "syn", num_train=2, num_val=1)
    assert isinstance(open_dataset(paths["train_ann"]), CocoDetection)
    image_dir = make_yolo(tmp_path / "yolo", {"a": "0 0.5 0.5 0.2 0.2\n"})
    assert isinstance(open_dataset(tmp_path / "yolo"), YoloDetection)  # images/ with a single sub-folder
    assert isinstance(open_dataset(image_dir, keypoints=False), YoloDetection)
    with pytest.raises(DataError, match="keypoints need a COCO"):
        open_dataset(image_dir, keypoints=True)
    assert not open_dataset(paths["val_ann"], keypoints=None).keypoints
    with pytest.raises(DataError, match="cannot guess"):
        open_dataset(tmp_path / "syn" / "annotations")
    with pytest.raises(DataError, match="pass image_dir"):
        open_dataset(write_coco(tmp_path / "instances_foo.json", []))
    with pytest.raises(DataError, match="not found"):
        open_dataset(tmp_path / "missing")
