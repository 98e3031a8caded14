"""KITTI object label files: one object a line, 15 fields (ground truth) or 16 (detections, + score).

    type truncated occluded alpha x1 y1 x2 y2 h w l x y z rotation_y [score]

Boxes are image pixels; dimensions (h, w, l) metres; location (x, y, z) is the bottom centre of the 3D
box in camera coordinates (y points down). DontCare regions carry -1 dimensions and -1000 locations.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

NUM_FIELDS = 15  # without the score
FIELD_NAMES = ("type", "truncated", "occluded", "alpha", "x1", "y1", "x2", "y2", "h", "w", "l",
               "x", "y", "z", "rotation_y", "score")


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


def _number(token: str, name: str, where: str) -> float:
    try:
        value = float(token)
    except ValueError:
        raise ValueError(f"{where}: field '{name}' is not a number: {token!r}") from None
    if math.isnan(value):
        raise ValueError(f"{where}: field '{name}' is NaN")
    return value


def parse_kitti_line(line: str, where: str = "<line>") -> KittiObject:
    """One label line -> KittiObject; ``where`` (e.g. 'file:line') prefixes the error message."""
    tokens = line.split()
    if len(tokens) not in (NUM_FIELDS, NUM_FIELDS + 1):
        raise ValueError(f"{where}: expected {NUM_FIELDS} fields (16 with a score), got {len(tokens)}")
    try:
        v = [float(tok) for tok in tokens[1:]]
    except ValueError:
        v = [_number(tok, name, where) for tok, name in zip(tokens[1:], FIELD_NAMES[1:])]  # names the field
    if any(math.isnan(x) for x in v):
        v = [_number(tok, name, where) for tok, name in zip(tokens[1:], FIELD_NAMES[1:])]
    if v[1] != int(v[1]):
        raise ValueError(f"{where}: field 'occluded' is not an integer: {tokens[2]!r}")
    return KittiObject(type=tokens[0], truncated=v[0], occluded=int(v[1]), alpha=v[2],
                       bbox=(v[3], v[4], v[5], v[6]), dimensions=(v[7], v[8], v[9]),
                       location=(v[10], v[11], v[12]), rotation_y=v[13],
                       score=v[14] if len(v) == NUM_FIELDS else None)


def read_kitti_labels(path: str | Path, with_score: bool | None = None) -> list[KittiObject]:
    """All objects of one label file (blank lines skipped); a malformed line raises naming file and line.

    ``with_score``: True requires the 16th (score) field on every line, False forbids it, None takes both.
    """
    path = Path(path)
    objects = []
    with open(path) as f:
        for number, line in enumerate(f, start=1):
            if line.strip():
                obj = parse_kitti_line(line, f"{path}:{number}")
                if with_score is not None and (obj.score is not None) != with_score:
                    raise ValueError(f"{path}:{number}: expected {16 if with_score else 15} fields "
                                     f"({'with' if with_score else 'without'} a score), got "
                                     f"{15 if obj.score is None else 16}")
                objects.append(obj)
    return objects


def _format(value: float, decimals: int | None) -> str:
    return repr(float(value)) if decimals is None else f"{value:.{decimals}f}"


def format_kitti_line(obj: KittiObject, decimals: int | None = None) -> str:
    """One label line. ``decimals=None`` writes floats exactly (shortest round-trip form), else with that
    many decimals (KITTI's files use 2); the score is always exact."""
    if not obj.type or any(c.isspace() for c in obj.type):
        raise ValueError(f"object type {obj.type!r} must be one word")
    fields = [obj.type, _format(obj.truncated, decimals), str(int(obj.occluded))]
    fields += [_format(v, decimals) for v in obj.numbers()]
    if obj.score is not None:
        fields.append(_format(obj.score, None))
    return " ".join(fields)


def write_kitti_labels(path: str | Path, objects: list[KittiObject], decimals: int | None = None) -> None:
    """Write objects one a line (an empty file for no objects); see format_kitti_line for ``decimals``."""
    text = "".join(format_kitti_line(obj, decimals) + "\n" for obj in objects)
    Path(path).write_text(text)
