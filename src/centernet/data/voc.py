"""PASCAL VOC xml reader."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .convert import BoxCleaner, check_images, to_coco_dict
from .io import DataError
from .sample import DetectionSource, Sample


class VocDetection(DetectionSource):
    """Boxes from a folder of PASCAL VOC xml files (one per image); images are read lazily.

    * Files: every ``*.xml`` in ``ann_dir`` in sorted order, or only the ids listed in ``split_file``
      (a VOC ``ImageSets/Main/*.txt``: one file stem per line). ``image_id`` is the 1-based position.
    * Classes: ``class_names`` if given (an object with another name is a :class:`DataError` naming the
      file), otherwise the sorted set of names found in the files. Labels index ``class_names``.
    * Coordinates: VOC stores 1-based inclusive pixel indices, so pixel ``xmin`` starts at continuous
      coordinate ``xmin - 1`` and pixel ``xmax`` ends at ``xmax``: the box is
      ``(xmin - 1, ymin - 1, xmax, ymax)``, its width ``xmax - xmin + 1`` as in the VOC devkit.
    * ``difficult=1`` objects are kept with ``ignore=True``. Boxes are clipped/skipped as in
      :class:`~centernet.data.convert.BoxCleaner`, with one warning per data set.
    """

    extra_scorers = ("voc",)  # also scored with the VOC devkit's AP50 (centernet.evaluation.scoring)

    def __init__(self, ann_dir: str | Path, image_dir: str | Path, class_names: Sequence[str] | None = None,
                 split_file: str | Path | None = None) -> None:
        self.ann_dir = Path(ann_dir)
        self.image_dir = Path(image_dir)
        if not self.ann_dir.is_dir():
            raise DataError(f"VOC annotation folder not found: {self.ann_dir}")
        files = self._list_files(split_file)
        records = [self._parse(path) for path in files]
        if class_names is None:
            class_names = sorted({obj[0] for rec in records for obj in rec["objects"]})
        self.class_names: list[str] = list(class_names)
        label_of = {name: label for label, name in enumerate(self.class_names)}
        cleaner = BoxCleaner(self.ann_dir)
        self.samples: list[Sample] = []
        for index, rec in enumerate(records):
            boxes, labels, ignore = [], [], []
            for name, (x1, y1, x2, y2), difficult in rec["objects"]:
                if name not in label_of:
                    raise DataError(f"{rec['xml']}: object name {name!r} is not one of the classes {self.class_names}")
                box = cleaner.clean(x1 - 1.0, y1 - 1.0, x2, y2, rec["width"], rec["height"])
                if box is None:
                    continue
                boxes.append(box)
                labels.append(label_of[name])
                ignore.append(difficult)
            self.samples.append(Sample(
                image_id=index + 1, path=self.image_dir / rec["filename"], width=rec["width"], height=rec["height"],
                boxes=np.array(boxes, dtype=np.float32).reshape(-1, 4), labels=np.array(labels, dtype=np.int64),
                ignore=np.array(ignore, dtype=bool)))
        cleaner.report()

    def _list_files(self, split_file: str | Path | None) -> list[Path]:
        if split_file is None:
            files = sorted(self.ann_dir.glob("*.xml"))
            if not files:
                raise DataError(f"no .xml annotation files in {self.ann_dir}")
            return files
        split_file = Path(split_file)
        if not split_file.is_file():
            raise DataError(f"VOC split file not found: {split_file}")
        stems = [line.split()[0] for line in split_file.read_text().splitlines() if line.strip()]
        files = [self.ann_dir / f"{stem}.xml" for stem in stems]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise DataError(f"{split_file}: {len(missing)} listed annotation files not found, e.g. {missing[:5]}")
        return files

    @staticmethod
    def _parse(path: Path) -> dict[str, Any]:
        """Parse one xml file into filename, size and (name, box, difficult) objects."""
        try:
            root = ET.parse(path).getroot()
        except (ET.ParseError, OSError) as exc:
            raise DataError(f"{path}: malformed VOC xml ({exc})") from exc
        if root.tag != "annotation":
            raise DataError(f"{path}: not a VOC annotation (root element <{root.tag}>, expected <annotation>)")
        filename = _text(root, "filename", path)
        try:
            width, height = int(float(_text(root, "size/width", path))), int(float(_text(root, "size/height", path)))
        except ValueError as exc:
            raise DataError(f"{path}: non-numeric image size ({exc})") from exc
        if width <= 0 or height <= 0:
            raise DataError(f"{path}: invalid image size {width}x{height}")
        objects = []
        for k, obj in enumerate(root.findall("object")):
            name = _text(obj, "name", path, f"object {k}").strip()
            try:
                box = tuple(float(_text(obj, f"bndbox/{key}", path, f"object {k}"))
                            for key in ("xmin", "ymin", "xmax", "ymax"))
            except ValueError as exc:
                raise DataError(f"{path}: object {k} ({name}) has a non-numeric bndbox ({exc})") from exc
            difficult = obj.findtext("difficult", default="0").strip() in ("1", "true", "True")
            objects.append((name, box, difficult))
        return {"xml": path, "filename": filename.strip(), "width": width, "height": height, "objects": objects}

    def check_images(self, decode: bool = False) -> None:
        """Raise :class:`DataError` listing (up to 10) images that are missing (or, with ``decode``, unreadable)."""
        check_images(self.samples, decode=decode, where=f" in {self.image_dir} (annotations {self.ann_dir})")

    def to_coco_dict(self) -> dict[str, Any]:
        """COCO-style ground truth (category ids 1..C, difficult objects as ``iscrowd``)."""
        return to_coco_dict(self)


def _text(node: ET.Element, tag: str, path: Path, where: str = "") -> str:
    value = node.findtext(tag)
    if value is None or not value.strip():
        place = f" in {where}" if where else ""
        raise DataError(f"{path}: missing <{tag}>{place}")
    return value
