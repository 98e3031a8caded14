"""YOLO (darknet / ultralytics) txt label reader."""
from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .convert import BoxCleaner, check_images, to_coco_dict
from .formats import OpenRequest, register_format
from .io import DataError, read_image
from .sample import DetectionSource, Sample, pack_samples

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
# Normalised coordinates may overshoot [0, 1] by this much (a common export artefact: they are clipped,
# with one counted warning naming the files); more is an error.
NORM_TOLERANCE = 0.05


def default_label_dir(image_dir: str | Path) -> Path:
    """The ultralytics convention: the last ``images`` path component replaced by ``labels``.

    Without an ``images`` component the labels are expected next to the images.
    """
    parts = list(Path(image_dir).parts)
    for k in range(len(parts) - 1, -1, -1):
        if parts[k] == "images":
            parts[k] = "labels"
            return Path(*parts)
    return Path(image_dir)


class YoloDetection(DetectionSource):
    """Boxes from YOLO txt labels: one ``<stem>.txt`` per image, lines ``class cx cy w h`` normalised to [0, 1].

    * Images: every file with an image extension in ``image_dir``, sorted; ``image_id`` is the 1-based
      position. Image sizes (needed to un-normalise) are read by decoding each image once at construction
      (a decode, not a header read, so EXIF rotation matches :func:`read_image`).
    * Labels: ``label_dir`` or :func:`default_label_dir`. A missing label file is an image without objects.
      Lines with more than 5 fields are read as ultralytics polygons (``class x1 y1 x2 y2 ...``) and
      become the polygon's bounding box.
    * Classes: ``class_names`` if given (a class index out of range is a :class:`DataError`), else the
      lines of ``classes.txt`` in the label folder if present, else ``"0" .. str(max index)``.
    """

    def __init__(self, image_dir: str | Path, label_dir: str | Path | None = None,
                 class_names: Sequence[str] | None = None) -> None:
        self.image_dir = Path(image_dir)
        self.label_dir = Path(label_dir) if label_dir is not None else default_label_dir(self.image_dir)
        if not self.image_dir.is_dir():
            raise DataError(f"YOLO image folder not found: {self.image_dir}")
        image_files = sorted(p for p in self.image_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        if not image_files:
            raise DataError(f"no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) in {self.image_dir}")
        classes_file = self.label_dir / "classes.txt"
        if class_names is None and classes_file.is_file():
            class_names = [line.strip() for line in classes_file.read_text().splitlines() if line.strip()]
        num_classes = len(class_names) if class_names is not None else None
        parsed = [self._parse(self.label_dir / f"{p.stem}.txt", num_classes) for p in image_files]
        labels = [rows for rows, _ in parsed]
        self._warn_outside([(p, n) for p, (_, n) in zip(image_files, parsed) if n])
        self._warn_orphans(image_files)
        if class_names is None:
            top = max((int(row[0]) for rows in labels for row in rows), default=-1)
            class_names = [str(k) for k in range(top + 1)]
        self.class_names: list[str] = list(class_names)
        with ThreadPoolExecutor(max_workers=4) as pool:
            sizes = list(pool.map(_image_size, image_files))
        cleaner = BoxCleaner(self.label_dir)
        self.samples: list[Sample] = []
        for index, (path, rows, (width, height)) in enumerate(zip(image_files, labels, sizes)):
            boxes, classes = [], []
            for cls, cx, cy, w, h in rows:
                box = cleaner.clean((cx - w / 2) * width, (cy - h / 2) * height,
                                    (cx + w / 2) * width, (cy + h / 2) * height, width, height)
                if box is not None:
                    boxes.append(box)
                    classes.append(int(cls))
            self.samples.append(Sample(
                image_id=index + 1, path=path, width=width, height=height,
                boxes=np.array(boxes, dtype=np.float32).reshape(-1, 4), labels=np.array(classes, dtype=np.int64)))
        cleaner.report()
        self.samples = pack_samples(self.samples)  # arrays, shared by DataLoader workers without copies

    @staticmethod
    def _parse(path: Path, num_classes: int | None) -> tuple[list[tuple[float, float, float, float, float]], int]:
        """Rows (class, cx, cy, w, h) of one label file ([] when the file does not exist), and the number of
        lines with coordinates slightly outside [0, 1]."""
        if not path.is_file():
            return [], 0
        rows, outside = [], 0
        for lineno, line in enumerate(path.read_text().splitlines(), start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) < 5 or (len(fields) > 5 and len(fields) % 2 == 0):
                raise DataError(f"{path} line {lineno}: expected 'class cx cy w h' (or 'class x1 y1 x2 y2 ...'), got {line.strip()!r}")
            try:
                values = [float(v) for v in fields]
            except ValueError as exc:
                raise DataError(f"{path} line {lineno}: non-numeric value in {line.strip()!r}") from exc
            cls = values[0]
            if not np.isfinite(cls) or cls != int(cls) or cls < 0:
                raise DataError(f"{path} line {lineno}: class index must be a non-negative integer, got {fields[0]!r}")
            if num_classes is not None and cls >= num_classes:
                raise DataError(f"{path} line {lineno}: class index {int(cls)} out of range for {num_classes} classes")
            coords = np.array(values[1:], dtype=np.float64)
            if not np.all(np.isfinite(coords)) or coords.min() < -NORM_TOLERANCE or coords.max() > 1 + NORM_TOLERANCE:
                raise DataError(f"{path} line {lineno}: coordinates must be normalised to [0, 1], got {line.strip()!r}")
            outside += int(coords.min() < 0 or coords.max() > 1)
            if len(fields) == 5:
                rows.append((cls, *coords))
            else:
                xs, ys = coords[0::2], coords[1::2]
                rows.append((cls, (xs.min() + xs.max()) / 2, (ys.min() + ys.max()) / 2, xs.max() - xs.min(), ys.max() - ys.min()))
        return rows, outside

    def _warn_outside(self, files: list[tuple[Path, int]]) -> None:
        """One warning for the label lines clipped into [0, 1], counted and naming the files."""
        if files:
            names = [f"{p.stem}.txt" for p, _ in files]
            warnings.warn(f"clipped {sum(n for _, n in files)} label lines in {len(files)} files of {self.label_dir} "
                          f"whose coordinates were slightly outside [0, 1]: {', '.join(names[:10])}"
                          + (" ..." if len(names) > 10 else ""), stacklevel=3)

    def _warn_orphans(self, image_files: list[Path]) -> None:
        if not self.label_dir.is_dir():
            return
        stems = {p.stem for p in image_files}
        orphans = sorted(p.name for p in self.label_dir.glob("*.txt") if p.stem not in stems and p.name != "classes.txt")
        if orphans:
            warnings.warn(f"{len(orphans)} label files in {self.label_dir} have no image in {self.image_dir} "
                          f"(ignored): {orphans[:5]}", stacklevel=3)

    def check_images(self, decode: bool = False) -> None:
        """Raise :class:`DataError` listing (up to 10) images that are missing (or, with ``decode``, unreadable)."""
        check_images(self.samples, decode=decode, where=f" in {self.image_dir}")

    def to_coco_dict(self) -> dict[str, Any]:
        """COCO-style ground truth (category ids 1..C)."""
        return to_coco_dict(self)


def has_images(folder: Path) -> bool:
    """Whether ``folder`` itself holds image files (not only sub-folders)."""
    return any(p.suffix.lower() in IMAGE_EXTENSIONS for p in folder.iterdir() if p.is_file())


def is_yolo_folder(path: Path) -> bool:
    return path.is_dir() and ((path / "images").is_dir() or has_images(path))


# The loosest probe (any folder with images), so asked last.
@register_format("yolo", is_yolo_folder, priority=90,
                 looks_for="a YOLO folder (images/ + labels/, or a folder of images with their .txt labels)")
def open_yolo(request: OpenRequest) -> YoloDetection:
    """``<path>/images`` (or its only sub-folder, as in ``coco128/images/train2017``), else ``path`` itself."""
    images = request.path / "images"
    if not images.is_dir():
        return YoloDetection(request.path, **request.options)
    if not has_images(images):
        subdirs = sorted(p for p in images.iterdir() if p.is_dir())
        if len(subdirs) != 1:
            raise DataError(f"{images}: no images here and {len(subdirs)} sub-folders {[p.name for p in subdirs]}; "
                            "open one of them explicitly")
        images = subdirs[0]
    return YoloDetection(images, **request.options)


def _image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image as :func:`read_image` would return it."""
    height, width = read_image(path).shape[:2]
    return width, height
