"""Named splits of one data set (``--split train``), and making a reproducible validation split.

Where a split lives, by format:

* PASCAL VOC: ``ImageSets/Main/<split>.txt`` (one file stem per line: the devkit's own files),
* KITTI: ``ImageSets/<split>.txt`` (frame ids, read by :class:`~.kitti.KittiDetection`),
* a COCO folder (``annotations/instances_X.json``, images in ``X/``): its annotation files, ``--split X``;
* a COCO json ``X.json``: ``X.<split>.txt`` beside it; a YOLO folder: ``<folder>/<split>.txt``; both one
  image per line, as its path relative to the image folder (``cam1/a.jpg``, so ``cam2/a.jpg`` is another
  image); a bare file name, as older split files list, is read when no other image has that name.

:func:`make_split` writes such files from one annotated folder or json: a random share of the images,
drawn from a seeded generator, so the same call always gives the same split.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .coco_folder import coco_folder_splits
from .io import DataError
from .kitti import KittiDetection
from .sample import DetectionSource, Subset
from .voc import VocDetection, voc_split_file

SPLIT_NAMES = ("train", "val")


def list_file(spec: str | Path, split: str) -> Path:
    """The image list of ``split`` for a COCO json (``X.<split>.txt`` beside it) or a YOLO folder."""
    spec = Path(spec)
    return spec.with_name(f"{spec.stem}.{split}.txt") if spec.is_file() else spec / f"{split}.txt"


def image_key(source: DetectionSource, sample) -> str:
    """What identifies the image of ``sample`` in a split file: its path relative to the data set's image
    folder (``source.image_dir``), with ``/`` separators (``cam1/a.jpg``); the whole path when it lies elsewhere."""
    path = Path(sample.path)
    root = getattr(source, "image_dir", None)
    if root is not None:
        try:
            return path.relative_to(root).as_posix()
        except ValueError:
            pass
    return path.as_posix()


def select_listed(source: DetectionSource, path: Path) -> DetectionSource:
    """The samples of ``source`` whose images are listed in ``path``, in the data set's order. Each line is an
    image's path relative to the image folder (:func:`image_key`, what :func:`make_split` writes); a bare file
    name (older split files) also selects its image when exactly one image has that name, and is a
    :class:`DataError` naming them when several have (``cam1/a.jpg``, ``cam2/a.jpg``). A listed image the data
    set lacks is a :class:`DataError`."""
    if not path.is_file():
        raise DataError(f"split file not found: {path} (make one with `centernet split`)")
    listed = [Path(line.strip()).as_posix() for line in path.read_text().splitlines() if line.strip()]
    if not listed:
        raise DataError(f"{path}: no image names")
    by_key: dict[str, list[int]] = {}
    for i, sample in enumerate(source.samples):
        by_key.setdefault(image_key(source, sample), []).append(i)
    by_name: dict[str, list[str]] = {}
    for key in by_key:
        by_name.setdefault(Path(key).name, []).append(key)
    chosen: set[int] = set()
    missing: list[str] = []
    for entry in listed:
        keys = [entry] if entry in by_key else by_name.get(entry, []) if "/" not in entry else []
        if len(keys) > 1:
            more = f" and {len(keys) - 2} more" if len(keys) > 2 else ""
            raise DataError(f"{path}: {entry!r} matches {len(keys)} images, {keys[0]} and {keys[1]}{more}; list "
                            "paths relative to the image folder (`centernet split --exist-ok` writes them)")
        if not keys:
            missing.append(entry)
        for key in keys:
            chosen.update(by_key[key])
    if missing:
        raise DataError(f"{path}: {len(missing)} listed images are not in the data set, e.g. {missing[:5]}")
    return Subset(source, sorted(chosen))


def split_entries(source: DetectionSource) -> list[str]:
    """What a split file lists for each sample: the stem for VOC and KITTI (their own list files), else the
    image's path relative to the image folder (:func:`image_key`)."""
    if isinstance(source, (VocDetection, KittiDetection)):
        return [Path(s.path).stem for s in source.samples]
    return [image_key(source, s) for s in source.samples]


def check_splittable(spec: str | Path) -> None:
    """A :class:`DataError` for a COCO folder: its splits are its annotation files (``--split train2017``), and a
    split of one of them is written beside that json."""
    spec = Path(spec)
    splits = coco_folder_splits(spec) if spec.is_dir() else {}
    if splits:
        example = next(iter(next(iter(splits.values())).values()))
        raise DataError(f"{spec}: a COCO folder's splits are its annotation files ({', '.join(splits)}); to split "
                        f"one of them, give its json (e.g. {example})")


def split_target(spec: str | Path, source: DetectionSource, split: str) -> Path:
    """The file that holds ``split`` of the data set ``spec`` (opened as ``source``)."""
    spec = Path(spec)
    check_splittable(spec)
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
    entries = list(dict.fromkeys(split_entries(source)))  # samples of one image file stay on one side
    if len(entries) < 2:
        raise DataError(f"{spec}: {len(entries)} image(s); a split needs at least 2")
    unlisted = [e for e in entries if e != Path(e.strip()).as_posix() or "\n" in e or "\r" in e]
    if unlisted:
        raise DataError(f"{spec}: {len(unlisted)} image paths cannot be listed one per line, e.g. {unlisted[0]!r}")
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
