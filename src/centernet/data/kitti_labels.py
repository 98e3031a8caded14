"""KITTI object label files: the label object, the one reader and the one writer, and the class orders.

One object a line, 15 fields (ground truth) or 16 (detections, + score):

    type truncated occluded alpha x1 y1 x2 y2 h w l x y z rotation_y [score]

Boxes are image pixels; dimensions (h, w, l) metres; location (x, y, z) is the bottom centre of the 3D
box in camera coordinates (y points down). DontCare regions carry :data:`NO_DIM` dimensions, :data:`NO_LOCATION`
locations and :data:`NO_ALPHA` angles, as do detections without an orientation or a 3D box. The field names
are the devkit's (its readme); results, ground truth and training data all use them.
"""
from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .io import DataError

#: every object type a KITTI label file may hold (the order of ``Sample.extra["type_id"]``)
KITTI_TYPES = ("Car", "Van", "Truck", "Pedestrian", "Person_sitting", "Cyclist", "Tram", "Misc", "DontCare")
DONT_CARE = "DontCare"
#: the classes the devkit evaluates, in its order; also this project's default training order
KITTI_CLASSES = ("Car", "Pedestrian", "Cyclist")
#: the class order of the original's KITTI weights (ddd_3dop, ddd_sub): their heatmap channels 0, 1, 2
ORIGINAL_CLASS_ORDER = ("Pedestrian", "Car", "Cyclist")
#: KITTI's "no value": the alpha / rotation_y, dimensions and location of a DontCare region, and of a
#: detection without orientation (then AOS is not computed) or 3D box (then neither BEV nor 3D AP)
NO_ALPHA, NO_DIM, NO_LOCATION = -10.0, -1.0, -1000.0
NUM_FIELDS = 15  # without the score
FIELD_NAMES = ("type", "truncated", "occluded", "alpha", "x1", "y1", "x2", "y2", "h", "w", "l",
               "x", "y", "z", "rotation_y", "score")


class LabelError(DataError):
    """A malformed label line; the message is ``"<where>: <problem>"`` (``where``: file:line)."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where}: {problem}")
        self.where, self.problem = where, problem


class NotANumber(LabelError):
    """A numeric field that does not hold a number (or holds NaN)."""


@dataclass(frozen=True)
class KittiObject:
    """One labelled object or detection. ``score`` is None for ground truth."""

    type: str
    truncated: float
    occluded: int
    alpha: float
    bbox: tuple[float, float, float, float]  # x1, y1, x2, y2 (pixels)
    dimensions: tuple[float, float, float]  # h, w, l (metres)
    location: tuple[float, float, float]  # x, y, z of the bottom centre (camera coordinates, metres)
    rotation_y: float
    score: float | None = None

    def numbers(self) -> list[float]:
        """The 12 geometric fields in file order: alpha, bbox, dimensions, location, rotation_y."""
        return [self.alpha, *self.bbox, *self.dimensions, *self.location, self.rotation_y]

    # the 3D box under the names of the data sets' per-object arrays (``Sample.extra``)
    @property
    def dim(self) -> tuple[float, float, float]:
        return self.dimensions

    @property
    def loc(self) -> tuple[float, float, float]:
        return self.location

    @property
    def rot_y(self) -> float:
        return self.rotation_y


# ------------------------------------------------------------------------------------------ reading
def _number(token: str, name: str, where: str) -> float:
    try:
        value = float(token)
    except ValueError:
        raise NotANumber(where, f"field '{name}' is not a number: {token!r}") from None
    if math.isnan(value):
        raise NotANumber(where, f"field '{name}' is NaN")
    return value


def parse_kitti_line(line: str, where: str = "<line>", types: Collection[str] | None = None) -> KittiObject:
    """One label line -> KittiObject; ``where`` (e.g. 'file:line') prefixes the :class:`LabelError`'s
    message. ``types``: the object types allowed (None: any one word)."""
    tokens = line.split()
    if len(tokens) not in (NUM_FIELDS, NUM_FIELDS + 1):
        raise LabelError(where, f"expected {NUM_FIELDS} fields ({NUM_FIELDS + 1} with a score), got {len(tokens)}")
    if types is not None and tokens[0] not in types:
        raise LabelError(where, f"unknown object type {tokens[0]!r}; expected one of {tuple(types)}")
    try:
        v = [float(tok) for tok in tokens[1:]]
    except ValueError:
        v = [_number(tok, name, where) for tok, name in zip(tokens[1:], FIELD_NAMES[1:])]  # names the field
    if any(math.isnan(x) for x in v):
        v = [_number(tok, name, where) for tok, name in zip(tokens[1:], FIELD_NAMES[1:])]
    if not v[1].is_integer():
        raise LabelError(where, f"field 'occluded' is not an integer: {tokens[2]!r}")
    return KittiObject(type=tokens[0], truncated=v[0], occluded=int(v[1]), alpha=v[2],
                       bbox=(v[3], v[4], v[5], v[6]), dimensions=(v[7], v[8], v[9]),
                       location=(v[10], v[11], v[12]), rotation_y=v[13],
                       score=v[14] if len(v) == NUM_FIELDS else None)


def read_kitti_labels(path: str | Path, with_score: bool | None = None,
                      types: Collection[str] | None = None) -> list[KittiObject]:
    """All objects of one label file (blank lines skipped); a malformed line raises :class:`LabelError`
    naming file and line.

    ``with_score``: True requires the 16th (score) field on every line, False forbids it, None takes both.
    ``types``: the object types allowed (None: any).
    """
    path = Path(path)
    objects = []
    with open(path) as f:
        for number, line in enumerate(f, start=1):
            if line.strip():
                obj = parse_kitti_line(line, f"{path}:{number}", types)
                if with_score is not None and (obj.score is not None) != with_score:
                    raise LabelError(f"{path}:{number}", f"expected {16 if with_score else 15} fields "
                                     f"({'with' if with_score else 'without'} a score), got "
                                     f"{15 if obj.score is None else 16}")
                objects.append(obj)
    return objects


# ------------------------------------------------------------------------------------------ writing
def _format(value: float, decimals: int | None) -> str:
    return repr(float(value)) if decimals is None else f"{value:.{decimals}f}"


def format_kitti_line(obj: KittiObject, decimals: int | None = None, score_decimals: int | None = None) -> str:
    """One label line. ``decimals=None`` writes floats exactly (shortest round-trip form), else with that
    many decimals (KITTI's files use 2); the score likewise with ``score_decimals`` (default: exact)."""
    if not obj.type or any(c.isspace() for c in obj.type):
        raise ValueError(f"object type {obj.type!r} must be one word")
    fields = [obj.type, _format(obj.truncated, decimals), str(int(obj.occluded))]
    fields += [_format(v, decimals) for v in obj.numbers()]
    if obj.score is not None:
        fields.append(_format(obj.score, score_decimals))
    return " ".join(fields)


def frame_file(folder: str | Path, frame: int | str) -> Path:
    """The label file of ``frame`` in ``folder``: ``%06d.txt`` for a frame number, else ``<frame>.txt``."""
    name = f"{frame:06d}" if isinstance(frame, (int, np.integer)) else str(frame)
    return Path(folder) / f"{name}.txt"


def write_kitti_labels(path: str | Path, objects: Sequence[KittiObject], decimals: int | None = None,
                       score_decimals: int | None = None) -> Path:
    """Write objects one a line (an empty file for no objects: the devkit wants a file per frame); see
    :func:`format_kitti_line` for ``decimals`` and ``score_decimals``. Returns the path."""
    path = Path(path)
    path.write_text("".join(format_kitti_line(obj, decimals, score_decimals) + "\n" for obj in objects))
    return path
