"""COCO json reader (instances and person keypoints)."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from .convert import BoxCleaner, check_images
from .formats import OpenRequest, register_format
from .io import DataError
from .sample import DetectionSource, Sample


def load_coco_json(ann_file: str | Path) -> dict[str, Any]:
    """Read a COCO annotation file; raises :class:`DataError` naming the file if it is not usable json."""
    ann_file = Path(ann_file)
    if not ann_file.is_file():
        raise DataError(f"COCO annotation file not found: {ann_file}")
    try:
        text = ann_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{ann_file}: cannot read COCO annotation file ({exc})") from exc
    if not text.strip():
        raise DataError(f"{ann_file}: COCO annotation file is empty")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{ann_file}: not valid json ({exc})") from exc
    except RecursionError:  # arrays or objects nested thousands deep: no annotation file looks like that
        raise DataError(f"{ann_file}: json nested too deeply to be a COCO annotation file") from None
    if not isinstance(data, dict):
        raise DataError(f"{ann_file}: expected a json object with 'images', 'annotations', 'categories', got {type(data).__name__}")
    missing = [key for key in ("images", "annotations", "categories") if not isinstance(data.get(key), list)]
    if missing:
        raise DataError(f"{ann_file}: not a COCO annotation file, missing or non-list key(s) {missing}")
    return data


class CocoDetection(DetectionSource):
    """Boxes (and optionally person keypoints) from a COCO json; images are read lazily.

    Category ids map to contiguous labels 0..C-1 in sorted id order: ``cat_ids[label]`` is the COCO
    category id and ``class_names[label]`` its name. ``image_id`` is the COCO image id. Boxes become
    xyxy; ``iscrowd`` annotations are kept with ``ignore=True``. Boxes exceeding the image are clipped;
    boxes with non-positive size or entirely outside the image are skipped; one warning sums both up.
    Image, annotation and category ids must be unique (a repeated one is a :class:`DataError`).
    With ``keypoints=True`` each sample gets ``keypoints`` [N, J, 3] float32 (J from the category's
    keypoint names, 17 for COCO persons), and ``keypoint_names``/``skeleton`` are kept
    (``skeleton`` 1-based as in the file).
    """

    def __init__(self, ann_file: str | Path, image_dir: str | Path, keypoints: bool = False) -> None:
        self.ann_file = Path(ann_file)
        self.image_dir = Path(image_dir)
        self.keypoints = keypoints
        data = load_coco_json(self.ann_file)
        self._load_categories(data["categories"])
        images = self._load_images(data["images"])
        per_image = self._load_annotations(data["annotations"], images)
        self.samples = [self._make_sample(info, per_image[image_id]) for image_id, info in images.items()]

    def _load_categories(self, categories: list[Any]) -> None:
        names: dict[int, str] = {}
        for cat in categories:
            if not isinstance(cat, dict) or not isinstance(cat.get("id"), int):
                raise DataError(f"{self.ann_file}: malformed category entry {cat!r} (needs an integer 'id')")
            names[cat["id"]] = str(cat.get("name", cat["id"]))
        self._check_unique("category", [cat["id"] for cat in categories])
        self.cat_ids: list[int] = sorted(names)
        self.class_names: list[str] = [names[i] for i in self.cat_ids]
        self.cat_to_label: dict[int, int] = {cat_id: label for label, cat_id in enumerate(self.cat_ids)}
        self.keypoint_names: list[str] = []
        self.skeleton: list[list[int]] = []
        if self.keypoints:
            with_kps = [cat for cat in categories if cat.get("keypoints")]
            if not with_kps:
                raise DataError(f"{self.ann_file}: keypoints=True but no category lists 'keypoints' (not a person_keypoints file?)")
            self.keypoint_names = [str(name) for name in with_kps[0]["keypoints"]]
            self.skeleton = [list(map(int, pair)) for pair in with_kps[0].get("skeleton", [])]

    def _load_images(self, entries: list[Any]) -> dict[int, dict[str, Any]]:
        images: dict[int, dict[str, Any]] = {}
        for entry in entries:
            ok = isinstance(entry, dict) and isinstance(entry.get("id"), int) and isinstance(entry.get("file_name"), str)
            if not ok:
                raise DataError(f"{self.ann_file}: malformed image entry {_short(entry)} (needs integer 'id' and 'file_name')")
            image_id = entry["id"]
            width, height = entry.get("width"), entry.get("height")
            if not (isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0):
                raise DataError(f"{self.ann_file}: image id {image_id} ({entry['file_name']}) has no valid 'width'/'height'")
            images[image_id] = entry
        self._check_unique("image", [entry["id"] for entry in entries])
        return images

    def _load_annotations(self, entries: list[Any], images: dict[int, dict[str, Any]]) -> dict[int, list[tuple]]:
        """Validate annotations and group the cleaned ones per image as (box, label, ignore, keypoints)."""
        self._check_unique("annotation", [ann.get("id") for ann in entries if isinstance(ann, dict)])
        per_image: dict[int, list[tuple]] = {image_id: [] for image_id in images}
        cleaner = BoxCleaner(self.ann_file)
        num_joints = len(self.keypoint_names)
        for ann in entries:
            if not isinstance(ann, dict):
                raise DataError(f"{self.ann_file}: malformed annotation entry {_short(ann)}")
            ann_id = ann.get("id")
            cat_id = ann.get("category_id")
            if cat_id not in self.cat_to_label:
                raise DataError(f"{self.ann_file}: annotation id {ann_id} has unknown category id {cat_id!r}")
            image_id = ann.get("image_id")
            if image_id not in images:
                raise DataError(f"{self.ann_file}: annotation id {ann_id} refers to unknown image id {image_id!r}")
            bbox = ann.get("bbox")
            if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox)):
                raise DataError(f"{self.ann_file}: annotation id {ann_id} has malformed 'bbox' {bbox!r} (expected [x, y, w, h])")
            kps = None
            if self.keypoints:
                raw = ann.get("keypoints")
                if not isinstance(raw, list) or len(raw) != 3 * num_joints:
                    got = len(raw) if isinstance(raw, list) else repr(raw)
                    raise DataError(f"{self.ann_file}: annotation id {ann_id} has keypoints of length {got}, expected {3 * num_joints}")
                try:
                    kps = np.asarray(raw, dtype=np.float32).reshape(num_joints, 3)
                except (TypeError, ValueError) as exc:
                    raise DataError(f"{self.ann_file}: annotation id {ann_id} has non-numeric keypoints") from exc
            info = images[image_id]
            x, y, w, h = (float(v) for v in bbox)
            box = cleaner.clean(x, y, x + w, y + h, info["width"], info["height"])
            if box is None:
                continue
            per_image[image_id].append((box, self.cat_to_label[cat_id], bool(ann.get("iscrowd", 0)), kps))
        cleaner.report()
        return per_image

    def _check_unique(self, kind: str, ids: list[Any]) -> None:
        """A :class:`DataError` naming the file, the first repeated id and how often it occurs (and how many
        other ids repeat) when ``ids`` are not unique; absent (None) or unhashable ids are left to the entry
        checks."""
        counts = Counter(i for i in ids if isinstance(i, (int, str)))
        repeated = [(i, n) for i, n in counts.items() if n > 1]
        if repeated:
            first, n = repeated[0]
            others = f" ({len(repeated) - 1} other {kind} ids repeat too)" if len(repeated) > 1 else ""
            raise DataError(f"{self.ann_file}: {kind} id {first!r} occurs {n} times ({n - 1} duplicates){others}; "
                            f"{kind} ids must be unique")

    def _make_sample(self, info: dict[str, Any], objects: list[tuple]) -> Sample:
        keypoints = None
        if self.keypoints:
            keypoints = np.zeros((len(objects), len(self.keypoint_names), 3), dtype=np.float32)
            for k, obj in enumerate(objects):
                keypoints[k] = obj[3]
        return Sample(
            image_id=info["id"],
            path=self.image_dir / info["file_name"],
            width=info["width"],
            height=info["height"],
            boxes=np.array([obj[0] for obj in objects], dtype=np.float32).reshape(-1, 4),
            labels=np.array([obj[1] for obj in objects], dtype=np.int64),
            ignore=np.array([obj[2] for obj in objects], dtype=bool),
            keypoints=keypoints,
        )

    def check_images(self, decode: bool = False) -> None:
        """Raise :class:`DataError` listing (up to 10) images that are missing (or, with ``decode``, unreadable)."""
        check_images(self.samples, decode=decode, where=f" in {self.image_dir} (annotations {self.ann_file})")

    def to_coco_dict(self) -> dict[str, Any]:
        """The original annotation file's content (the evaluator can also just use ``ann_file``); annotations
        without an ``id`` (some tools write none; pycocotools indexes by it) are numbered after the largest."""
        data = load_coco_json(self.ann_file)
        anns = [ann for ann in data["annotations"] if isinstance(ann, dict)]
        unnumbered = [ann for ann in anns if ann.get("id") is None]
        if unnumbered:
            start = max((ann["id"] for ann in anns if isinstance(ann.get("id"), int)), default=0) + 1
            for k, ann in enumerate(unnumbered):
                ann["id"] = start + k
        return data


def is_coco_json(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() == ".json"


@register_format("coco", is_coco_json, priority=10, keypoints="a COCO person_keypoints json",
                 looks_for="a COCO .json file (instances_X.json, person_keypoints_X.json)")
def open_coco(request: OpenRequest) -> CocoDetection:
    """Images in ``image_dir``, else the standard layout's (:func:`coco_image_dir`); ``keypoints=None`` means
    True for ``person_keypoints_*`` files."""
    image_dir = request.image_dir if request.image_dir is not None else coco_image_dir(request.path)
    keypoints = request.path.name.startswith("person_keypoints") if request.keypoints is None else request.keypoints
    return CocoDetection(request.path, image_dir, keypoints=keypoints, **request.options)


def coco_image_dir(ann_file: Path) -> Path:
    """``<root>/annotations/instances_X.json`` -> ``<root>/X`` (must exist)."""
    split = ann_file.stem.split("_")[-1]
    root = ann_file.parent.parent if ann_file.parent.name == "annotations" else ann_file.parent
    candidate = root / split
    if not candidate.is_dir():
        raise DataError(f"{ann_file}: image folder not given and the standard location {candidate} does not exist; pass image_dir")
    return candidate


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
