"""The reports of a run folder, from what the trainer and the evaluator produce: results.csv / results.png
after every epoch; after each evaluation the per-class PR curves and AP table (when the scorer computed
per-class curves), the confusion matrix and a validation mosaic (from the first six columns of the detection
rows, x1 y1 x2 y2 score class, which every task has); TensorBoard events when tensorboard is installed.

A report that cannot be written (a full disk, a broken plotting backend) is a warning, never the end of a
training run.
"""
from __future__ import annotations

import math
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from ..data.io import read_image
from ..data.sample import DetectionSource
from . import reports
from .evaluator import EvalResult

PLOT_INTERVAL_S = 30.0  # results.png is redrawn at most this often (a plot costs ~1 s), and at the end
MOSAIC_IMAGES = 4  # validation images in the mosaic
MOSAIC_SCORE = 0.3  # predictions drawn in the mosaic
CONFUSION_SCORE = 0.25  # detections counted in the confusion matrix


def ground_truth_rows(source: DetectionSource, image_ids: Sequence[int]) -> dict[int, np.ndarray]:
    """image id -> [N, 5] rows (x1, y1, x2, y2, class) of the non-ignored objects of those images."""
    wanted = set(int(i) for i in image_ids)
    out = {}
    for sample in source.samples:
        if sample.image_id in wanted:
            keep = ~np.asarray(sample.ignore, dtype=bool)
            out[sample.image_id] = np.hstack([sample.boxes[keep], sample.labels[keep, None].astype(np.float32)])
    return out


def evaluation_reports(out_dir: str | Path, result: EvalResult, source: DetectionSource,
                       class_names: Sequence[str], mosaic_images: int = MOSAIC_IMAGES,
                       score: float = MOSAIC_SCORE) -> list[Path]:
    """pr_curves.png + per_class_ap.txt (when ``result.per_class``), confusion_matrix.png and val_mosaic.jpg
    (when ``result.boxes``) in ``out_dir``; returns the files written."""
    out = Path(out_dir)
    names = list(class_names)
    matrix = None
    truth: dict[int, np.ndarray] = {}
    if result.boxes:
        truth = ground_truth_rows(source, list(result.boxes))
        ids = [i for i in result.boxes if i in truth]
        matrix = reports.confusion_matrix([result.boxes[i] for i in ids], [truth[i] for i in ids], len(names),
                                          score=CONFUSION_SCORE)
    written: list[Path] = []
    if result.per_class is not None:
        written += reports.write_evaluation_reports(out, result.per_class, matrix, names)
    elif matrix is not None:
        written.append(reports.plot_confusion_matrix(matrix, names, out / reports.CONFUSION_PNG))
    if truth and mosaic_images:
        picks = [s for s in source.samples if s.image_id in result.boxes][:mosaic_images]
        images = [read_image(s.path) for s in picks]
        written.append(reports.validation_mosaic(images, [result.boxes[s.image_id] for s in picks],
                                                 [truth[s.image_id] for s in picks], names,
                                                 out / reports.MOSAIC_JPG, score))
    return written


class RunReports:
    """The reports of one training run in ``out_dir`` (rank 0 only). ``enabled=False`` writes nothing."""

    def __init__(self, out_dir: str | Path, class_names: Sequence[str], val_source: DetectionSource | None = None,
                 enabled: bool = True) -> None:
        self.out_dir, self.class_names, self.val_source = Path(out_dir), list(class_names), val_source
        self.enabled = enabled
        self.tensorboard = reports.TensorBoardLogger(self.out_dir) if enabled else None
        self._warned: set[str] = set()
        self._plotted = -math.inf  # time.monotonic() of the last results.png

    def _guard(self, what: str, write: Callable[[], Any]) -> Any:
        try:
            return write()
        except Exception as err:  # a report is never worth the run: warn once per kind and go on
            if what not in self._warned:
                self._warned.add(what)
                warnings.warn(f"{what} not written in {self.out_dir}: {type(err).__name__}: {err}", stacklevel=3)
            return None

    def epoch(self, history: Sequence[Mapping[str, Any]], loss_keys: Sequence[str] | None = None,
              final: bool = False) -> None:
        """results.csv and the epoch's scalars (the last record of ``history``); results.png too when
        ``final`` (the last epoch, or one with a validation) or PLOT_INTERVAL_S after the last one."""
        if not self.enabled or not history:
            return
        plot = final or time.monotonic() - self._plotted >= PLOT_INTERVAL_S
        self._guard("results.csv / results.png",
                    lambda: reports.write_epoch_reports(history, self.out_dir, loss_keys, plot))
        if plot:
            self._plotted = time.monotonic()
        if self.tensorboard is not None:
            record = history[-1]
            self._guard("TensorBoard events", lambda: self.tensorboard.log_scalars(record, int(record["epoch"])))

    def evaluation(self, result: EvalResult, epoch: int) -> list[Path]:
        """The evaluation pictures of ``result`` (on the validation source)."""
        if not self.enabled or self.val_source is None:
            return []
        written = self._guard("evaluation reports", lambda: evaluation_reports(
            self.out_dir, result, self.val_source, self.class_names)) or []
        mosaic = self.out_dir / reports.MOSAIC_JPG
        if self.tensorboard is not None and self.tensorboard.enabled and mosaic in written:
            image = cv2.imread(str(mosaic))
            if image is not None:
                self._guard("TensorBoard events", lambda: self.tensorboard.log_image("val/mosaic", image, epoch))
        return written

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()
