"""One sample type for every data format and task."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class Sample:
    """An image and its annotations in image pixels.

    ``boxes`` [N, 4] float32 (x1, y1, x2, y2); ``labels`` [N] int64, contiguous 0..C-1;
    ``keypoints`` [N, J, 3] float32 (x, y, visibility) or None; ``calib`` [3, 4] camera matrix (P2) or None;
    ``extra`` holds task-specific per-object arrays (e.g. 3D dims, depth, alpha).
    ``ignore`` [N] bool marks crowd regions: kept for evaluation, never a training target.
    """

    image_id: int
    path: Path
    width: int
    height: int
    boxes: np.ndarray
    labels: np.ndarray
    ignore: np.ndarray | None = None
    keypoints: np.ndarray | None = None
    calib: np.ndarray | None = None
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        if self.ignore is None:
            self.ignore = np.zeros(len(self.labels), dtype=bool)
        if not (len(self.boxes) == len(self.labels) == len(self.ignore)):
            raise ValueError(f"{self.path}: {len(self.boxes)} boxes but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)


class DetectionSource:
    """Protocol of a data-set reader: indexable Samples, class names, and (lazily) image loading.

    Subclasses set ``class_names`` and ``samples`` (annotations only; images are read on demand by
    :func:`centernet.data.io.read_image`).
    """

    class_names: list[str]
    samples: list[Sample]
    #: names of scorers (centernet.evaluation.scoring.SCORERS) this data set is also scored with
    extra_scorers: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Sample:
        return self.samples[index]


def category_ids(source: DetectionSource) -> list[int]:
    """Data set category id of each contiguous label (COCO ids; 1..C for formats without ids)."""
    ids = getattr(source, "cat_ids", None)
    return list(ids) if ids else list(range(1, len(source.class_names) + 1))


class Subset(DetectionSource):
    """The samples ``indices`` of ``source`` (class names, category ids and keypoint names kept).

    Its COCO ground truth holds only these images, so a subset is scored on its own.
    """

    def __init__(self, source: DetectionSource, indices) -> None:
        self.source = source
        self.class_names = source.class_names
        self.samples = [source.samples[i] for i in indices]
        for name in ("cat_ids", "keypoint_names", "skeleton", "extra_scorers"):
            if hasattr(source, name):
                setattr(self, name, getattr(source, name))


class Relabeled(DetectionSource):
    """``source`` with its labels in the order of ``class_names``: the same names as the source's, in another
    order (a model's classes met by name). ``cat_ids[label]`` stays the data set's category id of that name,
    so results carry the data set's ids; everything else (images, boxes, the ground-truth file, the image
    check) is the source's own."""

    def __init__(self, source: DetectionSource, class_names: list[str]) -> None:
        names = list(source.class_names)
        if sorted(names) != sorted(class_names) or len(set(names)) != len(names):
            raise ValueError(f"cannot reorder the classes {names} as {list(class_names)}")
        old_label = [names.index(name) for name in class_names]  # new label -> the source's label
        new_label = np.empty(len(names), dtype=np.int64)
        new_label[old_label] = np.arange(len(names))
        source_ids = category_ids(source)
        self.source = source
        self.class_names = list(class_names)
        self.cat_ids = [source_ids[label] for label in old_label]
        self.samples = [dataclasses.replace(s, labels=new_label[s.labels]) for s in source.samples]
        if hasattr(source, "extra_scorers"):
            self.extra_scorers = source.extra_scorers

    def __getattr__(self, name: str):
        """The source's other attributes and methods (``to_coco_dict``, ``check_images``, ``keypoint_names``, ...)."""
        if name.startswith("__") or name == "source":  # unpickling looks these up before ``source`` is set
            raise AttributeError(name)
        return getattr(self.source, name)
