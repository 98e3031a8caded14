"""Check every image of a data set before training: it exists, decodes, is complete and has the size its
annotation states. All problems are reported at once (not one per crashed run).

Sets of up to :data:`FULL_CHECK_LIMIT` images are decoded (``data.verify=true``, "auto"); a larger set, where
decoding every image would take minutes (COCO: 118,287 images, about 2 ms each), is checked from each file's
header and end marker: exists, within the pixel limit, the size its header states (turned as its EXIF
orientation turns it) equals the annotation's, complete. An image whose data does not decode is then reported
when training first reads it (it stops the run, naming the file). ``data.verify="full"`` decodes every image
of any set, ``"headers"`` reads headers at any size, ``false`` checks nothing. Formats whose header does not
settle the size (and any doubt: unreadable EXIF, a PNG with an EXIF chunk) are decoded in every mode.

What the check learns of a good image (its decoded size, whether it lacks its end marker) is remembered per
image file, by its path, size and modification time (:mod:`.cache`, ``image_checks/``): a later start checks
only images it has not seen in that version, so the second start on COCO checks nothing and takes seconds. A
changed image (other size or time) is checked again. Only images found usable are remembered: a missing,
undecodable or oversized image is checked, and reported, at every start until it is fixed; a size that
differs from the annotation and a truncated file are reported at every start too (from what was remembered).
"""
from __future__ import annotations

import json
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np
from tqdm import tqdm

from . import cache
from .io import DataError, ImageTooLarge, decoded_size, max_image_pixels, printable, stated_size, truncated
from .sample import DetectionSource, Sample, SampleTable

MAX_LISTED = 20  # problems named per message; the rest are counted
THREADS = 4  # OpenCV decodes without holding the GIL
#: bump when what a remembered check means changes (the OpenCV version is part of the key as well)
CHECK_FORMAT = 2
#: the most images whose check decodes them all under ``data.verify=true`` ("auto"; about 20 s here)
FULL_CHECK_LIMIT = 10_000
#: ``data.verify`` values: true ("auto": decode up to FULL_CHECK_LIMIT images, else read headers), false (no
#: check), "full" (decode every image), "headers" (headers and end markers only)
VERIFY_MODES = (True, False, "full", "headers")


@dataclass
class VerifyReport:
    """Problems found by :func:`verify_images`, each ``"<file>: <problem>"``; ``checked`` images in all, of
    which ``remembered`` were known from an earlier check of the same file version."""

    checked: int = 0
    errors: list[str] = field(default_factory=list)  # the image cannot be trained on
    warnings: list[str] = field(default_factory=list)  # usable, but worth knowing (truncated JPEG)
    remembered: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass(frozen=True)
class ImageFacts:
    """What the check learnt of a readable image: the size it decodes to, whether it lacks its end marker, and
    whether it was decoded (else the size is its header's, and the file may still fail to decode)."""

    width: int
    height: int
    truncated: bool
    decoded: bool = True


def inspect_image(path: str | Path, decode: bool = True) -> ImageFacts | str:
    """The facts of the image at ``path``, or the error that makes it unusable (missing, undecodable, over the
    pixel limit). ``decode=False``: from the header where it settles the size (:func:`~.io.stated_size`)."""
    try:
        size = None if decode else stated_size(path)
        if size is not None:
            return ImageFacts(*size, truncated(path), decoded=False)
        width, height = decoded_size(path)
        return ImageFacts(width, height, truncated(path))
    except ImageTooLarge as err:
        return str(err)
    except DataError:
        if not os.path.isfile(path):
            return f"{path}: not found"
        return f"{path}: cannot be decoded (corrupt or not an image)"
    except OSError as err:  # e.g. no permission to read it
        return f"{path}: cannot be read ({err.strerror or err})"


def judge(path: Path | str, facts: ImageFacts | str, width: int, height: int) -> tuple[str | None, str | None]:
    """(error, warning) of an image with ``facts`` annotated as ``width`` x ``height``: of another size than
    annotated is an error; a truncated JPEG / PNG that still decodes is a warning."""
    if isinstance(facts, str):
        return facts, None
    if (facts.width, facts.height) != (width, height):
        return (f"{path}: the image is {facts.width}x{facts.height} but its annotation says {width}x{height} "
                "(boxes would be placed wrongly)"), None
    if facts.truncated:
        return None, f"{path}: truncated (no end-of-image marker; the missing part decodes as grey)"
    return None, None


def check_image(sample: Sample) -> tuple[str | None, str | None]:
    """(error, warning) of one sample's image, checked now: missing, undecodable or of another size than
    annotated is an error; a truncated JPEG / PNG that still decodes is a warning."""
    path = Path(sample.path)
    return judge(path, inspect_image(path), sample.width, sample.height)


class CheckMemory:
    """The remembered facts of images, one cache file per folder: ``{name: [size, mtime_ns, width, height,
    truncated, decoded]}``, kept while the file has that size and modification time."""

    def __init__(self) -> None:
        self.folders: dict[str, dict[str, list[int]]] = {}
        self.changed: set[str] = set()
        self.key = {"format": CHECK_FORMAT, "opencv": cv2.__version__}
        self.max_pixels = max_image_pixels()

    def _file(self, folder: str) -> Path | None:
        return cache.cache_file("image_checks", folder, ".json")

    def _folder(self, folder: str) -> dict[str, list[int]]:
        known = self.folders.get(folder)
        if known is None:
            known = {}
            path = self._file(folder)
            try:
                if path is not None and path.is_file():
                    stored = json.loads(path.read_text(encoding="utf-8"))
                    if stored.get("key") == self.key and stored.get("folder") == folder:
                        known = {name: entry for name, entry in stored["images"].items()
                                 if isinstance(entry, list) and len(entry) == 6 and all(type(v) is int for v in entry)}
            except (OSError, ValueError, KeyError, AttributeError, TypeError):  # unreadable: check again
                known = {}
            self.folders[folder] = known
        return known

    def recall(self, path: str, state: os.stat_result | None, decoded: bool = True) -> ImageFacts | None:
        """The facts remembered of this version of ``path`` (``state``: its stat, None if it has none);
        ``decoded``: only facts learnt by decoding it."""
        if state is None:
            return None
        folder, name = os.path.split(os.path.abspath(path))
        entry = self._folder(folder).get(name)
        if entry is None or entry[0] != state.st_size or entry[1] != state.st_mtime_ns or (decoded and not entry[5]):
            return None
        if entry[2] * entry[3] > self.max_pixels:  # the limit was lowered since: check again
            return None
        return ImageFacts(int(entry[2]), int(entry[3]), bool(entry[4]), bool(entry[5]))

    def remember(self, path: str, state: os.stat_result, facts: ImageFacts) -> None:
        folder, name = os.path.split(os.path.abspath(path))
        self._folder(folder)[name] = [state.st_size, state.st_mtime_ns, facts.width, facts.height,
                                      int(facts.truncated), int(facts.decoded)]
        self.changed.add(folder)

    def forget(self, path: str) -> None:
        folder, name = os.path.split(os.path.abspath(path))
        if self._folder(folder).pop(name, None) is not None:
            self.changed.add(folder)

    def save(self) -> None:
        for folder in sorted(self.changed):
            path = self._file(folder)
            if path is not None:
                text = json.dumps({"key": self.key, "folder": folder, "images": self.folders[folder]})
                cache.write_atomic(path, lambda f: f.write(text.encode("utf-8", "surrogatepass")))
        self.changed.clear()


def _stat(path: str) -> os.stat_result | None:
    try:
        return os.stat(path)
    except (OSError, ValueError):
        return None


def _same_version(a: os.stat_result | None, b: os.stat_result | None) -> bool:
    return a is not None and b is not None and (a.st_size, a.st_mtime_ns) == (b.st_size, b.st_mtime_ns)


def image_records(samples: Sequence[Sample]) -> tuple[list[str], list[int], list[int]]:
    """(image path as a string, annotated width, annotated height) of every sample (of a
    :class:`~.sample.SampleTable`, without making samples or paths)."""
    if isinstance(samples, SampleTable):
        paths, widths, heights = samples.image_records()
        return paths, widths.tolist(), heights.tolist()
    return [str(Path(s.path)) for s in samples], [s.width for s in samples], [s.height for s in samples]


def verify_images(samples: Sequence[Sample], progress: bool = True, desc: str = "checking images",
                  remember: bool = True, decode: bool = True) -> VerifyReport:
    """Run the check on the image of every sample: from what is remembered of an unchanged image file, else
    by inspecting it (in threads, with a progress bar), then remembering what was learnt of the good ones
    (``remember=False``: neither recall nor remember). ``decode=False``: from headers where they settle the
    size (:func:`inspect_image`; what an earlier decode learnt serves as well)."""
    names, widths, heights = image_records(samples)  # (strings, as a Path shows itself in the messages)
    memory = CheckMemory() if remember and cache.cache_root() is not None else None
    facts: dict[str, ImageFacts | str] = {}
    states: dict[str, os.stat_result | None] = {}
    for name in names:
        if name in states:
            continue
        states[name] = state = _stat(name)
        known = memory.recall(name, state, decoded=decode) if memory is not None else None
        if known is not None:
            facts[name] = known
    todo = [name for name in states if name not in facts]
    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        found = tqdm(pool.map(partial(inspect_image, decode=decode), todo), total=len(todo), desc=desc, leave=False,
                     disable=None if progress and todo else True)
        for name, result in zip(todo, found):
            facts[name] = result
            state = states[name]
            if memory is None:
                continue
            if isinstance(result, ImageFacts) and _same_version(state, _stat(name)):
                memory.remember(name, state, result)  # (unchanged while it was read: the facts are of this version)
            elif isinstance(result, str):
                memory.forget(name)  # what its header told is not all (it does not decode)
    if memory is not None:
        memory.save()
    inspected = set(todo)
    report = VerifyReport(checked=len(names), remembered=sum(1 for n in names if n not in inspected))
    for name, width, height in zip(names, widths, heights):
        error, warning = judge(name, facts[name], width, height)
        if error:
            report.errors.append(error)
        if warning:
            report.warnings.append(warning)
    return report


def decodes_all(mode: bool | str, images: int) -> bool:
    """Whether the check in ``mode`` (a ``data.verify`` value) decodes every one of ``images`` images."""
    if mode not in VERIFY_MODES or mode is False:
        raise ValueError(f"data.verify must be true, false, \"full\" or \"headers\", got {mode!r}")
    return mode == "full" or (mode is True and images <= FULL_CHECK_LIMIT)


def verify_source(source: DetectionSource, name: str, progress: bool = True, mode: bool | str = True) -> VerifyReport:
    """Check the images of ``source`` (called ``name`` in messages) as ``mode`` (a ``data.verify`` value other
    than false) says: raise :class:`DataError` listing every unusable image, and ``warnings.warn`` once,
    counted and naming the files, about usable but damaged ones."""
    decode = decodes_all(mode, len(source.samples))
    how = "" if decode else " (headers; each is decoded when first read)"
    report = verify_images(source.samples, progress, desc=f"checking {name} images{how}", decode=decode)
    if report.errors:
        raise DataError(_listing(f"{len(report.errors)} of {report.checked} {name} images cannot be used",
                                 report.errors))
    if report.warnings:
        warnings.warn(_listing(f"{len(report.warnings)} of {report.checked} {name} images are damaged but "
                               "usable (training goes on)", report.warnings), stacklevel=2)
    return report


def check_object_limit(source: DetectionSource, limit: int, beyond: Callable[[Sample], int],
                       name: str = "training") -> tuple[int, int]:
    """Count the objects of ``source`` that get no target because a sample holds more than ``limit``
    (``data.max_objects``): ``beyond(sample)`` says how many of one sample (the task's
    ``objects_beyond_limit``). Warns once, counted, when there are any; returns (objects, images).
    Only samples of more than ``limit`` objects (crowd regions included) can have objects beyond it: of a
    :class:`~.sample.SampleTable`, only those are made and asked."""
    samples = source.samples
    if isinstance(samples, SampleTable):
        samples = samples.select(np.nonzero(samples.object_counts() > limit)[0])
    counts = [beyond(sample) for sample in samples]
    objects, images = sum(counts), sum(1 for n in counts if n)
    if objects:
        fullest = max(int(np.count_nonzero(~s.ignore)) for s, n in zip(samples, counts) if n)
        warnings.warn(f"{objects} objects in {images} {name} images beyond data.max_objects={limit} are not trained "
                      f"(up to {fullest} objects in one image); raise data.max_objects", stacklevel=2)
    return objects, images


def _listing(head: str, items: list[str]) -> str:
    """One line for one problem; else a head line and one line per problem (up to :data:`MAX_LISTED`)."""
    items = [printable(item) for item in items]  # each item one line, whatever its file name holds
    if len(items) == 1:
        return f"{head}: {items[0]}"
    lines = [head + ":"] + [f"  {item}" for item in items[:MAX_LISTED]]
    if len(items) > MAX_LISTED:
        lines.append(f"  ... and {len(items) - MAX_LISTED} more")
    return "\n".join(lines)
