"""Check every image of a data set once before training: it exists, decodes, is complete and has the size
its annotation states. All problems are reported at once (not one per crashed run)."""
from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from tqdm import tqdm

from .io import DataError, ImageTooLarge, printable, read_image, truncated
from .sample import DetectionSource, Sample

MAX_LISTED = 20  # problems named per message; the rest are counted
THREADS = 4  # OpenCV decodes without holding the GIL


@dataclass
class VerifyReport:
    """Problems found by :func:`verify_images`, each ``"<file>: <problem>"``."""

    checked: int = 0
    errors: list[str] = field(default_factory=list)  # the image cannot be trained on
    warnings: list[str] = field(default_factory=list)  # usable, but worth knowing (truncated JPEG)

    @property
    def ok(self) -> bool:
        return not self.errors


def check_image(sample: Sample) -> tuple[str | None, str | None]:
    """(error, warning) of one sample's image: missing, undecodable or of another size than annotated is an
    error; a truncated JPEG / PNG that still decodes is a warning."""
    path = Path(sample.path)
    try:
        height, width = read_image(path).shape[:2]
    except ImageTooLarge as err:
        return str(err), None
    except DataError:
        return (f"{path}: not found" if not path.is_file() else f"{path}: cannot be decoded (corrupt or not an "
                "image)"), None
    if (width, height) != (sample.width, sample.height):
        return (f"{path}: the image is {width}x{height} but its annotation says {sample.width}x{sample.height} "
                "(boxes would be placed wrongly)"), None
    if truncated(path):
        return None, f"{path}: truncated (no end-of-image marker; the missing part decodes as grey)"
    return None, None


def verify_images(samples: Sequence[Sample], progress: bool = True, desc: str = "checking images") -> VerifyReport:
    """Run :func:`check_image` on every sample (in threads, with a progress bar)."""
    report = VerifyReport(checked=len(samples))
    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        results = tqdm(pool.map(check_image, samples), total=len(samples), desc=desc, leave=False,
                       disable=None if progress else True)
        for error, warning in results:
            if error:
                report.errors.append(error)
            if warning:
                report.warnings.append(warning)
    return report


def verify_source(source: DetectionSource, name: str, progress: bool = True) -> VerifyReport:
    """Check the images of ``source`` (called ``name`` in messages): raise :class:`DataError` listing every
    unusable image, and ``warnings.warn`` once, counted and naming the files, about usable but damaged ones."""
    report = verify_images(source.samples, progress, desc=f"checking {name} images")
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
    ``objects_beyond_limit``). Warns once, counted, when there are any; returns (objects, images)."""
    counts = [beyond(sample) for sample in source.samples]
    objects, images = sum(counts), sum(1 for n in counts if n)
    if objects:
        fullest = max(int(np.count_nonzero(~s.ignore)) for s, n in zip(source.samples, counts) if n)
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
