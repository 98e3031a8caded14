"""COCO scale: samples kept as arrays (a SampleTable) that DataLoader workers read without copying, a COCO file
read column-wise (or entry by entry where anything is unusual, naming the entry) and cached, an image check that
remembers good images by path, size and modification time, and a COCO folder opened by its splits."""
from __future__ import annotations

import json
import os
import pickle
import struct
import warnings
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from centernet.data import DataError, open_dataset, read_image
from centernet.data import cache, coco, verify
from centernet.data.coco import CocoDetection
from centernet.data.convert import BoxCleaner, clean_boxes
from centernet.data.io import decoded_size, stated_size
from centernet.data.sample import Relabeled, Sample, SampleTable, Subset
from centernet.data.splits import make_split
from centernet.data.verify import check_object_limit
from centernet.engine.console import data_summary
from helpers.coco_scale import can_measure_workers, make_coco_scale, worker_growth


def _same(a: Sample, b: Sample) -> None:
    assert (a.image_id, a.path, a.width, a.height) == (b.image_id, b.path, b.width, b.height)
    for name in ("boxes", "labels", "ignore", "keypoints", "calib"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y), name
    assert a.extra.keys() == b.extra.keys()
    for key in a.extra:
        assert a.extra[key].dtype == b.extra[key].dtype and np.array_equal(a.extra[key], b.extra[key]), key


def _samples(n: int = 7, seed: int = 0) -> list[Sample]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        k = int(rng.integers(0, 4))  # images without objects too
        boxes = rng.uniform(0, 50, (k, 4)).astype(np.float32)
        out.append(Sample(i * 3 + 1, Path(f"/data/cam{i % 2}/\udcff{i}.png"), 64 + i, 48, boxes, rng.integers(0, 5, k),
                          ignore=rng.random(k) < 0.3, keypoints=rng.normal(size=(k, 2, 3)).astype(np.float32),
                          calib=rng.normal(size=(3, 4)).astype(np.float32),
                          extra={"dim": rng.normal(size=(k, 3)).astype(np.float32), "occ": rng.integers(0, 3, k)}))
    return out


# ------------------------------------------------------------------------------------------ the table
def test_table_reads_back_every_sample_and_views_share_it():
    samples = _samples()
    table = SampleTable.from_samples(samples)
    assert isinstance(table, SampleTable) and len(table) == len(samples)
    for a, b in zip(samples, table):
        _same(a, b)
    _same(table[-1], samples[-1])
    with pytest.raises(IndexError):
        table[len(samples)]
    view = table[1::2]  # a slice is a view, and a view of a view
    assert [s.image_id for s in view] == [s.image_id for s in samples[1::2]]
    assert [s.image_id for s in view.select([2, 0])] == [samples[5].image_id, samples[1].image_id]
    relabeled = table.relabel(np.array([4, 3, 2, 1, 0]))
    for a, b in zip(samples, relabeled.select(range(len(samples)))):
        assert np.array_equal(b.labels, 4 - a.labels) and b.labels.dtype == np.int64
    first = table[0]
    first.boxes += 100  # a sample is the caller's: the data set does not change
    _same(table[0], samples[0])
    counts = table.object_counts(trained_only=True)
    assert counts.tolist() == [int(np.count_nonzero(~s.ignore)) for s in samples]
    for a, b in zip(pickle.loads(pickle.dumps(view)), samples[1::2]):  # (workers started by spawn get a copy)
        _same(a, b)
    assert isinstance(table + samples[:1], list) and len(samples[:1] + table) == len(samples) + 1


@pytest.mark.parametrize("root", [Path("/data/imgs"), Path("."), Path("rel/dir"), Path("/")])
def test_image_paths_as_strings_are_the_paths(root):
    names = ["a.jpg", "sub/b.jpg", "sub//c.jpg", "./d.jpg", "e/../f.jpg", "..", "/abs/g.jpg", "h/", "\udcffi.jpg"]
    table = SampleTable.from_columns(range(len(names)), [4] * len(names), [3] * len(names), names,
                                     [0] * len(names), np.zeros((0, 4)), [], [], root=root)
    assert table.image_records()[0] == [str(s.path) for s in table]


def test_samples_that_do_not_fit_a_table_stay_a_list():
    samples = _samples(3)
    samples[1].calib = None  # calibration on some samples only
    assert SampleTable.from_samples(samples) is None
    samples = _samples(3)
    samples[2].extra["more"] = np.zeros(len(samples[2]))
    assert SampleTable.from_samples(samples) is None


def test_subset_and_relabeled_of_a_table_are_views(shared_data):
    source = open_dataset(shared_data / "coco_mini" / "annotations" / "instances_val2017.json")
    assert isinstance(source.samples, SampleTable)
    subset = Subset(source, [5, 1, 3])
    assert isinstance(subset.samples, SampleTable) and subset.samples.boxes is source.samples.boxes
    for i, s in zip([5, 1, 3], subset.samples):
        _same(source.samples[i], s)
    names = source.class_names[::-1]
    view = Relabeled(source, names)
    assert isinstance(view.samples, SampleTable)
    for a, b in zip(source.samples, view.samples):
        assert [source.class_names[k] for k in a.labels] == [names[k] for k in b.labels]
    as_list = type("Listed", (), {"samples": list(source.samples), "class_names": source.class_names})()
    assert data_summary(source) == data_summary(as_list)
    beyond = lambda sample: int(np.count_nonzero(~sample.ignore[3:]))  # noqa: E731 (the base task's count)
    with pytest.warns(UserWarning, match="beyond data.max_objects=3") as table_warning:
        counted = check_object_limit(source, 3, beyond)
    with pytest.warns(UserWarning) as list_warning:
        assert check_object_limit(as_list, 3, beyond) == counted and counted[0] > 0
    assert str(table_warning[0].message) == str(list_warning[0].message)


# ------------------------------------------------------------------------------------------ reading COCO
def test_clean_boxes_is_the_box_cleaner_for_many_boxes():
    rng = np.random.default_rng(0)
    n = 4000
    corners = rng.uniform(-30, 90, (n, 4))
    corners[rng.random(n) < 0.05, rng.integers(0, 4)] = np.nan
    corners[rng.random(n) < 0.05, rng.integers(0, 4)] = np.inf
    corners[::7, 2] = corners[::7, 0]  # zero width
    corners[::11] = np.round(corners[::11])
    width, height = rng.integers(1, 80, n), rng.integers(1, 80, n)
    keep, boxes, skipped, clipped = clean_boxes(*corners.T, width, height)
    cleaner = BoxCleaner("x")
    for k in range(n):
        box = cleaner.clean(*map(float, corners[k]), int(width[k]), int(height[k]))
        assert keep[k] == (box is not None)
        if box is not None:
            assert np.array_equal(boxes[k], np.array(box, dtype=np.float32))
    assert (skipped, clipped) == (cleaner.skipped, cleaner.clipped) and skipped and clipped


def _coco_file(path: Path, keypoints: bool = False) -> Path:
    rng = np.random.default_rng(1)
    images = [{"id": 10 + i, "file_name": f"sub/{i}.jpg", "width": 64, "height": 48} for i in range(30)]
    cats = [{"id": 3, "name": "b"}, {"id": 1, "name": "a", "keypoints": ["l", "r"], "skeleton": [[1, 2]]}]
    anns = []
    for k in range(300):
        x, y, w, h = (float(v) for v in np.round(rng.uniform(-10, 60, 4), 2))
        if k % 17 == 0:
            w = 0.0  # skipped
        ann = {"id": 1000 - k, "image_id": 10 + int(rng.integers(0, 25)), "category_id": [1, 3][k % 2],
               "bbox": [x, y, w, int(h)], "iscrowd": int(k % 13 == 0)}
        if keypoints:
            ann["keypoints"] = [float(v) for v in rng.uniform(0, 50, 6)]
        anns.append(ann)
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return path


@pytest.mark.parametrize("keypoints", [False, True])
def test_column_reading_equals_entry_by_entry(tmp_path, monkeypatch, keypoints):
    path = _coco_file(tmp_path / "a.json", keypoints)
    with warnings.catch_warnings(record=True) as fast_warnings:
        warnings.simplefilter("always")
        fast = CocoDetection(path, tmp_path, keypoints=keypoints)
    monkeypatch.setattr(CocoDetection, "_columns", lambda self, entries, images: None)
    with warnings.catch_warnings(record=True) as checked_warnings:
        warnings.simplefilter("always")
        checked = CocoDetection(path, tmp_path, keypoints=keypoints)
    assert [str(w.message) for w in fast_warnings] == [str(w.message) for w in checked_warnings]
    assert "skipped" in str(fast_warnings[0].message)
    assert len(fast) == len(checked) == 30 and fast.class_names == ["a", "b"]
    for a, b in zip(fast.samples, checked.samples):
        _same(a, b)
    assert fast[0].path == tmp_path / "sub" / "0.jpg" and len(fast[29]) == 0  # an image without objects


def test_unusual_entries_are_read_one_by_one(tmp_path):
    """Values the column reading does not take (booleans as numbers) are read as before; a bad entry is named."""
    images = [{"id": 1, "file_name": "a.png", "width": 64, "height": 48}]
    anns = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [True, 2, 30, 20]},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "iscrowd": "yes"}]
    path = tmp_path / "a.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": [{"id": 1, "name": "x"}]}))
    ds = CocoDetection(path, tmp_path)
    assert ds[0].boxes.tolist() == [[1, 2, 31, 22], [1, 2, 4, 6]] and ds[0].ignore.tolist() == [False, True]
    anns.append({"id": 3, "image_id": 1, "category_id": 1, "bbox": [1, 2, "3", 4]})
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": [{"id": 1, "name": "x"}]}))
    with pytest.raises(DataError, match=r"annotation id 3 has malformed 'bbox' \[1, 2, '3', 4\]"):
        CocoDetection(path, tmp_path)


def test_an_opened_file_is_cached_by_size_and_time(tmp_path, monkeypatch):
    monkeypatch.setenv("CENTERNET_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(cache, "MIN_CACHED_BYTES", 0)
    path = _coco_file(tmp_path / "a.json")
    with pytest.warns(UserWarning, match="skipped") as told:
        first = CocoDetection(path, tmp_path)
    files = list((tmp_path / "cache" / "datasets").glob("*.npz"))
    assert len(files) == 1
    parsed = []
    real_load = coco.load_coco_json
    monkeypatch.setattr(coco, "load_coco_json", lambda p: parsed.append(p) or real_load(p))
    with pytest.warns(UserWarning) as told_again:  # told again, from the cache
        again = CocoDetection(path, tmp_path / "elsewhere")
    assert [str(w.message) for w in told_again] == [str(w.message) for w in told]
    assert parsed == [] and again.class_names == first.class_names and again.cat_ids == first.cat_ids
    for a, b in zip(first.samples, again.samples):
        assert b.path == tmp_path / "elsewhere" / a.path.relative_to(tmp_path)  # the image folder of this open
        _same(Sample(**{**a.__dict__, "path": b.path}), b)
    content = json.loads(path.read_text())
    content["categories"][0]["name"] = "renamed"
    path.write_text(json.dumps(content))
    os.utime(path, ns=(1, 1))  # another version, even with an old time: read again
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert CocoDetection(path, tmp_path).class_names == ["a", "renamed"] and parsed == [path]
        files[0].write_bytes(b"not a cache file")  # damaged: read again, and rewritten
        assert CocoDetection(path, tmp_path).class_names == ["a", "renamed"] and len(parsed) == 2
        assert CocoDetection(path, tmp_path).class_names == ["a", "renamed"] and len(parsed) == 2
        monkeypatch.setenv("CENTERNET_CACHE", "off")
        CocoDetection(path, tmp_path)
    assert len(parsed) == 3


# ------------------------------------------------------------------------------------------ the image check
def _jpeg(path: Path, width: int, height: int, orientation: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.random.default_rng(width).integers(0, 255, (height, width, 3), dtype=np.uint8)
    data = cv2.imencode(".jpg", image)[1].tobytes()
    if orientation is not None:  # an EXIF block saying how the camera was turned
        tiff = b"MM\x00*" + struct.pack(">IH", 8, 1) + struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0) + b"\0" * 4
        payload = b"Exif\x00\x00" + tiff
        data = data[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + data[2:]
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("size, orientation", [((641, 479), None), ((641, 479), 6), ((33, 17), 8), ((640, 636), 6),
                                               ((64, 64), 5)])
def test_decoded_size_is_the_size_read_image_returns(tmp_path, size, orientation):
    path = _jpeg(tmp_path / "a.jpg", *size, orientation)
    height, width = read_image(path).shape[:2]
    assert decoded_size(path) == (width, height) == stated_size(path)  # the header alone says it too
    png = tmp_path / "a.png"
    cv2.imwrite(str(png), np.zeros((17, 9, 3), np.uint8))
    assert decoded_size(png) == (9, 17) == stated_size(png)


def _without_scan(path: Path) -> Path:
    """The JPEG at ``path`` cut after its frame header (no tables, no image data) and closed with an end
    marker: its header states a size, and it does not decode."""
    data, at = path.read_bytes(), 2
    while data[at + 1] != 0xC0:
        at += 2 + struct.unpack(">H", data[at + 2:at + 4])[0]
    path.write_bytes(data[:at + 2 + struct.unpack(">H", data[at + 2:at + 4])[0]] + b"\xff\xd9")
    return path


def test_what_headers_alone_cannot_settle_is_decoded(tmp_path):
    png = tmp_path / "exif.png"  # a PNG with an EXIF chunk (OpenCV turns it, or not, by its version)
    cv2.imwrite(str(png), np.zeros((6, 10, 3), np.uint8))
    data = png.read_bytes()
    tiff = b"MM\x00*" + struct.pack(">IH", 8, 1) + struct.pack(">HHIHH", 0x0112, 3, 1, 6, 0) + b"\0" * 4
    at = data.index(b"IDAT") - 4
    png.write_bytes(data[:at] + struct.pack(">I", len(tiff)) + b"eXIf" + tiff + b"\0" * 4 + data[at:])
    bmp = tmp_path / "a.bmp"
    cv2.imwrite(str(bmp), np.zeros((5, 7, 3), np.uint8))
    broken_exif = _jpeg(tmp_path / "b.jpg", 30, 20)
    data = broken_exif.read_bytes()
    broken_exif.write_bytes(data[:2] + b"\xff\xe1\x00\x0cExif\x00\x00XXXX" + data[2:])  # not a TIFF block
    for path in (png, bmp, broken_exif):
        assert stated_size(path) is None
        facts = verify.inspect_image(path, decode=False)
        height, width = read_image(path).shape[:2]
        assert facts.decoded and (facts.width, facts.height) == (width, height)


def test_a_large_set_is_checked_by_headers_and_a_bad_image_is_told_when_first_read(tmp_path, monkeypatch):
    monkeypatch.setenv("CENTERNET_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "img"
    good = [_jpeg(folder / f"{i}.jpg", 40 + i, 30, 6 if i == 2 else None) for i in range(4)]
    no_scan = _without_scan(_jpeg(folder / "noscan.jpg", 24, 16))
    wrong = _jpeg(folder / "wrong.jpg", 20, 10)
    cut = _jpeg(folder / "cut.jpg", 50, 30)
    cut.write_bytes(cut.read_bytes()[:-2])
    sizes = [(40, 30), (41, 30), (30, 42), (43, 30)]  # the third is turned by its EXIF orientation
    samples = [Sample(i, p, w, h, [], []) for i, (p, (w, h)) in enumerate(zip(good, sizes))]
    samples += [Sample(10, no_scan, 24, 16, [], []), Sample(11, wrong, 21, 10, [], []), Sample(12, cut, 50, 30, [], []),
                Sample(13, folder / "missing.jpg", 5, 5, [], [])]
    source = SimpleNamespace(samples=samples)
    monkeypatch.setattr(verify, "FULL_CHECK_LIMIT", len(samples) - 1)  # "auto" reads headers from here
    inspected = []
    real = verify.inspect_image
    monkeypatch.setattr(verify, "inspect_image",
                        lambda path, decode=True: inspected.append((os.path.basename(path), decode)) or real(path, decode))
    with pytest.raises(DataError) as err:
        verify.verify_source(source, "training", progress=False)
    assert "2 of 8 training images cannot be used" in str(err.value) and "noscan" not in str(err.value)
    assert "wrong.jpg: the image is 20x10" in str(err.value) and "missing.jpg: not found" in str(err.value)
    assert {decode for _, decode in inspected} == {False} and len(inspected) == 8
    with pytest.raises(DataError, match="image could not be decoded .*noscan.jpg"):
        read_image(no_scan)  # what training's first read of it says (test_bad_inputs D9h: through the CLI)
    inspected.clear()
    again = verify.verify_images(samples, progress=False, decode=False)  # the second start: headers remembered
    assert sorted(inspected) == [("missing.jpg", False)] and again.remembered == 7
    assert again.warnings == [f"{cut}: truncated (no end-of-image marker; the missing part decodes as grey)"]
    inspected.clear()
    full = verify.verify_images(samples, progress=False)  # "full": what headers told is not enough
    assert len(inspected) == 8 and {decode for _, decode in inspected} == {True}
    assert f"{no_scan}: cannot be decoded (corrupt or not an image)" in full.errors
    inspected.clear()
    verify.verify_images(samples, progress=False, decode=False)  # what decoding told serves a header check
    assert sorted(inspected) == [("missing.jpg", False), ("noscan.jpg", False)]
    monkeypatch.setattr(verify, "FULL_CHECK_LIMIT", len(samples))  # "auto" decodes a set up to the limit
    with pytest.raises(DataError, match="3 of 8 training images"):
        verify.verify_source(source, "training", progress=False)
    with pytest.raises(ValueError, match='data.verify must be true, false, "full" or "headers", got \'quick\''):
        verify.verify_source(source, "training", progress=False, mode="quick")


def test_the_check_remembers_good_images_and_reports_problems_every_time(tmp_path, monkeypatch):
    monkeypatch.setenv("CENTERNET_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "img"
    good = [_jpeg(folder / f"{i}.jpg", 40 + i, 30) for i in range(5)]
    wrong = _jpeg(folder / "wrong.jpg", 20, 10)
    cut = _jpeg(folder / "cut.jpg", 50, 30)
    cut.write_bytes(cut.read_bytes()[:-2])  # no end-of-image marker: usable, warned about
    corrupt = folder / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8 not really a jpeg")
    samples = [Sample(i, p, 40 + i, 30, [], []) for i, p in enumerate(good)]
    samples += [Sample(10, wrong, 21, 10, [], []), Sample(11, cut, 50, 30, [], []), Sample(12, corrupt, 5, 5, [], []),
                Sample(13, folder / "missing.jpg", 5, 5, [], [])]
    inspected = []
    real = verify.inspect_image
    monkeypatch.setattr(verify, "inspect_image",
                        lambda path, decode=True: inspected.append(os.path.basename(path)) or real(path, decode))
    first = verify.verify_images(samples, progress=False)
    assert first.remembered == 0 and len(inspected) == 9
    assert [e.split(": ", 1)[1] for e in first.errors] == [
        "the image is 20x10 but its annotation says 21x10 (boxes would be placed wrongly)",
        "cannot be decoded (corrupt or not an image)", "not found"]
    assert first.warnings == [f"{cut}: truncated (no end-of-image marker; the missing part decodes as grey)"]
    inspected.clear()
    second = verify.verify_images(samples, progress=False)  # a second start: only the unusable ones again
    assert sorted(inspected) == ["corrupt.jpg", "missing.jpg"] and second.remembered == 7
    assert (second.errors, second.warnings) == (first.errors, first.warnings)  # still told, every time
    inspected.clear()
    _jpeg(good[0], 44, 30)  # replaced by another image: checked again, and its new size is told
    _jpeg(corrupt, 5, 5)  # fixed
    third = verify.verify_images(samples, progress=False)
    assert sorted(inspected) == ["0.jpg", "corrupt.jpg", "missing.jpg"]
    assert third.errors[0] == f"{good[0]}: the image is 44x30 but its annotation says 40x30 (boxes would be placed wrongly)"
    assert len(third.errors) == 3 and third.errors[-1] == f"{folder / 'missing.jpg'}: not found"
    inspected.clear()
    monkeypatch.setenv("CENTERNET_MAX_IMAGE_PIXELS", "1000")  # a lower limit: remembered images over it are looked at
    fourth = verify.verify_images(samples[:1], progress=False)
    assert inspected == ["0.jpg"] and "over the limit of 1,000" in fourth.errors[0]


def test_a_problem_appearing_later_is_reported(tmp_path, monkeypatch):
    monkeypatch.setenv("CENTERNET_CACHE", str(tmp_path / "cache"))
    path = _jpeg(tmp_path / "a.jpg", 30, 20)
    samples = [Sample(1, path, 30, 20, [], [])]
    assert verify.verify_images(samples, progress=False).ok
    path.write_bytes(path.read_bytes()[:200])  # cut short later (another size): checked again
    report = verify.verify_images(samples, progress=False)
    assert report.remembered == 0 and (report.errors or report.warnings)


# ------------------------------------------------------------------------------------------ a COCO folder
def _coco_folder(root: Path) -> Path:
    for split, n in (("train2017", 3), ("val2017", 2)):
        images = [{"id": i + 1, "file_name": f"{i}.png", "width": 8, "height": 6} for i in range(n)]
        anns = [{"id": i + 1, "image_id": i + 1, "category_id": 1, "bbox": [1, 1, 3, 3],
                 "keypoints": [2, 2, 2, 3, 3, 2]} for i in range(n)]
        cats = [{"id": 1, "name": "person", "keypoints": ["a", "b"], "skeleton": [[1, 2]]}]
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        (root / split).mkdir(exist_ok=True)
        content = {"images": images, "annotations": anns, "categories": cats}
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(content))
        if split == "val2017":
            (root / "annotations" / f"person_keypoints_{split}.json").write_text(json.dumps(content))
    return root


def test_a_coco_folder_opens_by_its_splits(tmp_path):
    root = _coco_folder(tmp_path / "coco")
    train = open_dataset(root, split="train2017")
    assert isinstance(train, CocoDetection) and len(train) == 3
    assert train.ann_file == root / "annotations" / "instances_train2017.json" and train.image_dir == root / "train2017"
    val = open_dataset(root, split="val")  # a prefix only one split has
    assert val.ann_file.name == "instances_val2017.json" and val[0].keypoints is None
    pose = open_dataset(root, split="val2017", keypoints=True)
    assert pose.ann_file.name == "person_keypoints_val2017.json" and pose[0].keypoints.shape == (1, 2, 3)
    with pytest.raises(DataError, match=r"coco: a COCO folder with the splits train2017, val2017; pick one with "
                                        r"--split \(e.g. --split train2017\)"):
        open_dataset(root)
    with pytest.raises(DataError, match=r"coco: no split 'test' \(annotations/ holds the splits train2017, val2017\)"):
        open_dataset(root, split="test")
    with pytest.raises(DataError, match="keypoints need annotations/person_keypoints_train2017.json"):
        open_dataset(root, split="train2017", keypoints=True)
    with pytest.raises(DataError, match="a COCO folder's splits are its annotation files"):
        make_split(root, train)
    (root / "val2017").rmdir()
    with pytest.raises(DataError, match=r"the images of split val2017 \(instances_val2017.json\) are not in"):
        open_dataset(root, split="val2017")
    assert len(open_dataset(root, split="val2017", image_dir=root / "train2017")) == 2
    for name in ("instances_val2017.json", "person_keypoints_val2017.json"):
        (root / "annotations" / name).unlink()
    assert len(open_dataset(root)) == 3  # one split: no name needed


# ------------------------------------------------------------------------------------------ at 20,000 images
@pytest.fixture(scope="module")
def twenty_k(tmp_path_factory):
    return make_coco_scale(tmp_path_factory.mktemp("scale"), images=20_000, boxes=145_000, links=False)


@pytest.mark.skipif(not can_measure_workers(), reason="needs Linux (/proc/self/smaps_rollup) and forked workers")
def test_workers_share_the_samples_of_a_large_set(twenty_k):
    """Each of 2 workers reading 3,000 samples grows by under 1 KB per sample (the samples' arrays are read,
    never written); the same samples as a list of objects grow them by several KB per sample (measured here
    too, so a measurement blind to copies would fail). The rate is the median over six parts of the 3,000
    reads: a one-time cost (a table of the interpreter's that the worker enlarges) is not one per sample."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        source = open_dataset(twenty_k)
    assert isinstance(source.samples, SampleTable) and len(source) == 20_000
    growth = worker_growth(source, workers=2, samples=3000)
    assert len(growth) == 2 and max(g["rate"] for g in growth) < 1024, growth
    source.samples = list(source.samples)
    assert min(g["rate"] for g in worker_growth(source, workers=2, samples=600, warmup=100)) > 2048
