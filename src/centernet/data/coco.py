"""COCO json reader (instances and person keypoints)."""
from __future__ import annotations

import json
from collections import Counter
from itertools import repeat
from pathlib import Path
from typing import Any

import numpy as np

from . import cache
from .coco_folder import coco_folder_splits
from .convert import BoxCleaner, check_images, clean_boxes
from .formats import OpenRequest, register_format
from .io import DataError
from .sample import DetectionSource, PackedStrings, SampleTable, small_labels
from .splits import list_file, select_listed


def load_coco_json(ann_file: str | Path) -> dict[str, Any]:
    """Read a COCO annotation file; raises :class:`DataError` naming the file if it is not usable json."""
    ann_file = Path(ann_file)
    if not ann_file.is_file():
        raise DataError(f"COCO annotation file not found: {ann_file}")
    try:
        text = ann_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{ann_file}: cannot read COCO annotation file ({exc})") from exc
    if not text.strip():
        raise DataError(f"{ann_file}: COCO annotation file is empty")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{ann_file}: not valid json ({exc})") from exc
    except RecursionError:  # arrays or objects nested thousands deep: no annotation file looks like that
        raise DataError(f"{ann_file}: json nested too deeply to be a COCO annotation file") from None
    if not isinstance(data, dict):
        raise DataError(f"{ann_file}: expected a json object with 'images', 'annotations', 'categories', got {type(data).__name__}")
    missing = [key for key in ("images", "annotations", "categories") if not isinstance(data.get(key), list)]
    if missing:
        raise DataError(f"{ann_file}: not a COCO annotation file, missing or non-list key(s) {missing}")
    return data


def _all_dicts(entries: list[Any]) -> bool:
    return set(map(type, entries)) <= {dict}


def _values(entries: list[dict], key: str, default: Any = None) -> list[Any]:
    """``[entry.get(key, default) for entry in entries]`` at C speed (``entries`` are all dicts)."""
    return list(map(dict.get, entries, repeat(key), repeat(default)))


class _Images:
    """The image entries of a COCO file as columns, and the row of each image id."""

    @classmethod
    def read(cls, entries: list[Any]) -> "_Images | None":
        """The entries read column-wise; None when any is unusual (not a dict; an id, name or size of
        another type; a size below 1): reading them one by one then names it."""
        if not _all_dicts(entries):
            return None
        ids, names = _values(entries, "id"), _values(entries, "file_name")
        widths, heights = _values(entries, "width"), _values(entries, "height")
        if not entries or not (set(map(type, ids)) == set(map(type, widths)) == set(map(type, heights)) == {int}
                               and set(map(type, names)) == {str} and min(widths) > 0 and min(heights) > 0):
            return None
        images = cls()
        images.ids, images.names, images._widths, images._heights = ids, names, widths, heights
        images.row = dict(zip(ids, range(len(ids))))  # the last of a repeated id, as one by one
        return images

    def __init__(self) -> None:
        self.ids: list[int] = []
        self.names: list[str] = []
        self._widths: list[int] = []
        self._heights: list[int] = []
        self.row: dict[int, int] = {}

    def add(self, image_id: int, name: str, width: int, height: int) -> None:
        self.row[image_id] = len(self.ids)  # a repeated id is refused once all are read
        self.ids.append(image_id)
        self.names.append(name)
        self._widths.append(width)
        self._heights.append(height)

    def widths(self) -> np.ndarray:
        return np.array(self._widths, dtype=np.int64)

    def heights(self) -> np.ndarray:
        return np.array(self._heights, dtype=np.int64)

    def columns(self) -> dict[str, Any]:
        return {"image_ids": np.array(self.ids, dtype=np.int64), "widths": self.widths(), "heights": self.heights(),
                "names": PackedStrings.pack(self.names)}


class CocoDetection(DetectionSource):
    """Boxes (and optionally person keypoints) from a COCO json; images are read lazily.

    Category ids map to contiguous labels 0..C-1 in sorted id order: ``cat_ids[label]`` is the COCO
    category id and ``class_names[label]`` its name. ``image_id`` is the COCO image id. Boxes become
    xyxy; ``iscrowd`` annotations are kept with ``ignore=True``. Boxes exceeding the image are clipped;
    boxes with non-positive size or entirely outside the image are skipped; one warning sums both up.
    Image, annotation and category ids must be unique (a repeated one is a :class:`DataError`).
    With ``keypoints=True`` each sample gets ``keypoints`` [N, J, 3] float32 (J from the category's
    keypoint names, 17 for COCO persons), and ``keypoint_names``/``skeleton`` are kept
    (``skeleton`` 1-based as in the file).

    ``samples`` is a :class:`~.sample.SampleTable` (every box of the file in a few arrays). The annotations
    are read column-wise; a file with anything unusual in them is read entry by entry instead, which names
    the first bad entry. A file of at least :data:`~.cache.MIN_CACHED_BYTES` is cached once read (see
    :mod:`.cache`): opened again with the same size and modification time, it is read from the cache.
    """

    def __init__(self, ann_file: str | Path, image_dir: str | Path, keypoints: bool = False) -> None:
        self.ann_file = Path(ann_file)
        self.image_dir = Path(image_dir)
        self.keypoints = keypoints
        cleaner = BoxCleaner(self.ann_file)
        identity = _cache_identity(self.ann_file, keypoints)  # (taken before reading: a later change is a miss)
        cached = _read_cache(identity)
        if cached is not None:
            meta, columns = cached
            self._set_categories(meta["cat_ids"], meta["class_names"], meta["keypoint_names"], meta["skeleton"])
            cleaner.skipped, cleaner.clipped = meta["skipped"], meta["clipped"]
        else:
            data = load_coco_json(self.ann_file)
            self._load_categories(data["categories"])
            images = self._load_images(data["images"])
            columns = {**images.columns(), **self._load_annotations(data["annotations"], images, cleaner)}
            del data, images
            _write_cache(identity, self, columns, cleaner)
        self._report(cleaner)
        self.samples = SampleTable(**columns, root=self.image_dir)

    def _report(self, cleaner: BoxCleaner) -> None:
        cleaner.report()  # one call deeper than __init__: the warning points at the line that opened the file

    def _set_categories(self, cat_ids: list[int], class_names: list[str], keypoint_names: list[str],
                        skeleton: list[list[int]]) -> None:
        self.cat_ids: list[int] = list(cat_ids)
        self.class_names: list[str] = list(class_names)
        self.cat_to_label: dict[int, int] = {cat_id: label for label, cat_id in enumerate(self.cat_ids)}
        self.keypoint_names: list[str] = list(keypoint_names)
        self.skeleton: list[list[int]] = [list(pair) for pair in skeleton]

    def _load_categories(self, categories: list[Any]) -> None:
        names: dict[int, str] = {}
        for cat in categories:
            if not isinstance(cat, dict) or not isinstance(cat.get("id"), int):
                raise DataError(f"{self.ann_file}: malformed category entry {cat!r} (needs an integer 'id')")
            names[cat["id"]] = str(cat.get("name", cat["id"]))
        self._check_unique("category", [cat["id"] for cat in categories])
        cat_ids = sorted(names)
        keypoint_names: list[str] = []
        skeleton: list[list[int]] = []
        if self.keypoints:
            with_kps = [cat for cat in categories if cat.get("keypoints")]
            if not with_kps:
                raise DataError(f"{self.ann_file}: keypoints=True but no category lists 'keypoints' (not a person_keypoints file?)")
            keypoint_names = [str(name) for name in with_kps[0]["keypoints"]]
            skeleton = [list(map(int, pair)) for pair in with_kps[0].get("skeleton", [])]
        self._set_categories(cat_ids, [names[i] for i in cat_ids], keypoint_names, skeleton)

    def _load_images(self, entries: list[Any]) -> "_Images":
        images = _Images.read(entries)  # column-wise; None: an unusual entry, which the loop below names
        if images is not None:
            self._check_unique("image", images.ids)
            return images
        images = _Images()
        for entry in entries:
            ok = isinstance(entry, dict) and isinstance(entry.get("id"), int) and isinstance(entry.get("file_name"), str)
            if not ok:
                raise DataError(f"{self.ann_file}: malformed image entry {_short(entry)} (needs integer 'id' and 'file_name')")
            image_id = entry["id"]
            width, height = entry.get("width"), entry.get("height")
            if not (isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0):
                raise DataError(f"{self.ann_file}: image id {image_id} ({entry['file_name']}) has no valid 'width'/'height'")
            images.add(image_id, entry["file_name"], width, height)
        self._check_unique("image", images.ids)
        return images

    def _load_annotations(self, entries: list[Any], images: "_Images", cleaner: BoxCleaner) -> dict[str, Any]:
        """The per-object columns (``starts``, ``boxes``, ``labels``, ``ignore``, ``keypoints``) of the cleaned
        annotations, grouped per image in the images' order, each image's in the file's order."""
        all_dicts = _all_dicts(entries)
        ids = _values(entries, "id") if all_dicts else [ann.get("id") for ann in entries if isinstance(ann, dict)]
        self._check_unique("annotation", ids)
        objects = self._columns(entries, images) if entries and all_dicts else None
        if objects is None:
            objects = self._checked_entries(entries, images)
        owner, labels, corners, crowd, keypoints = objects
        keep, boxes, cleaner.skipped, cleaner.clipped = clean_boxes(
            *corners, images.widths()[owner], images.heights()[owner])
        kept = np.nonzero(keep)[0]
        kept = kept[np.argsort(owner[kept], kind="stable")]  # grouped per image, each in the file's order
        counts = np.bincount(owner[kept], minlength=len(images.ids))
        starts = np.zeros(len(counts) + 1, dtype=np.int64)
        np.cumsum(counts, out=starts[1:])
        return {"starts": starts, "boxes": boxes[kept], "labels": small_labels(labels[kept]), "ignore": crowd[kept],
                "keypoints": None if keypoints is None else keypoints[kept]}

    def _columns(self, entries: list[Any], images: "_Images"):
        """(owner rows, labels, (x1, y1, x2, y2), crowd flags, keypoints) of every annotation read column-wise, or None
        when any entry is unusual (not a dict, an unknown id, a box or keypoints not of numbers, ...): then
        :meth:`_checked_entries` reads them one by one and names the first bad one."""
        try:
            labels = list(map(self.cat_to_label.get, _values(entries, "category_id")))
            owner = list(map(images.row.get, _values(entries, "image_id")))
            if None in labels or None in owner:
                return None
            bbox = np.array(_values(entries, "bbox"))
            keypoints = None
            if self.keypoints:
                joints = len(self.keypoint_names)
                keypoints = np.array(_values(entries, "keypoints"))
                if keypoints.shape != (len(entries), 3 * joints) or keypoints.dtype.kind not in "biuf":
                    return None
                keypoints = keypoints.astype(np.float32).reshape(len(entries), joints, 3)
        except (TypeError, ValueError):  # unhashable ids; lists of other lengths
            return None
        if bbox.ndim != 2 or bbox.shape[1] != 4 or bbox.dtype.kind not in "biuf":
            return None
        x, y, w, h = bbox.astype(np.float64).T
        with np.errstate(over="ignore", invalid="ignore"):
            corners = (x, y, x + w, y + h)
        crowd = np.fromiter(map(bool, _values(entries, "iscrowd", 0)), dtype=bool, count=len(entries))
        return np.array(owner, dtype=np.int64), np.array(labels, dtype=np.int64), corners, crowd, keypoints

    def _checked_entries(self, entries: list[Any], images: "_Images"):
        """What :meth:`_columns` returns, reading and checking one annotation at a time (a
        :class:`DataError` naming the first unusable one)."""
        num_joints = len(self.keypoint_names)
        owner, corners, labels, crowd, kps_list = [], [], [], [], []
        for ann in entries:
            if not isinstance(ann, dict):
                raise DataError(f"{self.ann_file}: malformed annotation entry {_short(ann)}")
            ann_id = ann.get("id")
            cat_id = ann.get("category_id")
            if cat_id not in self.cat_to_label:
                raise DataError(f"{self.ann_file}: annotation id {ann_id} has unknown category id {cat_id!r}")
            image_id = ann.get("image_id")
            if image_id not in images.row:
                raise DataError(f"{self.ann_file}: annotation id {ann_id} refers to unknown image id {image_id!r}")
            bbox = ann.get("bbox")
            if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox)):
                raise DataError(f"{self.ann_file}: annotation id {ann_id} has malformed 'bbox' {bbox!r} (expected [x, y, w, h])")
            if self.keypoints:
                raw = ann.get("keypoints")
                if not isinstance(raw, list) or len(raw) != 3 * num_joints:
                    got = len(raw) if isinstance(raw, list) else repr(raw)
                    raise DataError(f"{self.ann_file}: annotation id {ann_id} has keypoints of length {got}, expected {3 * num_joints}")
                try:
                    kps_list.append(np.asarray(raw, dtype=np.float32).reshape(num_joints, 3))
                except (TypeError, ValueError) as exc:
                    raise DataError(f"{self.ann_file}: annotation id {ann_id} has non-numeric keypoints") from exc
            x, y, w, h = (float(v) for v in bbox)
            owner.append(images.row[image_id])
            corners.append((x, y, x + w, y + h))
            labels.append(self.cat_to_label[cat_id])
            crowd.append(bool(ann.get("iscrowd", 0)))
        keypoints = None
        if self.keypoints:
            keypoints = np.stack(kps_list) if kps_list else np.zeros((0, num_joints, 3), dtype=np.float32)
        corner_columns = tuple(np.array(corners, dtype=np.float64).reshape(-1, 4).T)
        return (np.array(owner, dtype=np.int64), np.array(labels, dtype=np.int64), corner_columns,
                np.array(crowd, dtype=bool), keypoints)

    def _check_unique(self, kind: str, ids: list[Any]) -> None:
        """A :class:`DataError` naming the file, the first repeated id and how often it occurs (and how many
        other ids repeat) when ``ids`` are not unique; absent (None) or unhashable ids are left to the entry
        checks."""
        try:
            if len(set(ids)) == len(ids):
                return
        except TypeError:  # an unhashable id: skipped below
            pass
        counts = Counter(i for i in ids if isinstance(i, (int, str)))
        repeated = [(i, n) for i, n in counts.items() if n > 1]
        if repeated:
            first, n = repeated[0]
            others = f" ({len(repeated) - 1} other {kind} ids repeat too)" if len(repeated) > 1 else ""
            raise DataError(f"{self.ann_file}: {kind} id {first!r} occurs {n} times ({n - 1} duplicates){others}; "
                            f"{kind} ids must be unique")

    def check_images(self, decode: bool = False) -> None:
        """Raise :class:`DataError` listing (up to 10) images that are missing (or, with ``decode``, unreadable)."""
        check_images(self.samples, decode=decode, where=f" in {self.image_dir} (annotations {self.ann_file})")

    def to_coco_dict(self) -> dict[str, Any]:
        """The original annotation file's content (the evaluator can also just use ``ann_file``); annotations
        without an ``id`` (some tools write none; pycocotools indexes by it) are numbered after the largest."""
        data = load_coco_json(self.ann_file)
        anns = [ann for ann in data["annotations"] if isinstance(ann, dict)]
        unnumbered = [ann for ann in anns if ann.get("id") is None]
        if unnumbered:
            start = max((ann["id"] for ann in anns if isinstance(ann.get("id"), int)), default=0) + 1
            for k, ann in enumerate(unnumbered):
                ann["id"] = start + k
        return data


# ------------------------------------------------------------------------------------------ the opened-file cache
#: bump when the cached content changes meaning (the reader's own source is part of the key as well)
CACHE_FORMAT = 1
_ARRAYS = ("image_ids", "widths", "heights", "starts", "boxes", "labels", "ignore", "keypoints")


def _cache_identity(ann_file: Path, keypoints: bool) -> tuple[Path | None, dict[str, Any]] | None:
    """(cache file, what a cached file must say of itself) of ``ann_file``; None when it is not cached."""
    try:
        state = cache.file_state(ann_file)
    except OSError:
        return None
    if state["size"] < cache.MIN_CACHED_BYTES:
        return None
    path = cache.cache_file("datasets", f"coco:{state['path']}:keypoints={bool(keypoints)}", ".npz")
    if path is None:
        return None
    here = Path(__file__).parent
    code = cache.code_version(here / "coco.py", here / "convert.py", here / "sample.py")
    return path, {"format": CACHE_FORMAT, "code": code, "file": state, "keypoints": bool(keypoints)}


def _read_cache(identity) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(meta, table columns) cached for the file version of ``identity`` (:func:`_cache_identity`), or None."""
    if identity is None or not identity[0].is_file():
        return None
    path, expected = identity
    try:
        with np.load(path, allow_pickle=False) as stored:
            meta = json.loads(stored["meta"].tobytes().decode("utf-8", "surrogatepass"))
            if any(meta.get(key) != value for key, value in expected.items()):
                return None
            columns: dict[str, Any] = {name: stored[name] for name in _ARRAYS if name in stored.files}
            columns.setdefault("keypoints", None)
            columns["names"] = PackedStrings(stored["names_data"], stored["names_offsets"])
    except Exception:  # noqa: BLE001 - a damaged or foreign cache file is only a slower open
        return None
    return meta, columns


def _write_cache(identity, source: CocoDetection, columns: dict[str, Any], cleaner: BoxCleaner) -> None:
    if identity is None:
        return
    path, meta = identity
    meta = {**meta, "cat_ids": source.cat_ids, "class_names": source.class_names,
            "keypoint_names": source.keypoint_names, "skeleton": source.skeleton,
            "skipped": cleaner.skipped, "clipped": cleaner.clipped}
    arrays = {name: columns[name] for name in _ARRAYS if columns.get(name) is not None}
    arrays["names_data"], arrays["names_offsets"] = columns["names"].data, columns["names"].offsets
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode("utf-8", "surrogatepass"), dtype=np.uint8)
    cache.write_atomic(path, lambda f: np.savez(f, **arrays))


# ------------------------------------------------------------------------------------------ the format
def is_coco_json(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() == ".json"


def is_coco(path: Path) -> bool:
    """A COCO json, or a COCO folder (``annotations/instances_X.json``, its images in ``X/``)."""
    return is_coco_json(path) or (path.is_dir() and bool(coco_folder_splits(path)))


@register_format("coco", is_coco, priority=10, keypoints="a COCO person_keypoints json", own_splits=True,
                 looks_for="a COCO .json file (instances_X.json, person_keypoints_X.json) or a COCO folder "
                           "(annotations/instances_X.json, images in X/)")
def open_coco(request: OpenRequest) -> CocoDetection:
    """A json: images in ``image_dir``, else the standard layout's (:func:`coco_image_dir`); ``keypoints=None``
    means True for ``person_keypoints_*`` files; ``split``: the images its list file names (as for every
    format without splits of its own, :func:`~.splits.list_file`). A COCO folder: :func:`open_coco_folder`."""
    if request.path.is_dir():
        return open_coco_folder(request)
    image_dir = request.image_dir if request.image_dir is not None else coco_image_dir(request.path)
    keypoints = request.path.name.startswith("person_keypoints") if request.keypoints is None else request.keypoints
    source = CocoDetection(request.path, image_dir, keypoints=keypoints, **request.options)
    if request.split:
        return select_listed(source, list_file(request.path, request.split))  # type: ignore[return-value]
    return source


def open_coco_folder(request: OpenRequest) -> CocoDetection:
    """The split ``request.split`` of a COCO folder (``--train coco/ --split train2017``): its annotation file
    ``annotations/instances_<split>.json`` (``person_keypoints_<split>.json`` when keypoints are asked for, or
    when it is the only one) and images in ``image_dir``, else ``<folder>/<split>/``. A split is named in
    full or by a prefix only it has (``train`` for ``train2017``); a folder of one split needs no name."""
    root, name = request.path, request.split
    splits = coco_folder_splits(root)
    names = list(splits)
    if name is None:
        if len(names) > 1:
            raise DataError(f"{root}: a COCO folder with the splits {', '.join(names)}; pick one with --split "
                            f"(e.g. --split {names[0]})")
        name = names[0]
    elif name not in splits:
        matches = [n for n in names if n.startswith(name)]
        if len(matches) != 1:
            which = f"{name!r} could be {' or '.join(matches)}" if matches else f"no split {name!r}"
            raise DataError(f"{root}: {which} (annotations/ holds the splits {', '.join(names)})")
        name = matches[0]
    files = splits[name]
    if request.keypoints and "person_keypoints" not in files:
        raise DataError(f"{root}: keypoints need annotations/person_keypoints_{name}.json, which is not there")
    kind = "person_keypoints" if request.keypoints or "instances" not in files else "instances"
    keypoints = kind == "person_keypoints" if request.keypoints is None else request.keypoints
    image_dir = request.image_dir if request.image_dir is not None else root / name
    if not image_dir.is_dir():
        raise DataError(f"{root}: the images of split {name} ({files[kind].name}) are not in {image_dir}; "
                        "pass their folder (--images)")
    return CocoDetection(files[kind], image_dir, keypoints=keypoints, **request.options)


def coco_image_dir(ann_file: Path) -> Path:
    """``<root>/annotations/instances_X.json`` -> ``<root>/X`` (must exist)."""
    split = ann_file.stem.split("_")[-1]
    root = ann_file.parent.parent if ann_file.parent.name == "annotations" else ann_file.parent
    candidate = root / split
    if not candidate.is_dir():
        raise DataError(f"{ann_file}: image folder not given and the standard location {candidate} does not exist; pass image_dir")
    return candidate


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
