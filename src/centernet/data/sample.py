"""One sample type for every data format and task, and the compact store a data set keeps its samples in.

A data set of COCO's size holds 118,287 images and 860,001 boxes. Kept as that many ``Sample`` objects (each a
dataclass, a dict, a ``Path`` and three to five arrays) they cost about 1 KB of Python objects per image, and
every DataLoader worker, forked from the process that opened the data, copies the memory pages of every
sample it reads: reading one touches the reference counts of its objects, and a page written to is copied
(4.7 to 13 KB per sample read, 0.6 GB per worker and epoch on COCO). :class:`SampleTable` keeps the same
content in a few arrays (boxes, labels, ignore flags, keypoints, ... of every object, one row range per
image, file names packed into one byte array) that workers read without writing to them, and makes a
:class:`Sample` on each access: ``source.samples`` stays a read-only sequence of samples.
"""
from __future__ import annotations

import dataclasses
import operator
import os
import posixpath
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

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


def small_labels(labels: np.ndarray) -> np.ndarray:
    """``labels`` as int32 when they fit (half the memory; a sample reads them back as int64)."""
    labels = np.asarray(labels, dtype=np.int64)
    info = np.iinfo(np.int32)
    fits = labels.size == 0 or (labels.min() >= info.min and labels.max() <= info.max)
    return labels.astype(np.int32) if fits else labels


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")  # every str round-trips, lone surrogates of odd file names too


class PackedStrings(Sequence[str]):
    """Strings in one uint8 array (UTF-8) with their ``offsets`` [n + 1]: no Python object per string."""

    def __init__(self, data: np.ndarray, offsets: np.ndarray) -> None:
        self.data, self.offsets = data, offsets

    @classmethod
    def pack(cls, strings: Iterable[str]) -> "PackedStrings":
        encoded = [_encode(text) for text in strings]
        offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(b) for b in encoded], out=offsets[1:])
        return cls(np.frombuffer(b"".join(encoded), dtype=np.uint8).copy(), offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, index: int) -> str:  # type: ignore[override]
        start, end = self.offsets[index], self.offsets[index + 1]
        return self.data[start:end].tobytes().decode("utf-8", "surrogatepass")


class SampleTable(Sequence[Sample]):
    """Samples kept as arrays, a read-only sequence that makes a :class:`Sample` on each access.

    Per image (row): ``image_ids``, ``widths``, ``heights``, ``names`` (:class:`PackedStrings`; the image is
    ``root / name``, or ``Path(name)`` without a root), ``calib`` [n, 3, 4] (or None) and ``starts`` [n + 1]:
    the objects of row r are ``starts[r]:starts[r + 1]`` of the per-object arrays ``boxes`` [M, 4] float32,
    ``labels`` [M], ``ignore`` [M] bool, ``keypoints`` [M, J, 3] (or None) and ``extra`` {name: [M, ...]}.

    A view (:meth:`select`, a slice, :meth:`relabel`) shares the arrays: ``rows`` maps its positions to rows
    and ``label_map`` maps the stored labels. Each access returns new arrays (copies), so changing a sample
    never changes the data set, as with a list of samples that each caller copies before changing.
    """

    def __init__(self, image_ids: np.ndarray, widths: np.ndarray, heights: np.ndarray, names: PackedStrings,
                 starts: np.ndarray, boxes: np.ndarray, labels: np.ndarray, ignore: np.ndarray,
                 keypoints: np.ndarray | None = None, calib: np.ndarray | None = None,
                 extra: dict[str, np.ndarray] | None = None, root: Path | None = None,
                 rows: np.ndarray | None = None, label_map: np.ndarray | None = None) -> None:
        self.image_ids, self.widths, self.heights, self.names = image_ids, widths, heights, names
        self.starts, self.boxes, self.labels, self.ignore = starts, boxes, labels, ignore
        self.keypoints, self.calib, self.extra, self.root = keypoints, calib, dict(extra or {}), root
        self.rows, self.label_map = rows, label_map

    # -- building ----------------------------------------------------------------------------------------
    @classmethod
    def from_columns(cls, image_ids: Sequence[int], widths: Sequence[int], heights: Sequence[int],
                     names: Iterable[str], counts: Sequence[int], boxes: np.ndarray, labels: np.ndarray,
                     ignore: np.ndarray, keypoints: np.ndarray | None = None, root: Path | None = None,
                     calib: np.ndarray | None = None, extra: dict[str, np.ndarray] | None = None) -> "SampleTable":
        """A table of images with ``counts[r]`` objects each, their objects in row order in the per-object
        arrays."""
        starts = np.zeros(len(counts) + 1, dtype=np.int64)
        np.cumsum(np.asarray(counts, dtype=np.int64), out=starts[1:])
        return cls(np.asarray(image_ids, dtype=np.int64), np.asarray(widths, dtype=np.int64),
                   np.asarray(heights, dtype=np.int64), PackedStrings.pack(names), starts,
                   np.ascontiguousarray(boxes, dtype=np.float32).reshape(-1, 4),
                   small_labels(labels), np.asarray(ignore, dtype=bool).reshape(-1),
                   keypoints, calib, extra, root)

    @classmethod
    def from_samples(cls, samples: Sequence[Sample]) -> "SampleTable | None":
        """The table of ``samples`` (each read back equal), or None when they do not fit one: keypoints,
        calibration or ``extra`` fields on some samples only, of other shapes or types, ``extra`` arrays
        that are not per object, ids or sizes that are not integers."""
        if isinstance(samples, SampleTable):
            return samples
        samples = list(samples)
        if not samples:
            return None
        first = samples[0]

        def uniform(get) -> tuple | None:  # None: absent on all; False: mixed
            values = [get(s) for s in samples]
            if all(v is None for v in values):
                return None
            if any(v is None for v in values) or len({(np.asarray(v).dtype, np.asarray(v).shape[1:])
                                                       for v in values}) != 1:
                return False  # type: ignore[return-value]
            return tuple(values)

        try:
            ids = [operator.index(s.image_id) for s in samples]
            widths = [operator.index(s.width) for s in samples]
            heights = [operator.index(s.height) for s in samples]
        except TypeError:
            return None
        keypoints = uniform(lambda s: s.keypoints)
        calib = uniform(lambda s: None if s.calib is None else np.asarray(s.calib)[None])
        keys = set(first.extra)
        if keypoints is False or calib is False or any(set(s.extra) != keys for s in samples):
            return None
        extra = {}
        for key in first.extra:  # in the readers' order
            values = uniform(lambda s: s.extra[key])
            if not values or any(np.asarray(v).ndim == 0 or len(v) != len(s) for v, s in zip(values, samples)):
                return None
            extra[key] = np.concatenate(values)
        if keypoints is not None and any(len(k) != len(s) or np.asarray(k).ndim != 3
                                         for k, s in zip(keypoints, samples)):
            return None
        return cls.from_columns(
            ids, widths, heights, [str(s.path) for s in samples], [len(s) for s in samples],
            np.concatenate([s.boxes for s in samples]), np.concatenate([s.labels for s in samples]),
            np.concatenate([s.ignore for s in samples]),
            keypoints=None if keypoints is None else np.concatenate(keypoints),
            calib=None if calib is None else np.concatenate(calib), extra=extra)

    # -- views -------------------------------------------------------------------------------------------
    def _view(self, rows: np.ndarray | None, label_map: np.ndarray | None) -> "SampleTable":
        view = object.__new__(SampleTable)
        view.__dict__.update(self.__dict__)
        view.rows, view.label_map = rows, label_map
        return view

    def select(self, indices: Iterable[int]) -> "SampleTable":
        """The samples at ``indices`` (positions in this sequence), sharing the arrays."""
        positions = np.asarray(indices if isinstance(indices, (np.ndarray, range, list)) else list(indices),
                               dtype=np.int64).reshape(-1)
        n = len(self)
        if positions.size and (positions.min() < -n or positions.max() >= n):
            raise IndexError(f"sample index out of range (a data set of {n} samples)")
        positions = positions % n if n else positions
        return self._view(positions if self.rows is None else self.rows[positions], self.label_map)

    def relabel(self, new_label: np.ndarray) -> "SampleTable":
        """These samples with label ``k`` read as ``new_label[k]``, sharing the arrays."""
        new_label = np.asarray(new_label, dtype=np.int64)
        return self._view(self.rows, new_label if self.label_map is None else new_label[self.label_map])

    # -- reading -----------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.image_ids) if self.rows is None else len(self.rows)

    def _row(self, index: int) -> int:
        n = len(self)
        i = operator.index(index)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"sample index {index} out of range (a data set of {n} samples)")
        return i if self.rows is None else int(self.rows[i])

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return self.select(range(len(self))[index])
        return self._sample(self._row(index))

    def __iter__(self) -> Iterator[Sample]:
        rows = range(len(self)) if self.rows is None else self.rows.tolist()
        for row in rows:
            yield self._sample(row)

    def __add__(self, other) -> list[Sample]:
        """``samples + other``: a list, as of two lists."""
        return list(self) + list(other)

    def __radd__(self, other) -> list[Sample]:
        return list(other) + list(self)

    def path(self, row: int) -> Path:
        name = self.names[row]
        return self.root / name if self.root is not None else Path(name)

    def _sample(self, row: int) -> Sample:
        start, end = int(self.starts[row]), int(self.starts[row + 1])
        labels = self.labels[start:end].astype(np.int64)
        if self.label_map is not None:
            labels = self.label_map[labels]
        return Sample(
            image_id=int(self.image_ids[row]), path=self.path(row), width=int(self.widths[row]),
            height=int(self.heights[row]), boxes=self.boxes[start:end].copy(), labels=labels,
            ignore=self.ignore[start:end].copy(),
            keypoints=None if self.keypoints is None else self.keypoints[start:end].copy(),
            calib=None if self.calib is None else self.calib[row].copy(),
            extra={key: value[start:end].copy() for key, value in self.extra.items()})

    # -- whole-table figures (no Sample made) ------------------------------------------------------------
    def _positions_rows(self) -> np.ndarray:
        return np.arange(len(self.image_ids)) if self.rows is None else self.rows

    def object_counts(self, trained_only: bool = False) -> np.ndarray:
        """Objects of each sample [n]; ``trained_only``: crowd / ignore regions not counted."""
        rows = self._positions_rows()
        counts = np.diff(self.starts)
        if trained_only:
            ignored = np.concatenate([[0], np.cumsum(self.ignore, dtype=np.int64)])
            counts = counts - (ignored[self.starts[1:]] - ignored[self.starts[:-1]])
        return counts[rows]

    def path_string(self, row: int) -> str:
        """``str(self.path(row))``, without making a ``Path`` where a plain join gives the same (pathlib interns
        every file name it parses; see :func:`~.io.decoded_size`)."""
        name = self.names[row]
        if self.root is None:
            return name
        root = str(self.root)
        if os.sep == "/" and root != "." and name and posixpath.normpath(name) == name and not name.startswith("/"):
            return posixpath.join(root, name)
        return str(self.root / name)

    def image_records(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """(image paths as strings, widths, heights) of every sample."""
        rows = self._positions_rows()
        return [self.path_string(r) for r in rows.tolist()], self.widths[rows], self.heights[rows]

    def nbytes(self) -> int:
        """Bytes the arrays hold (shared by every view)."""
        arrays = [self.image_ids, self.widths, self.heights, self.names.data, self.names.offsets, self.starts,
                  self.boxes, self.labels, self.ignore, self.keypoints, self.calib, *self.extra.values()]
        return sum(a.nbytes for a in arrays if a is not None)

    def __repr__(self) -> str:
        return f"SampleTable({len(self)} samples, {int(np.diff(self.starts).sum())} objects stored)"


def pack_samples(samples: Sequence[Sample]) -> Sequence[Sample]:
    """``samples`` as a :class:`SampleTable` where they fit one, else as they are."""
    table = SampleTable.from_samples(samples)
    return table if table is not None else samples


class DetectionSource:
    """Protocol of a data-set reader: indexable Samples, class names, and (lazily) image loading.

    Subclasses set ``class_names`` and ``samples`` (annotations only; images are read on demand by
    :func:`centernet.data.io.read_image`): a list of :class:`Sample` or, for the built-in readers, a
    :class:`SampleTable` (read-only: each access makes a new sample).
    """

    class_names: list[str]
    samples: Sequence[Sample]
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
        samples = source.samples
        self.samples = (samples.select(indices) if isinstance(samples, SampleTable)
                        else [samples[i] for i in indices])
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
        samples = source.samples
        self.samples = (samples.relabel(new_label) if isinstance(samples, SampleTable)
                        else [dataclasses.replace(s, labels=new_label[s.labels]) for s in samples])
        if hasattr(source, "extra_scorers"):
            self.extra_scorers = source.extra_scorers

    def __getattr__(self, name: str):
        """The source's other attributes and methods (``to_coco_dict``, ``check_images``, ``keypoint_names``, ...)."""
        if name.startswith("__") or name == "source":  # unpickling looks these up before ``source`` is set
            raise AttributeError(name)
        return getattr(self.source, name)
