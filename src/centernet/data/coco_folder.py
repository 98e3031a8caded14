"""The layout of a COCO folder: ``annotations/instances_X.json`` (and ``person_keypoints_X.json``) with the
images of split ``X`` in ``X/`` (``coco/annotations/instances_train2017.json`` and ``coco/train2017/``)."""
from __future__ import annotations

from pathlib import Path

#: the annotation files of a COCO folder, by kind: ``annotations/<prefix><split>.json``
COCO_FILE_PREFIXES = {"instances": "instances_", "person_keypoints": "person_keypoints_"}


def coco_folder_splits(root: Path) -> dict[str, dict[str, Path]]:
    """{split: {kind: annotation file}} of a COCO folder: ``annotations/instances_X.json`` and
    ``annotations/person_keypoints_X.json`` give split ``X`` (sorted by name); {} for any other folder."""
    folder = root / "annotations"
    if not folder.is_dir():
        return {}
    splits: dict[str, dict[str, Path]] = {}
    for path in sorted(folder.glob("*.json")):
        for kind, prefix in COCO_FILE_PREFIXES.items():
            if path.name.startswith(prefix) and len(path.stem) > len(prefix) and path.is_file():
                splits.setdefault(path.stem[len(prefix):], {})[kind] = path
    return splits
