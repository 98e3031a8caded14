"""The registry of data formats behind open_dataset: explicit probe order, one module and one line per format."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from centernet.data import DataError, KittiDetection, VocDetection, open_dataset
from centernet.data import formats
from centernet.data.formats import OpenRequest, formats_in_order, register_format
from centernet.data.sample import DetectionSource, Sample
from centernet.registry import Registry



def _png(path: Path) -> None:
    assert cv2.imwrite(str(path), np.zeros((4, 4, 3), np.uint8))


def test_formats_are_probed_in_a_fixed_order():
    ordered = formats_in_order()
    assert [f.name for f in ordered] == ["coco", "kitti", "voc", "yolo"]
    assert len({f.priority for f in ordered}) == len(ordered)
    # a COCO folder's splits are its annotation files (a COCO json's split is still its list file)
    assert [f.name for f in ordered if f.own_splits] == ["coco", "kitti", "voc"]


def test_overlapping_probes_go_to_the_higher_priority(tmp_path):
    """A VOC folder with images/ and a KITTI folder with image files also pass the YOLO probe."""
    voc = tmp_path / "voc"
    (voc / "annotations").mkdir(parents=True)
    (voc / "images").mkdir()
    _png(voc / "images" / "a.png")
    (voc / "annotations" / "a.xml").write_text(
        "<annotation><filename>a.png</filename><size><width>4</width><height>4</height></size></annotation>")
    kitti = tmp_path / "kitti"
    for name in ("label_2", "calib", "image_2"):
        (kitti / name).mkdir(parents=True)
    _png(kitti / "stray.png")
    (kitti / "label_2" / "000000.txt").write_text("")
    (kitti / "calib" / "000000.txt").write_text("P2: " + " ".join(["1"] * 12) + "\n")
    _png(kitti / "image_2" / "000000.png")
    assert all(f.probe(voc) for f in formats_in_order() if f.name in ("voc", "yolo"))
    assert all(f.probe(kitti) for f in formats_in_order() if f.name in ("kitti", "yolo"))
    assert isinstance(open_dataset(voc), VocDetection) and isinstance(open_dataset(kitti), KittiDetection)


def test_keypoints_are_refused_where_a_format_has_none(tmp_path):
    (tmp_path / "images").mkdir()
    _png(tmp_path / "images" / "a.png")
    with pytest.raises(DataError, match="keypoints need a COCO person_keypoints json; a yolo data set has none"):
        open_dataset(tmp_path, keypoints=True)


class _Listed(DetectionSource):
    def __init__(self, path: Path) -> None:
        self.class_names = ["thing"]
        self.samples = [Sample(k + 1, Path(line), 1, 1, [], []) for k, line in enumerate(path.read_text().split())]


def test_a_new_format_is_one_registration(tmp_path, monkeypatch):
    registry = Registry("data format")
    for fmt in formats_in_order():
        registry.register(fmt.name)(fmt)
    monkeypatch.setattr(formats, "FORMATS", registry)

    @register_format("list", lambda path: path.suffix == ".list", priority=5, looks_for="a .list file")
    def open_list(request: OpenRequest) -> DetectionSource:
        return _Listed(request.path)

    listed = tmp_path / "set.list"
    listed.write_text("a.png b.png c.png\n")
    (tmp_path / "set.val.txt").write_text("b.png\n")  # the split's list file: the format needs no split code
    assert [s.path.name for s in open_dataset(listed).samples] == ["a.png", "b.png", "c.png"]
    assert [s.path.name for s in open_dataset(listed, split="val").samples] == ["b.png"]
    other = tmp_path / "notes.md"
    other.write_text("hello\n")
    with pytest.raises(DataError, match="notes.md: cannot guess the data set format; looked for list: a .list file; "
                                        "coco: .*; kitti: .*; voc: .*; yolo: "):
        open_dataset(other)
    with pytest.raises(ValueError, match="priority 5 is already 'list'"):
        register_format("again", lambda path: False, priority=5, looks_for="nothing")(open_list)
    with pytest.raises(KeyError, match="data format 'coco' is already registered"):
        register_format("coco", lambda path: False, priority=6, looks_for="nothing")(open_list)
