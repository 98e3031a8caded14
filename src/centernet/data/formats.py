"""The data set formats that :func:`centernet.data.open_dataset` recognises, each registered by its own module.

A format is a name, a *probe* ``(path) -> bool`` that says whether ``path`` looks like a data set of that
format (cheaply: file names and folder layout, nothing parsed), an *opener* ``(OpenRequest) -> DetectionSource``
and a *priority*. :func:`find_format` asks the probes in ascending priority (every priority is unique) and the
first that says yes opens ``path``. The order matters where probes overlap: a KITTI or VOC folder may also
hold an ``images/`` folder or image files (the YOLO probe), so the loosest probe has the highest priority.

A new format is one module that decorates its opener with :func:`register_format` and one import line in
``centernet/data/__init__.py`` (importing the module registers the format)::

    @register_format("coco", probe=is_coco_json, priority=10, looks_for="a COCO .json file")
    def open_coco(request: OpenRequest) -> DetectionSource: ...
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..registry import Registry
from .io import DataError
from .sample import DetectionSource


@dataclass(frozen=True)
class OpenRequest:
    """What :func:`~centernet.data.open_dataset` was asked for: ``path`` (it exists and the format's probe
    accepted it), the image folder when given, ``keypoints`` (None: the format decides), the named ``split``
    (read by formats with ``own_splits``; the others are narrowed to the split's list file afterwards) and the
    remaining keyword arguments for the reader (``class_names``, ``label_dir``, ...)."""

    path: Path
    image_dir: Path | None = None
    keypoints: bool | None = None
    split: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


Probe = Callable[[Path], bool]
Opener = Callable[[OpenRequest], DetectionSource]


@dataclass(frozen=True)
class DataFormat:
    """One registered format; calling it opens a data set.

    ``looks_for`` says what the probe looks for (the error when no probe matches lists them all).
    ``keypoints`` says where the format keeps person keypoints ("" if it has none: ``keypoints=True`` is then
    a :class:`DataError`). ``own_splits``: the opener reads ``request.split`` itself (e.g. VOC's
    ``ImageSets/Main``); otherwise the split is the list file of :func:`~centernet.data.splits.list_file`.
    """

    name: str
    probe: Probe
    opener: Opener
    priority: int
    looks_for: str
    keypoints: str = ""
    own_splits: bool = False

    def __call__(self, request: OpenRequest) -> DetectionSource:
        return self.opener(request)


FORMATS: Registry[DataFormat] = Registry("data format")


def register_format(name: str, probe: Probe, *, priority: int, looks_for: str, keypoints: str = "",
                    own_splits: bool = False) -> Callable[[Opener], Opener]:
    """Decorator: register the decorated opener as format ``name`` (see :class:`DataFormat`); ``priority``
    must differ from every registered format's, so that the probing order never depends on import order."""
    def add(opener: Opener) -> Opener:
        same = [f.name for f in formats_in_order() if f.priority == priority]
        if same:
            raise ValueError(f"data format {name!r}: priority {priority} is already {same[0]!r}'s; pick another")
        FORMATS.register(name)(DataFormat(name, probe, opener, priority, looks_for, keypoints, own_splits))
        return opener

    return add


def formats_in_order() -> list[DataFormat]:
    """The registered formats in the order their probes are asked (ascending priority)."""
    return sorted((FORMATS.get(name) for name in FORMATS.names()), key=lambda f: f.priority)


def find_format(path: Path) -> DataFormat:
    """The first format (by priority) whose probe accepts ``path``; a :class:`DataError` naming ``path`` if
    it does not exist, or listing what every format looks for if none does."""
    if not path.exists():
        raise DataError(f"data set not found: {path}")
    ordered = formats_in_order()
    for fmt in ordered:
        if fmt.probe(path):
            return fmt
    looked = "; ".join(f"{fmt.name}: {fmt.looks_for}" for fmt in ordered)
    raise DataError(f"{path}: cannot guess the data set format; looked for {looked}")


def check_keypoints(fmt: DataFormat, path: Path, keypoints: bool | None) -> None:
    """A :class:`DataError` when keypoints are asked of a format without them (naming those that have them)."""
    if keypoints and not fmt.keypoints:
        where = " or ".join(f.keypoints for f in formats_in_order() if f.keypoints) or "a format with keypoints"
        raise DataError(f"{path}: keypoints need {where}; a {fmt.name} data set has none")
