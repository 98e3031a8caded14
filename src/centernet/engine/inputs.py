"""What ``predict`` reads: image files, folders, globs, http(s) image URLs (downloaded first) and videos,
expanded into one ordered list, and cameras by index (``0``); images read and prepared for the network
(resized, normalised, one item per test scale) in DataLoader workers, so the network never waits for the disk
or the resizing."""
from __future__ import annotations

import atexit
import glob
import hashlib
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, NamedTuple, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..data.io import DataError, read_image
from ..data.yolo import IMAGE_EXTENSIONS
from ..data.pipeline import test_item
from ..data.transforms import prepare_test_image

IMAGE_SUFFIXES = IMAGE_EXTENSIONS  # one list of image file suffixes (data/yolo.py)
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm"}
GLOB_CHARS = ("*", "?", "[")
URL_SCHEMES = ("http://", "https://")
MAX_URL_BYTES = 64 * 2 ** 20  # an image fetched from a URL (a photo is a few MB)
_DOWNLOADS: list[Path] = []  # this process's folder of fetched images, removed at exit


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def is_url(item: str | Path) -> bool:
    return isinstance(item, str) and item.lower().startswith(URL_SCHEMES)


def camera_index(item: str | Path | int) -> int | None:
    """The camera an input names (``0``, ``1``, ...: a number that is not a file here), else None."""
    text = str(item)
    if isinstance(item, int) or (text.isdigit() and len(text) <= 3 and not Path(text).exists()):
        return int(text)
    return None


def fetch_url(url: str, progress: bool = False) -> Path:
    """The image at ``url``, downloaded (through the project's download code: one clear line when offline,
    at most :data:`MAX_URL_BYTES`) into a folder of this process that is removed at exit."""
    from ..weights.download import download

    if not _DOWNLOADS:
        _DOWNLOADS.append(Path(tempfile.mkdtemp(prefix="centernet-inputs-")))
        atexit.register(shutil.rmtree, _DOWNLOADS[0], True)
    name = Path(url.split("?", 1)[0].rstrip("/")).name or "image"
    folder = _DOWNLOADS[0] / hashlib.sha256(url.encode()).hexdigest()[:12]  # two URLs may share a file name
    folder.mkdir(exist_ok=True)
    return download(url, folder / name, progress=progress, max_bytes=MAX_URL_BYTES)


def expand_inputs(items: str | Path | Sequence[str | Path]) -> list[Path]:
    """Files as given, folders -> their images (sorted), globs (``*``, ``?``, ``[``; ``**`` recursive) ->
    the matching images and videos (sorted), URLs -> the downloaded file; each file once, in the order first
    named. A name that matches nothing is a :class:`DataError`."""
    if isinstance(items, (str, Path)):
        items = [items]
    out: list[Path] = []
    for item in items:
        text = str(item)
        path = Path(text).expanduser()
        if is_url(item):
            found = [fetch_url(text)]
        elif path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not found:
                raise DataError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in folder {path}")
        elif path.is_file():
            found = [path]
        elif any(c in text for c in GLOB_CHARS):
            found = sorted(Path(p) for p in glob.glob(str(path), recursive=True)
                           if Path(p).is_file() and Path(p).suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES)
            if not found:
                raise DataError(f"no images or videos match {text}")
        else:
            raise DataError(f"input not found: {path}")
        out += found
    seen: set[Path] = set()
    return [p for p in out if not (p.resolve() in seen or seen.add(p.resolve()))]


def unique_stems(paths: Sequence[Path]) -> list[str]:
    """A distinct output name per input: its stem; ``a.jpg`` and ``a.png`` -> ``a_jpg``, ``a_png``; any
    clash left (same names in two folders) gets ``_2``, ``_3``, ..."""
    suffixes: dict[str, set[str]] = {}
    for p in paths:
        suffixes.setdefault(p.stem, set()).add(p.suffix)
    names = [p.stem if len(suffixes[p.stem]) == 1 else f"{p.stem}_{p.suffix[1:]}" for p in paths]
    seen: Counter[str] = Counter()
    out = []
    for name in names:
        seen[name] += 1
        out.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return out


@dataclass(frozen=True)
class TestPreparer:
    """An image -> its network inputs: one item per test scale (input, trans_inv and the image's meta)."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    input_size: tuple[int, int] | None
    pad: int
    down_ratio: int
    scales: tuple[float, ...] = (1.0,)
    meta: Mapping[str, Any] | None = None  # per-image metadata every image gets (e.g. {"calib": P2})
    pad_style: str = "centernet"  # keep_res layout (centernet.data.transforms.PAD_STYLES)

    @classmethod
    def from_settings(cls, settings: Any, pad_style: str = "centernet") -> "TestPreparer":
        """From :class:`~centernet.engine.evaluator.EvalSettings` (and the keep_res layout to use)."""
        size = tuple(settings.input_size) if settings.input_size is not None else None
        return cls(tuple(settings.mean), tuple(settings.std), size, settings.pad, settings.down_ratio,
                   tuple(settings.scales) or (1.0,), pad_style=pad_style)

    def __call__(self, image: np.ndarray, image_id: int = 0,
                 meta: Mapping[str, Any] | None = None) -> list[dict[str, np.ndarray]]:
        mean, std = np.array(self.mean, np.float32), np.array(self.std, np.float32)
        h, w = image.shape[:2]
        base = {"image_id": np.int64(image_id), "image_size": np.array([w, h], np.float32)}
        base.update({k: np.asarray(v, dtype=np.float32) for k, v in {**(self.meta or {}), **(meta or {})}.items()})
        return [test_item(prepare_test_image(image, mean, std, self.input_size, self.pad, self.down_ratio, s,
                                             self.pad_style), base)
                for s in self.scales]


class Frame(NamedTuple):
    """One input image: its name, the image (None when unreadable, ``error`` says why), the name its
    drawing is saved under, and its position in the inputs."""

    name: str
    image: np.ndarray | None
    error: str | None
    stem: str
    index: int = 0


class VideoFrames:
    """The frames of a video file or a camera (an int index), as :class:`Frame` s named ``<stem>_<frame>``
    (``stem``: the file's, ``camera<N>``, unless given, e.g. to tell two inputs named alike apart)."""

    def __init__(self, path: str | Path | int, stem: str | None = None) -> None:
        self.camera = path if isinstance(path, int) else None
        self.path = Path(f"camera{path}") if self.camera is not None else Path(path)
        self.stem = stem or self.path.stem
        cap = self._open()
        if not cap.isOpened():
            raise DataError(f"camera {self.camera} could not be opened" if self.camera is not None
                            else f"video could not be opened: {self.path}")
        self.fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
        self.total = (int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None) if self.camera is None else None
        cap.release()

    def _open(self) -> Any:
        return cv2.VideoCapture(self.camera if self.camera is not None else str(self.path))

    def __iter__(self) -> Iterator[Frame]:
        cap = self._open()
        index = 0
        try:
            while True:
                ok, frame = cap.read()
                if not ok:
                    break
                name = f"{self.stem}_{index:06d}"
                yield Frame(name, frame, None, name, index)
                index += 1
        finally:
            cap.release()


class PreparedImages(Dataset):
    """Image files read and prepared by ``prepare`` (in DataLoader workers): each item is the image's
    :class:`Frame` and its per-scale network inputs (None when the image cannot be read)."""

    def __init__(self, files: Sequence[Path], prepare: TestPreparer, first_id: int = 0) -> None:
        self.files, self.prepare, self.first_id = list(files), prepare, first_id
        self.stems = unique_stems(self.files)
        counts = Counter(p.name for p in self.files)  # a name two inputs share is shown with its path
        self.names = [p.name if counts[p.name] == 1 else str(p) for p in self.files]

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[Frame, list[dict[str, np.ndarray]] | None]:
        path = self.files[i]
        try:
            image = read_image(path)
        except DataError as err:
            return Frame(self.names[i], None, str(err), self.stems[i], self.first_id + i), None
        return Frame(self.names[i], image, None, self.stems[i], self.first_id + i), self.prepare(image, self.first_id + i)


def collate_prepared(items: list[tuple[Frame, list[dict[str, np.ndarray]] | None]]
                     ) -> tuple[list[Frame], list[dict[str, torch.Tensor]] | None]:
    """Frames of a batch, and one batch per test scale of those that could be read (None: none)."""
    frames = [frame for frame, _ in items]
    good = [passes for _, passes in items if passes is not None]
    if not good:
        return frames, None
    batches = [{k: torch.from_numpy(np.stack([np.asarray(p[s][k]) for p in good])) for k in good[0][s]}
               for s in range(len(good[0]))]
    return frames, batches


def image_batches(files: Sequence[Path], prepare: TestPreparer, batch_size: int = 1, workers: int = 0,
                  first_id: int = 0) -> DataLoader:
    """Batches of :func:`collate_prepared` over ``files``, read and prepared by ``workers`` processes."""
    return DataLoader(PreparedImages(files, prepare, first_id), batch_size=batch_size, shuffle=False,
                      num_workers=workers, collate_fn=collate_prepared, persistent_workers=False)
