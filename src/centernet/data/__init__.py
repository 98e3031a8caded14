"""Data sets: COCO, PASCAL VOC, YOLO and KITTI readers producing :class:`Sample` s, and a synthetic generator."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .coco import CocoDetection
from .convert import to_coco_dict
from .io import DataError, read_image
from .kitti import KittiDetection
from .sample import DetectionSource, Sample
from .splits import list_file, select_listed, voc_split_file
from .synthetic import make_synthetic_dataset
from .voc import VocDetection
from .yolo import IMAGE_EXTENSIONS, YoloDetection

__all__ = [
    "Sample", "DetectionSource", "CocoDetection", "VocDetection", "YoloDetection", "KittiDetection", "make_synthetic_dataset",
    "read_image", "DataError", "open_dataset", "to_coco_dict", "has_images",
]


def open_dataset(spec: str | Path, image_dir: str | Path | None = None, keypoints: bool | None = None,
                 split: str | None = None, **kwargs: Any) -> DetectionSource:
    """Open a data set (the named ``split`` of it, see :mod:`.splits`), guessing its format from ``spec``.

    * a ``.json`` file -> :class:`CocoDetection`. Images: ``image_dir``, else the standard layout
      ``<root>/annotations/instances_X.json`` (or ``person_keypoints_X.json``) -> ``<root>/X/``.
      ``keypoints=None`` means True for ``person_keypoints_*`` files; VOC and YOLO have no keypoints
      (``keypoints=True`` with them is a :class:`DataError`, False/None is accepted).
    * a folder with ``annotations/*.xml`` (or VOC devkit ``Annotations/``) -> :class:`VocDetection`,
      images in ``image_dir`` or ``images/`` (``JPEGImages/``).
    * a folder with ``images/`` -> :class:`YoloDetection` on ``images/`` (or its only sub-folder, as in
      ``coco128/images/train2017``); a folder holding images itself -> :class:`YoloDetection` on it.
    * a folder with ``training/label_2`` (or ``label_2`` and ``calib``) -> :class:`KittiDetection`
      (``split="train"`` etc. picks ``ImageSets/<split>.txt``); a split file ``<root>/ImageSets/<name>.txt``
      itself -> :class:`KittiDetection` of ``<root>`` with that split (e.g. the 3DOP ``train.txt``).

    Other keyword arguments go to the reader (``class_names``, ``label_dir``, ``split_file``, ...).
    """
    spec = Path(spec)
    source = _open(spec, image_dir, keypoints, split, kwargs)
    if split and not isinstance(source, (VocDetection, KittiDetection)):  # those read their own split files
        source = select_listed(source, list_file(spec, split))
    return source


def _open(spec: Path, image_dir: str | Path | None, keypoints: bool | None, split: str | None,
          kwargs: dict[str, Any]) -> DetectionSource:
    if spec.is_file() and spec.suffix.lower() == ".txt" and spec.parent.name == "ImageSets":
        return KittiDetection(spec.parent.parent, split=spec, image_dir=image_dir, **kwargs)
    if spec.is_file():
        if spec.suffix.lower() != ".json":
            raise DataError(f"{spec}: cannot guess the data set format (expected a COCO .json file, a KITTI "
                            "ImageSets/<split>.txt or a folder)")
        if image_dir is None:
            image_dir = _coco_image_dir(spec)
        if keypoints is None:
            keypoints = spec.name.startswith("person_keypoints")
        return CocoDetection(spec, image_dir, keypoints=keypoints, **kwargs)
    if not spec.is_dir():
        raise DataError(f"data set not found: {spec}")
    if keypoints:
        raise DataError(f"{spec}: keypoints need a COCO person_keypoints json; VOC and YOLO folders have none")
    if (spec / "training" / "label_2").is_dir() or ((spec / "label_2").is_dir() and (spec / "calib").is_dir()):
        return KittiDetection(spec, image_dir=image_dir, **({"split": split} if split else {}), **kwargs)
    for ann_name, image_names in (("annotations", ("images", "JPEGImages")), ("Annotations", ("JPEGImages", "images"))):
        ann_dir = spec / ann_name
        if ann_dir.is_dir() and any(ann_dir.glob("*.xml")):
            if image_dir is None:
                found = [spec / name for name in image_names if (spec / name).is_dir()]
                if not found:
                    raise DataError(f"{spec}: VOC annotations found but no image folder {list(image_names)}; pass image_dir")
                image_dir = found[0]
            if split:
                kwargs["split_file"] = voc_split_file(spec, split)
            return VocDetection(ann_dir, image_dir, **kwargs)
    if (spec / "images").is_dir():
        images = spec / "images"
        if not has_images(images):
            subdirs = sorted(p for p in images.iterdir() if p.is_dir())
            if len(subdirs) != 1:
                raise DataError(f"{images}: no images here and {len(subdirs)} sub-folders {[p.name for p in subdirs]}; "
                                "open one of them explicitly")
            images = subdirs[0]
        return YoloDetection(images, **kwargs)
    if has_images(spec):
        return YoloDetection(spec, **kwargs)
    raise DataError(f"{spec}: cannot guess the data set format (no COCO .json, no annotations/*.xml, no images/ folder)")


def _coco_image_dir(ann_file: Path) -> Path:
    """``<root>/annotations/instances_X.json`` -> ``<root>/X`` (must exist)."""
    split = ann_file.stem.split("_")[-1]
    root = ann_file.parent.parent if ann_file.parent.name == "annotations" else ann_file.parent
    candidate = root / split
    if not candidate.is_dir():
        raise DataError(f"{ann_file}: image folder not given and the standard location {candidate} does not exist; pass image_dir")
    return candidate


def has_images(folder: Path) -> bool:
    """Whether ``folder`` itself holds image files (not only sub-folders)."""
    return any(p.suffix.lower() in IMAGE_EXTENSIONS for p in folder.iterdir() if p.is_file())
