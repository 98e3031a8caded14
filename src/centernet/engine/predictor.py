"""The one predictor: images (files, folders, globs) and videos in; drawn pictures and COCO-format json out.

Images are read and prepared in DataLoader workers and run through the network ``batch`` at a time (when
the test size is fixed; ``keep_res`` inputs differ in size and run one by one); videos frame by frame.
"""
from __future__ import annotations

import dataclasses

import json
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import cv2
import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ..data.io import DataError
from ..ops.boxes import clip_boxes
from ..tasks.base import Task
from ..viz.detections import heatmap_overlay
from .evaluator import EvalSettings, image_meta, pad_style
from .inference import Runner, as_runner, predict_passes
from .inputs import (Frame, TestPreparer, VideoFrames, camera_index, expand_inputs, image_batches, is_video,
                     unique_stems)

#: called with each image's Frame and its final rows (image pixels, boxes clipped) as predict goes
OnImage = Callable[[Frame, np.ndarray], None]


@dataclass
class Prediction:
    rows: np.ndarray  # [K, D] final detection rows in image pixels
    heat: np.ndarray | None  # [C, h, w] the task's heatmap of the (first) test scale (None: decoding runner)
    trans_inv: np.ndarray  # [2, 3] output map -> image
    meta: dict[str, Any] = field(default_factory=dict)  # the image's metadata (size, calibration, ...)


class Predictor:
    """Runs a model (or any ``runner``: images [B, 3, H, W] -> activated maps of the last stack, e.g. an
    ONNX session injected by the caller) on images. The flip test and the test scales of ``settings`` are
    applied around the runner, so a runner never flips by itself."""

    def __init__(self, model: nn.Module | None, task: Task, settings: EvalSettings, class_names: list[str],
                 cat_ids: list[int] | None = None, device: str | torch.device = "cpu",
                 runner: Runner | None = None) -> None:
        if model is None and runner is None:
            raise ValueError("Predictor needs a model or a runner")
        self.model = model.to(device).eval() if model is not None else None
        self.task, self.settings, self.device = task, settings, torch.device(device)
        self.class_names = class_names
        self.cat_ids = cat_ids or list(range(1, task.num_classes + 1))
        self.runner = as_runner(runner if runner is not None else self.model, task, settings.precision, device)
        self.preparer = TestPreparer.from_settings(settings, pad_style(settings, task))

    def passes(self, image: np.ndarray, meta: Mapping[str, Any] | None = None) -> list[dict[str, torch.Tensor]]:
        """One single-image batch per test scale: input, trans_inv and the image's meta (image size, plus
        what the caller gives, e.g. {"calib": P2 [3, 4]})."""
        return [{k: torch.from_numpy(np.ascontiguousarray(v))[None].to(self.device) for k, v in item.items()}
                for item in self.preparer(image, 0, meta)]

    def predict_batch(self, passes: list[dict[str, torch.Tensor]]) -> list[Prediction]:
        """Predictions of a batch given as one batch per test scale ({"input": [B, 3, H, W], ...})."""
        passes = [{k: v.to(self.device) for k, v in batch.items()} for batch in passes]
        rows, maps = predict_passes(self.runner, self.task, passes, self.settings.flip, self.settings.down_ratio)
        heat = self.task.heatmap(maps) if maps is not None else None
        keys = [k for k in passes[0] if k not in ("input", "trans_inv")]
        return [Prediction(rows[i].float().cpu().numpy(), heat[i].float().cpu().numpy() if heat is not None else None,
                           passes[0]["trans_inv"][i].cpu().numpy(), image_meta(passes[0], i, keys))
                for i in range(len(rows))]

    def __call__(self, image: np.ndarray, meta: Mapping[str, Any] | None = None) -> Prediction:
        """Detections on one BGR image; ``meta`` adds per-image data the task needs (e.g. ``calib``)."""
        return self.predict_batch(self.passes(image, meta))[0]

    def draw(self, image: np.ndarray, pred: Prediction, score_thresh: float, heatmap: bool) -> np.ndarray:
        out = heatmap_overlay(image, pred.heat, pred.trans_inv) if heatmap and pred.heat is not None else image
        return self.task.draw(out, pred.rows, self.class_names, score_thresh, pred.meta)

    def predictions(self, files: Sequence[Path], batch: int = 1, workers: int = 0, first_id: int = 0,
                    meta: Mapping[str, Any] | None = None) -> Iterable[tuple[Frame, Prediction | None]]:
        """(frame, prediction) of every image file, in order (prediction None when it cannot be read):
        prepared by ``workers`` processes, ``batch`` images per network run (1 with ``keep_res``)."""
        if self.settings.input_size is None and batch > 1:
            batch = 1  # keep_res: every image has its own input size
        workers = max(0, min(workers, math.ceil(len(files) / batch) - 1))  # no processes for a single batch
        preparer = dataclasses.replace(self.preparer, meta=dict(meta)) if meta else self.preparer
        for frames, passes in image_batches(files, preparer, batch, workers, first_id):
            preds = iter(self.predict_batch(passes) if passes is not None else [])
            for frame in frames:
                yield frame, (next(preds) if frame.image is not None else None)

    def run(self, source: str | Path | Sequence[str | Path], out_dir: str | Path, score_thresh: float = 0.3,
            heatmap: bool = False, progress: bool = True, batch: int = 1, workers: int = 0,
            on_image: OnImage | None = None, meta: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Predict on images (files, folders, globs, URLs; see :func:`~.inputs.expand_inputs`), videos and
        cameras (``0``: until the camera stops or Ctrl-C); write drawings and ``detections.json`` (the detections
        at or above ``score_thresh``). ``meta`` goes with every image (e.g. {"calib": P2}).

        Boxes are clipped to the image. A file that cannot be read is skipped and reported (one counted
        warning naming the files); the others are processed. Returns {"images": n, "images_per_s": f,
        "json": path, "skipped": ["<file>: <problem>", ...], "detections": kept in all}."""
        out_dir = Path(out_dir)
        items = [source] if isinstance(source, (str, Path, int)) else list(source)
        cameras = [c for c in map(camera_index, items) if c is not None]
        files = [i for i in items if camera_index(i) is None]
        paths = expand_inputs(files) if files else []
        out_dir.mkdir(parents=True, exist_ok=True)
        results: list[dict[str, Any]] = []
        skipped: list[str] = []
        start, count = time.perf_counter(), 0
        images = [p for p in paths if not is_video(p)]
        bar = tqdm(total=len(images), desc="predict", disable=None if progress else True, leave=False)
        for frame, pred in self.predictions(images, batch, workers, meta=meta):
            bar.update()
            if pred is None:
                skipped.append(frame.error or frame.name)
                continue
            results += self._finish(frame, pred, score_thresh, on_image)
            cv2.imwrite(str(out_dir / f"{frame.stem}_pred.jpg"), self.draw(frame.image, pred, score_thresh, heatmap))
            count += 1
        bar.close()
        videos = [p for p in paths if is_video(p)]
        for video, stem in zip(videos, unique_stems(videos)):  # frame ids continue after the images'
            count += self._video(video, out_dir, score_thresh, heatmap, results, progress, on_image, count, meta, stem)
        for camera in cameras:
            count += self._video(camera, out_dir, score_thresh, heatmap, results, progress, on_image, count, meta)
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
                "skipped": skipped, "detections": len(results)}

    def _finish(self, frame: Frame, pred: Prediction, score_thresh: float,
                on_image: OnImage | None) -> list[dict[str, Any]]:
        """Clip the boxes of ``pred`` (in place), report the image, return its results above the threshold."""
        image = frame.image
        pred.rows = clip_boxes(pred.rows, image.shape[1], image.shape[0])
        if on_image is not None:
            on_image(frame, pred.rows)
        meta = {**pred.meta, "image_id": frame.index}
        return [dict(r, file_name=frame.name) for r in self.task.to_results(pred.rows, meta, self.cat_ids)
                if r["score"] >= score_thresh]

    def _video(self, path: Path | int, out_dir: Path, score_thresh: float, heatmap: bool, results: list[dict[str, Any]],
               progress: bool, on_image: OnImage | None, first_id: int = 0,
               meta: Mapping[str, Any] | None = None, stem: str | None = None) -> int:
        """Predict on every frame of a video or camera (an int), writing ``<stem>_pred.mp4`` (``stem``: its name
        among the inputs, distinct from other videos'; ``camera<N>``); returns the frame count. Ctrl-C ends a
        camera's recording (the frames so far are kept); a video's goes up as an interruption."""
        frames = VideoFrames(path, stem)
        stem = frames.stem
        writer = None
        count = 0
        try:
            for frame in tqdm(frames, desc=frames.path.name, total=frames.total, disable=None if progress else True,
                              leave=False):
                frame = frame._replace(index=first_id + frame.index)
                pred = self(frame.image, meta)
                results += self._finish(frame, pred, score_thresh, on_image)
                drawn = self.draw(frame.image, pred, score_thresh, heatmap)
                if writer is None:
                    h, w = drawn.shape[:2]
                    writer = cv2.VideoWriter(str(out_dir / f"{stem}_pred.mp4"), cv2.VideoWriter_fourcc(*"mp4v"),
                                             frames.fps, (w, h))
                writer.write(drawn)
                count += 1
        except KeyboardInterrupt:
            if frames.camera is None:
                raise
        finally:
            if writer is not None:
                writer.release()
        return count
