"""Named splits of one data set (``--split train``), and making a reproducible validation split.

Where a split lives, by format:

* PASCAL VOC: ``ImageSets/Main/<split>.txt`` (one file stem per line: the devkit's own files),
* KITTI: ``ImageSets/<split>.txt`` (frame ids, read by :class:`~.kitti.KittiDetection`),
* a COCO json ``X.json``: ``X.<split>.txt`` beside it; a YOLO folder: ``<folder>/<split>.txt``; both one
  image file name per line (the images' paths relative to the image folder also work).

:func:`make_split` writes such files from one annotated folder or json: a random share of the images,
drawn from a seeded generator, so the same call always gives the same split.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .io import DataError
from .kitti import KittiDetection
from .sample import DetectionSource, Subset
from .voc import VocDetection, voc_split_file

SPLIT_NAMES = ("train", "val")


def list_file(spec: str | Path, split: str) -> Path:
    """The image list of ``split`` for a COCO json (``X.<split>.txt`` beside it) or a YOLO folder."""
    spec = Path(spec)
    return spec.with_name(f"{spec.stem}.{split}.txt") if spec.is_file() else spec / f"{split}.txt"


def select_listed(source: DetectionSource, path: Path) -> DetectionSource:
    """The samples of ``source`` whose image files are listed in ``path`` (a name or a relative path per
    line), in the data set's order; a listed name the data set lacks is a :class:`DataError`."""
    if not path.is_file():
        raise DataError(f"split file not found: {path} (make one with `centernet split`)")
    listed = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not listed:
        raise DataError(f"{path}: no image names")
    wanted = {Path(name).name for name in listed}
    indices = [i for i, s in enumerate(source.samples) if Path(s.path).name in wanted]
    found = {Path(source.samples[i].path).name for i in indices}
    missing = sorted(wanted - found)
    if missing:
        raise DataError(f"{path}: {len(missing)} listed images are not in the data set, e.g. {missing[:5]}")
    return Subset(source, indices)


def split_entries(source: DetectionSource) -> list[str]:
    """What a split file lists for each sample: the stem for VOC and KITTI, else the image file name."""
    if isinstance(source, (VocDetection, KittiDetection)):
        return [Path(s.path).stem for s in source.samples]
    return [Path(s.path).name for s in source.samples]


def split_target(spec: str | Path, source: DetectionSource, split: str) -> Path:
    """The file that holds ``split`` of the data set ``spec`` (opened as ``source``)."""
    spec = Path(spec)
    if isinstance(source, VocDetection):
        return voc_split_file(spec, split)
    if isinstance(source, KittiDetection):
        return spec / "ImageSets" / f"{split}.txt"  # one of the places KittiDetection looks
    return list_file(spec, split)


def make_split(spec: str | Path, source: DetectionSource, val_fraction: float = 0.2, seed: int = 0,
               names: Sequence[str] = SPLIT_NAMES, exist_ok: bool = False) -> dict[str, tuple[Path, int]]:
    """Write a train / validation split of ``source`` (opened from ``spec``): ``val_fraction`` of the images
    (at least one, at most all but one), drawn by ``numpy.random.default_rng(seed)``; each list keeps the
    data set's order. Returns {split name: (file, images)}. Existing split files are refused unless
    ``exist_ok``."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"the validation fraction must be between 0 and 1, got {val_fraction}")
    entries = split_entries(source)
    if len(entries) < 2:
        raise DataError(f"{spec}: {len(entries)} image(s); a split needs at least 2")
    n_val = min(max(1, round(len(entries) * val_fraction)), len(entries) - 1)
    picked = np.zeros(len(entries), bool)
    picked[np.random.default_rng(seed).permutation(len(entries))[:n_val]] = True
    train_name, val_name = names
    targets = {train_name: split_target(spec, source, train_name), val_name: split_target(spec, source, val_name)}
    present = [str(p) for p in targets.values() if p.exists()]
    if present and not exist_ok:
        raise FileExistsError(f"split files already exist: {', '.join(present)} (pass --exist-ok to replace them)")
    out = {}
    for name, chosen in ((train_name, ~picked), (val_name, picked)):
        lines = [e for e, keep in zip(entries, chosen) if keep]
        targets[name].parent.mkdir(parents=True, exist_ok=True)
        targets[name].write_text("\n".join(lines) + "\n")
        out[name] = (targets[name], len(lines))
    return out
