"""PASCAL VOC xml reader."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .convert import BoxCleaner, check_images, to_coco_dict
from .formats import OpenRequest, register_format
from .io import DataError
from .sample import DetectionSource, Sample, pack_samples

#: (annotation folder, image folders in the order tried): this project's layout, then the VOC devkit's
LAYOUTS = (("annotations", ("images", "JPEGImages")), ("Annotations", ("JPEGImages", "images")))


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
        self.samples = pack_samples(self.samples)  # arrays, shared by DataLoader workers without copies

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


def voc_split_file(root: str | Path, split: str) -> Path:
    """Where split ``split`` of the VOC folder ``root`` is listed (the devkit's ``ImageSets/Main/<split>.txt``)."""
    return Path(root) / "ImageSets" / "Main" / f"{split}.txt"


def voc_layout(path: Path) -> tuple[Path, tuple[str, ...]] | None:
    """(annotation folder holding ``*.xml``, image folder names to try) of a VOC folder, or None."""
    if not path.is_dir():
        return None
    for ann_name, image_names in LAYOUTS:
        ann_dir = path / ann_name
        if ann_dir.is_dir() and any(ann_dir.glob("*.xml")):
            return ann_dir, image_names
    return None


@register_format("voc", lambda path: voc_layout(path) is not None, priority=30, own_splits=True,
                 looks_for="a PASCAL VOC folder (annotations/*.xml + images/, or the devkit's "
                           "Annotations/ + JPEGImages/)")
def open_voc(request: OpenRequest) -> VocDetection:
    """Images in ``image_dir``, else the layout's image folder; ``split`` from :func:`voc_split_file`."""
    layout = voc_layout(request.path)
    if layout is None:
        raise DataError(f"{request.path}: not a VOC folder (no annotations/*.xml or Annotations/*.xml)")
    ann_dir, image_names = layout
    image_dir = request.image_dir
    if image_dir is None:
        found = [request.path / name for name in image_names if (request.path / name).is_dir()]
        if not found:
            raise DataError(f"{request.path}: VOC annotations found but no image folder {list(image_names)}; "
                            "pass image_dir")
        image_dir = found[0]
    options = dict(request.options)
    if request.split:
        options["split_file"] = voc_split_file(request.path, request.split)
    return VocDetection(ann_dir, image_dir, **options)


def _text(node: ET.Element, tag: str, path: Path, where: str = "") -> str:
    value = node.findtext(tag)
    if value is None or not value.strip():
        place = f" in {where}" if where else ""
        raise DataError(f"{path}: missing <{tag}>{place}")
    return value
