"""The one predictor: images, folders and videos in; drawn pictures and COCO-format json out."""
from __future__ import annotations

import json
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, NamedTuple

import cv2
import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ..data.io import DataError, read_image
from ..data.pipeline import test_item
from ..data.transforms import prepare_test_image
from ..tasks.base import Task
from ..visualize import heatmap_overlay
from .evaluator import EvalSettings, image_meta
from .inference import Runner, model_runner, predict_passes

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm"}


@dataclass
class Prediction:
    rows: np.ndarray  # [K, D] final detection rows in image pixels
    heat: np.ndarray | None  # [C, h, w] the task's heatmap of the (first) test scale (None: decoding runner)
    trans_inv: np.ndarray  # [2, 3] output map -> image
    meta: dict[str, Any] = field(default_factory=dict)  # the image's metadata (size, calibration, ...)


class Predictor:
    """Runs a model (or any ``runner``: images [B, 3, H, W] -> activated maps of the last stack, e.g. an
    ONNX session injected by the caller) on single images. The flip test and the test scales of
    ``settings`` are applied around the runner, so a runner never flips by itself."""

    def __init__(self, model: nn.Module | None, task: Task, settings: EvalSettings, class_names: list[str],
                 cat_ids: list[int] | None = None, device: str | torch.device = "cpu",
                 runner: Runner | None = None) -> None:
        if model is None and runner is None:
            raise ValueError("Predictor needs a model or a runner")
        self.model = model.to(device).eval() if model is not None else None
        self.task, self.settings, self.device = task, settings, torch.device(device)
        self.class_names = class_names
        self.cat_ids = cat_ids or list(range(1, task.num_classes + 1))
        self.runner = runner or model_runner(self.model, task)

    def passes(self, image: np.ndarray, meta: Mapping[str, Any] | None = None) -> list[dict[str, torch.Tensor]]:
        """One single-image batch per test scale: input, trans_inv and the image's meta (image size, plus
        what the caller gives, e.g. {"calib": P2 [3, 4]})."""
        s = self.settings
        mean, std = np.array(s.mean, np.float32), np.array(s.std, np.float32)
        h, w = image.shape[:2]
        base = {"image_id": np.int64(0), "image_size": np.array([w, h], np.float32)}
        base.update({k: np.asarray(v, dtype=np.float32) for k, v in (meta or {}).items()})
        out = []
        for scale in tuple(s.scales) or (1.0,):
            prepared = prepare_test_image(image, mean, std, s.input_size, s.pad, s.down_ratio, scale)
            item = test_item(prepared, base)
            out.append({k: torch.from_numpy(np.ascontiguousarray(v))[None].to(self.device) for k, v in item.items()})
        return out

    def __call__(self, image: np.ndarray, meta: Mapping[str, Any] | None = None) -> Prediction:
        """Detections on one BGR image; ``meta`` adds per-image data the task needs (e.g. ``calib``)."""
        passes = self.passes(image, meta)
        rows, maps = predict_passes(self.runner, self.task, passes, self.settings.flip, self.settings.down_ratio)
        heat = self.task.heatmap(maps) if maps is not None else None
        return Prediction(rows[0].float().cpu().numpy(),
                          heat[0].float().cpu().numpy() if heat is not None else None,
                          passes[0]["trans_inv"][0].cpu().numpy(), image_meta(passes[0], 0, [k for k in passes[0] if k not in ("input", "trans_inv")]))

    def draw(self, image: np.ndarray, pred: Prediction, score_thresh: float, heatmap: bool) -> np.ndarray:
        out = heatmap_overlay(image, pred.heat, pred.trans_inv) if heatmap and pred.heat is not None else image
        return self.task.draw(out, pred.rows, self.class_names, score_thresh, pred.meta)

    def run(self, source: str | Path, out_dir: str | Path, score_thresh: float = 0.3, heatmap: bool = False,
            progress: bool = True, meta: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Predict on an image, a folder of images or a video; write drawings and ``detections.json``.
        ``meta`` goes with every image (e.g. {"calib": P2}).

        Boxes are clipped to the image. A file of a folder that cannot be read is skipped and reported (one
        counted warning naming the files); the others are processed. Returns {"images": n,
        "images_per_s": f, "json": path, "skipped": ["<file>: <problem>", ...]}.
        """
        out_dir = Path(out_dir)
        frames = FrameSource(source)
        out_dir.mkdir(parents=True, exist_ok=True)
        results: list[dict[str, Any]] = []
        skipped: list[str] = []
        writer = None
        start, count = time.perf_counter(), 0
        for frame_id, frame in enumerate(tqdm(frames, desc="predict", disable=None if progress else True,
                                              total=getattr(frames, "total", None))):
            if frame.image is None:
                skipped.append(frame.error or frame.name)
                continue
            image = frame.image
            pred = self(image, meta)
            pred.rows = clip_boxes(pred.rows, image.shape[1], image.shape[0])
            meta = {**pred.meta, "image_id": frame_id}
            results += [dict(r, file_name=frame.name) for r in self.task.to_results(pred.rows, meta, self.cat_ids)
                        if r["score"] >= score_thresh]
            drawn = self.draw(image, pred, score_thresh, heatmap)
            if frames.video:
                if writer is None:
                    h, w = drawn.shape[:2]
                    writer = cv2.VideoWriter(str(out_dir / f"{Path(source).stem}_pred.mp4"),
                                             cv2.VideoWriter_fourcc(*"mp4v"), frames.fps, (w, h))
                writer.write(drawn)
            else:
                cv2.imwrite(str(out_dir / f"{frame.stem}_pred.jpg"), drawn)
            count += 1
        if writer is not None:
            writer.release()
        elapsed = time.perf_counter() - start
        if skipped and not count:
            raise DataError(skipped[0] if len(skipped) == 1 else
                            f"none of the {len(skipped)} files could be read: {'; '.join(skipped[:5])}")
        if skipped:
            warnings.warn(f"skipped {len(skipped)} of {len(skipped) + count} files that could not be read: "
                          f"{'; '.join(skipped[:10])}" + (" ..." if len(skipped) > 10 else ""), stacklevel=2)
        json_path = out_dir / "detections.json"
        json_path.write_text(json.dumps(results))
        return {"images": count, "images_per_s": count / max(elapsed, 1e-9), "json": str(json_path),
                "skipped": skipped}


def clip_boxes(rows: np.ndarray, width: int, height: int) -> np.ndarray:
    """Detection rows [K, D] with the box columns (x1, y1, x2, y2 = columns 0-3) clipped to the image."""
    rows = rows.copy()
    rows[:, [0, 2]] = rows[:, [0, 2]].clip(0, width)
    rows[:, [1, 3]] = rows[:, [1, 3]].clip(0, height)
    return rows


class Frame(NamedTuple):
    """One input of :class:`FrameSource`: its name, the image (None when unreadable, ``error`` says why)
    and the stem its drawing is saved under (unique within the folder: ``a.jpg`` and ``a.png`` -> ``a_jpg``,
    ``a_png``)."""

    name: str
    image: np.ndarray | None
    error: str | None
    stem: str


class FrameSource:
    """Iterate :class:`Frame` s over an image file, a folder of images or a video file."""

    def __init__(self, source: str | Path) -> None:
        self.path = Path(source)
        self.video = self.path.suffix.lower() in VIDEO_SUFFIXES
        self.fps, self.total = 25.0, None
        if not self.path.exists():
            raise DataError(f"input not found: {self.path}")
        if self.video:
            cap = cv2.VideoCapture(str(self.path))
            if not cap.isOpened():
                raise DataError(f"video could not be opened: {self.path}")
            self.fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
            self.total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
            cap.release()
        elif self.path.is_dir():
            self.files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not self.files:
                raise DataError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in folder {self.path}")
            self.total = len(self.files)
        else:
            self.files = [self.path]
            self.total = 1

    def __len__(self) -> int:
        return self.total or 0

    def __iter__(self) -> Iterator[Frame]:
        if self.video:
            cap = cv2.VideoCapture(str(self.path))
            index = 0
            while True:
                ok, frame = cap.read()
                if not ok:
                    break
                name = f"{self.path.stem}_{index:06d}"
                yield Frame(name, frame, None, name)
                index += 1
            cap.release()
            return
        stems = Counter(p.stem for p in self.files)
        for path in self.files:
            stem = path.stem if stems[path.stem] == 1 else f"{path.stem}_{path.suffix[1:]}"
            try:
                yield Frame(path.name, read_image(path), None, stem)
            except DataError as err:
                yield Frame(path.name, None, str(err), stem)
