"""KITTI object benchmark reader (labels, P2 calibration, splits) for monocular 3D detection (SPEC 6)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .convert import BoxCleaner, check_images, to_coco_dict
from .formats import OpenRequest, register_format
from .io import DataError, image_size
from .kitti_labels import DONT_CARE, KITTI_CLASSES, KITTI_TYPES, KittiObject, NotANumber, read_kitti_labels
from .sample import DetectionSource, Sample, pack_samples

#: types that are ignore regions on one trained class only (as the original trains)
IGNORED_ON = {"Van": "Car", "Truck": "Car", "Person_sitting": "Pedestrian"}
#: types left out entirely
DROPPED_TYPES = ("Tram", "Misc")
#: ``extra["ignore_class"]`` of a trained object and of a DontCare region
NOT_IGNORED, DONT_CARE_CLASS = -1, -2
MIN_DEPTH = 0.1  # metres: a box centre closer to the camera plane than this is not projected


def read_label_file(path: str | Path) -> list[KittiObject]:
    """A KITTI label (15 fields a line) or result (16, with a score) file of KITTI's object types
    (:func:`.kitti_labels.read_kitti_labels`); :class:`DataError` naming the file and line on a wrong field
    count, a non-number or an unknown type."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"KITTI label file not found: {path}")
    try:
        return read_kitti_labels(path, types=KITTI_TYPES)
    except NotANumber as err:
        raise DataError(f"{err.where}: non-numeric field ({err.problem})") from err


def read_calib(path: str | Path) -> np.ndarray:
    """The ``P2:`` camera matrix [3, 4] float32 of a KITTI calibration file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"KITTI calibration file not found: {path}")
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        key, _, values = line.partition(":")
        if key.strip() != "P2":
            continue
        try:
            numbers = [float(x) for x in values.split()]
        except ValueError as exc:
            raise DataError(f"{path}:{number}: non-numeric P2 ({exc})") from exc
        if len(numbers) != 12:
            raise DataError(f"{path}:{number}: P2 has {len(numbers)} values, expected 12")
        return np.array(numbers, dtype=np.float32).reshape(3, 4)
    raise DataError(f"{path}: no 'P2:' line (not a KITTI object calibration file?)")


def project_to_image(points: np.ndarray, calib: np.ndarray) -> np.ndarray:
    """Camera points [N, 3] -> image pixels [N, 2] through the [3, 4] camera matrix ``calib`` (P2)."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    homo = np.concatenate([points, np.ones((len(points), 1))], axis=1) @ np.asarray(calib, np.float64).T
    return homo[:, :2] / homo[:, 2:3]


def box3d_corners(dim: Sequence[float], loc: Sequence[float], rot_y: float) -> np.ndarray:
    """The 8 corners [8, 3] of a KITTI box: ``dim`` (h, w, l), ``loc`` its bottom centre (camera
    coordinates, y down), ``rot_y`` its yaw about the camera y axis. Bottom corners 0-3, top 4-7; the
    face (0, 1, 5, 4) is the front (the object's +x, where ``rot_y`` points)."""
    h, w, l = (float(v) for v in dim)
    c, s = np.cos(rot_y), np.sin(rot_y)
    rot = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    x = np.array([l, l, -l, -l, l, l, -l, -l]) / 2
    y = np.array([0, 0, 0, 0, -h, -h, -h, -h])
    z = np.array([w, -w, -w, w, w, -w, -w, w]) / 2
    return (rot @ np.stack([x, y, z]) + np.asarray(loc, dtype=np.float64).reshape(3, 1)).T


class KittiDetection(DetectionSource):
    """KITTI object labels as :class:`Sample` s (annotations only; images read lazily).

    * Layout: ``root/training/{image_2, label_2, calib}`` (or ``root`` is ``training/`` itself);
      ``image_dir`` overrides ``image_2``. Frames: every ``label_2/*.txt``, or the ids of a split file:
      ``split="train"`` / ``"val"`` (any bare name) is looked up as ``ImageSets/<split>.txt`` next to
      ``training/``, in ``root`` or in ``training/``; otherwise ``split`` is a path. ``image_id`` is the
      frame number (``000123`` -> 123), so results can be written back as ``%06d.txt``.
    * Classes: ``class_names`` (a subset of Car, Pedestrian, Cyclist; default all three in that order).
      Van and Truck are ignore regions on Car only, Person_sitting on Pedestrian only, DontCare on every
      class; Tram and Misc are dropped (the original's training classes). An ignore region is kept as
      one row per class channel it covers: ``ignore=True``, ``label`` = that channel (so a DontCare
      region appears once per class, and the COCO/VOC box evaluators treat it as a crowd region of
      every class).
    * Per-object ``extra`` arrays (raw label values, image-independent): ``dim`` [N, 3] (h, w, l) and
      ``loc`` [N, 3] (x, y, z of the bottom centre, camera coordinates) in metres, ``rot_y``, ``alpha``,
      ``trunc`` [N] float32, ``occ`` [N] int64, ``type_id`` [N] int64 (index into :data:`KITTI_TYPES`),
      ``ignore_class`` [N] int64: -1 for a trained object, the class channel for a Van / Truck /
      Person_sitting row, -2 for a DontCare row (DontCare rows hold KITTI's -1 / -1000 / -10 3D values).
    * ``keypoints`` [N, 1, 3]: the projected 3D box centre (image pixels, visibility 1 when it lies in the
      image, else 0; the 2D box centre with visibility 0 for rows without 3D), so the 2D augmentation
      moves it with the boxes. ``calib``: P2 [3, 4]. Image sizes come from the PNG headers.
    """

    def __init__(self, root: str | Path, split: str | Path | None = None, image_dir: str | Path | None = None,
                 class_names: Sequence[str] = KITTI_CLASSES) -> None:
        self.root = Path(root)
        base = self.root / "training" if (self.root / "training" / "label_2").is_dir() else self.root
        self.label_dir, self.calib_dir = base / "label_2", base / "calib"
        if not self.label_dir.is_dir():
            raise DataError(f"{self.root}: no KITTI label folder (expected training/label_2 or label_2)")
        self.image_dir = Path(image_dir) if image_dir is not None else base / "image_2"
        unknown = [name for name in class_names if name not in KITTI_CLASSES]
        if unknown or not class_names:
            raise DataError(f"KITTI classes must be a subset of {KITTI_CLASSES}, got {list(class_names)}")
        self.class_names: list[str] = list(class_names)
        self.split_file = self._find_split(split, base)
        self.frame_ids = self._frame_ids()
        cleaner = BoxCleaner(self.label_dir)
        self.samples: list[Sample] = [self._load(index, frame, cleaner) for index, frame in enumerate(self.frame_ids)]
        cleaner.report()
        self.samples = pack_samples(self.samples)  # arrays, shared by DataLoader workers without copies

    def _find_split(self, split: str | Path | None, base: Path) -> Path | None:
        if split is None:
            return None
        path = Path(split)
        if path.is_file():
            return path
        if path.suffix or len(path.parts) > 1:
            raise DataError(f"KITTI split file not found: {path}")
        dirs = list(dict.fromkeys([self.root, base.parent, base]))
        candidates = [d / "ImageSets" / f"{split}.txt" for d in dirs]
        for candidate in candidates:
            if candidate.is_file():
                return candidate
        raise DataError(f"KITTI split {split!r} not found; looked for {[str(c) for c in candidates]}")

    def _frame_ids(self) -> list[str]:
        if self.split_file is None:
            frames = sorted(p.stem for p in self.label_dir.glob("*.txt"))
            if not frames:
                raise DataError(f"no .txt label files in {self.label_dir}")
            return frames
        frames = []
        for number, line in enumerate(self.split_file.read_text().splitlines(), start=1):
            frame = line.strip()
            if not frame:
                continue
            if not (self.label_dir / f"{frame}.txt").is_file():
                raise DataError(f"{self.split_file}:{number}: frame {frame!r} has no label file "
                                f"{self.label_dir / (frame + '.txt')}")
            frames.append(frame)
        if not frames:
            raise DataError(f"{self.split_file}: no frame ids")
        return frames

    def _load(self, index: int, frame: str, cleaner: BoxCleaner) -> Sample:
        label_file = self.label_dir / f"{frame}.txt"
        objects = read_label_file(label_file)
        calib = read_calib(self.calib_dir / f"{frame}.txt")
        image_path = self._image_path(frame)
        if image_path is None:
            raise DataError(f"{label_file}: image {self.image_dir / (frame + '.png')} not found")
        width, height = image_size(image_path)
        channel = {name: c for c, name in enumerate(self.class_names)}
        rows: list[tuple[int, int, KittiObject, tuple[float, float, float, float]]] = []
        for obj in objects:
            if obj.type in DROPPED_TYPES:
                continue
            if obj.type == DONT_CARE:
                targets = [(c, DONT_CARE_CLASS) for c in range(len(self.class_names))]
            elif obj.type in IGNORED_ON:
                on = IGNORED_ON[obj.type]
                targets = [(channel[on], channel[on])] if on in channel else []
            else:
                targets = [(channel[obj.type], NOT_IGNORED)] if obj.type in channel else []
            box = cleaner.clean(*obj.bbox, width, height) if targets else None
            if box is not None:
                rows += [(label, ignore_class, obj, box) for label, ignore_class in targets]
        return self._sample(index, frame, image_path, width, height, calib, rows)

    def _image_path(self, frame: str) -> Path | None:
        for ext in (".png", ".jpg", ".jpeg"):
            path = self.image_dir / f"{frame}{ext}"
            if path.is_file():
                return path
        return None

    def _sample(self, index: int, frame: str, path: Path, width: int, height: int, calib: np.ndarray,
                rows: list) -> Sample:
        n = len(rows)
        objs = [r[2] for r in rows]
        boxes = np.array([r[3] for r in rows], dtype=np.float32).reshape(n, 4)
        ignore_class = np.array([r[1] for r in rows], dtype=np.int64)
        dim = np.array([o.dimensions for o in objs], dtype=np.float32).reshape(n, 3)
        loc = np.array([o.location for o in objs], dtype=np.float32).reshape(n, 3)
        extra = {
            "dim": dim, "loc": loc,
            "rot_y": np.array([o.rotation_y for o in objs], dtype=np.float32),
            "alpha": np.array([o.alpha for o in objs], dtype=np.float32),
            "trunc": np.array([o.truncated for o in objs], dtype=np.float32),
            "occ": np.array([o.occluded for o in objs], dtype=np.int64),
            "type_id": np.array([KITTI_TYPES.index(o.type) for o in objs], dtype=np.int64),
            "ignore_class": ignore_class,
        }
        return Sample(image_id=int(frame) if frame.isdigit() else index, path=path, width=width, height=height,
                      boxes=boxes, labels=np.array([r[0] for r in rows], dtype=np.int64), ignore=ignore_class != -1,
                      keypoints=projected_centers(boxes, dim, loc, calib, width, height), calib=calib, extra=extra)

    def check_images(self, decode: bool = False) -> None:
        """Raise :class:`DataError` listing (up to 10) images that are missing (or, with ``decode``, unreadable)."""
        check_images(self.samples, decode=decode, where=f" in {self.image_dir}")

    def to_coco_dict(self) -> dict[str, Any]:
        """COCO-style 2D ground truth (category ids 1..C; ignore regions as ``iscrowd`` of their class)."""
        return to_coco_dict(self)


def projected_centers(boxes: np.ndarray, dim: np.ndarray, loc: np.ndarray, calib: np.ndarray, width: int,
                      height: int) -> np.ndarray:
    """Keypoints [N, 1, 3]: the image of each 3D box centre (loc - h/2 in y), visibility 1 inside the image.

    Rows without a usable 3D box (DontCare, or in front of the camera by less than ``MIN_DEPTH``) get their
    2D box centre and visibility 0."""
    n = len(boxes)
    out = np.zeros((n, 1, 3), dtype=np.float32)
    out[:, 0, 0] = (boxes[:, 0] + boxes[:, 2]) / 2
    out[:, 0, 1] = (boxes[:, 1] + boxes[:, 3]) / 2
    centers = loc - np.stack([np.zeros(n), dim[:, 0] / 2, np.zeros(n)], axis=1).astype(np.float32)
    has_3d = (dim > 0).all(axis=1) & (centers[:, 2] > MIN_DEPTH)
    if has_3d.any():
        uv = project_to_image(centers[has_3d], calib)
        out[has_3d, 0, :2] = uv
        inside = (uv[:, 0] >= 0) & (uv[:, 0] < width) & (uv[:, 1] >= 0) & (uv[:, 1] < height)
        out[has_3d, 0, 2] = inside
    return out


def is_kitti(path: Path) -> bool:
    """A KITTI object folder (``training/label_2``, or ``label_2`` and ``calib``) or a split file in it."""
    if path.is_file():
        return path.suffix.lower() == ".txt" and path.parent.name == "ImageSets"
    return (path / "training" / "label_2").is_dir() or ((path / "label_2").is_dir() and (path / "calib").is_dir())


@register_format("kitti", is_kitti, priority=20, own_splits=True,
                 looks_for="a KITTI folder (training/label_2, or label_2 + calib) or its split file "
                           "ImageSets/<name>.txt")
def open_kitti(request: OpenRequest) -> KittiDetection:
    """A split file ``<root>/ImageSets/<name>.txt`` opens ``<root>`` with that split (``split`` is not used)."""
    if request.path.is_file():
        return KittiDetection(request.path.parent.parent, split=request.path, image_dir=request.image_dir,
                              **request.options)
    return KittiDetection(request.path, split=request.split, image_dir=request.image_dir, **request.options)
