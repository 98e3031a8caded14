"""Data sets: COCO, PASCAL VOC, YOLO and KITTI readers producing :class:`Sample` s, and synthetic generators.

Each format module registers itself (:mod:`.formats`): importing it here is what makes :func:`open_dataset`
recognise the format.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .coco import CocoDetection
from .convert import to_coco_dict
from .formats import FORMATS, OpenRequest, check_keypoints, find_format
from .io import DataError, read_image
from .kitti import KittiDetection
from .sample import DetectionSource, Sample
from .splits import list_file, select_listed
from .synthetic import make_synthetic_dataset
from .voc import VocDetection
from .yolo import IMAGE_EXTENSIONS, YoloDetection, has_images

__all__ = [
    "Sample", "DetectionSource", "CocoDetection", "VocDetection", "YoloDetection", "KittiDetection", "make_synthetic_dataset",
    "read_image", "DataError", "open_dataset", "to_coco_dict", "has_images", "FORMATS",
]


def open_dataset(spec: str | Path, image_dir: str | Path | None = None, keypoints: bool | None = None,
                 split: str | None = None, **kwargs: Any) -> DetectionSource:
    """Open a data set (the named ``split`` of it, see :mod:`.splits`), its format guessed from ``spec`` by the
    probes of the registered formats (:mod:`.formats`, asked in priority order):

    * ``coco``: a ``.json`` file -> :class:`CocoDetection`. Images: ``image_dir``, else the standard layout
      ``<root>/annotations/instances_X.json`` (or ``person_keypoints_X.json``) -> ``<root>/X/``.
      ``keypoints=None`` means True for ``person_keypoints_*`` files; the other formats have no keypoints
      (``keypoints=True`` with them is a :class:`DataError`, False/None is accepted). A COCO folder (``<root>``
      with ``annotations/instances_X.json``) -> the :class:`CocoDetection` of the split ``split="X"`` (a prefix
      only one split has will do; a folder of one split needs none), ``person_keypoints_X.json`` with
      ``keypoints=True``.
    * ``kitti``: a folder with ``training/label_2`` (or ``label_2`` and ``calib``) -> :class:`KittiDetection`
      (``split="train"`` etc. picks ``ImageSets/<split>.txt``); a split file ``<root>/ImageSets/<name>.txt``
      itself -> :class:`KittiDetection` of ``<root>`` with that split (e.g. the 3DOP ``train.txt``).
    * ``voc``: a folder with ``annotations/*.xml`` (or VOC devkit ``Annotations/``) -> :class:`VocDetection`,
      images in ``image_dir`` or ``images/`` (``JPEGImages/``).
    * ``yolo``: a folder with ``images/`` -> :class:`YoloDetection` on ``images/`` (or its only sub-folder, as in
      ``coco128/images/train2017``); a folder holding images itself -> :class:`YoloDetection` on it.

    Other keyword arguments go to the reader (``class_names``, ``label_dir``, ``split_file``, ...).
    """
    spec = Path(spec)
    fmt = find_format(spec)
    check_keypoints(fmt, spec, keypoints)
    request = OpenRequest(spec, Path(image_dir) if image_dir is not None else None, keypoints, split, kwargs)
    source = fmt(request)
    if split and not fmt.own_splits:
        source = select_listed(source, list_file(spec, split))
    return source
