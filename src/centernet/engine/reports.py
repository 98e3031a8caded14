"""The reports of a run folder, from what the trainer and the evaluator produce: results.csv / results.png
after every epoch; after each evaluation the per-class PR curves and AP table (when the scorer computed
per-class curves), the confusion matrix and a validation mosaic (from the first six columns of the detection
rows, x1 y1 x2 y2 score class, which every task has); TensorBoard events when tensorboard is installed.

This module decides what goes into each report and when it is written; :mod:`centernet.viz.plots` draws the
pictures. Inputs are plain numbers and numpy arrays (history records, {class: (recall, precision)}), not
evaluator objects. Detections are rows (x1, y1, x2, y2, score, class, ...); ground truth is rows (x1, y1, x2,
y2, class). A report that cannot be written (a full disk, a broken plotting backend) is a warning, never the
end of a training run. Importing this module stays cheap: torch and matplotlib come on first use.
"""
from __future__ import annotations

import csv
import math
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import cv2
import numpy as np

from ..data.io import read_image
from ..data.sample import DetectionSource
# the mosaic's layout (CAPTION_HEIGHT) is part of this module's reports, as are the pictures themselves
from .console import VAL_PREFIX
from ..viz.plots import (CAPTION_HEIGHT, Panel, PathLike, as_rows, plot_confusion_matrix, plot_panels, plot_pr_curves,
                         validation_mosaic)

if TYPE_CHECKING:
    from .evaluator import EvalResult

# file names in the run folder
RESULTS_CSV, RESULTS_PNG = "results.csv", "results.png"
PR_CURVES_PNG, AP_TABLE_TXT = "pr_curves.png", "per_class_ap.txt"
CONFUSION_PNG, MOSAIC_JPG = "confusion_matrix.png", "val_mosaic.jpg"
PLOT_INTERVAL_S = 30.0  # results.png is redrawn at most this often (a plot costs ~1 s), and at the end
MOSAIC_IMAGES = 4  # validation images in the mosaic
MOSAIC_COLUMNS = 2  # (ground truth, predictions) pairs per mosaic row
REPORT_SCORE = 0.3  # detections drawn in the mosaic and counted in the confusion matrix
CONFUSION_IOU = 0.5  # a detection and an object match in the confusion matrix from this IoU on
CONFIDENCE_STEPS = 101  # thresholds 0, 0.01, ..., 1 of the precision / recall / F1 panel


# ------------------------------------------------------------------------------------------ per epoch
def write_results_csv(history: Sequence[Mapping[str, Any]], path: PathLike) -> Path:
    """One row per record (epoch), one column per key seen in any record (first-seen order); a value a
    record lacks is left empty."""
    columns: list[str] = []
    for record in history:
        columns += [k for k in record if k not in columns]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="")
        writer.writeheader()
        for record in history:
            writer.writerow({k: _cell(v) for k, v in record.items()})
    return path


def _cell(value: Any) -> Any:
    return f"{value:.6g}" if isinstance(value, float) else value


def _series(history: Sequence[Mapping[str, Any]], key: str) -> np.ndarray:
    values = [record.get(key) for record in history]
    return np.array([float(v) if isinstance(v, (int, float)) else np.nan for v in values], dtype=np.float64)


def result_panels(history: Sequence[Mapping[str, Any]],
                  loss_keys: Sequence[str] | None = None) -> list[tuple[str, list[str]]]:
    """The panels of :func:`plot_results`: (title, keys): one per loss term (``loss_keys``, default the
    keys containing "loss"), one for the validation metrics (``val_AP*`` when present, else every ``val_``
    key), one for the learning rate."""
    keys: list[str] = []
    for record in history:
        keys += [k for k, v in record.items() if k not in keys and isinstance(v, (int, float))]
    if loss_keys is not None:
        losses = [k for k in loss_keys if k in keys]
    else:
        losses = [k for k in keys if "loss" in k and not k.startswith(VAL_PREFIX)]
    val = [k for k in keys if k.startswith(VAL_PREFIX)]
    val_ap = [k for k in val if k.removeprefix(VAL_PREFIX).startswith("AP")]
    panels = [(k, [k]) for k in losses]
    if val:
        panels.append(("validation", val_ap or val))
    if "lr" in keys:
        panels.append(("lr", ["lr"]))
    return panels


def plot_results(history: Sequence[Mapping[str, Any]], path: PathLike, x_key: str = "epoch",
                 loss_keys: Sequence[str] | None = None) -> Path:
    """Loss terms, validation metrics and the learning rate against ``x_key``, as small multiples (the
    panels of :func:`result_panels`; the learning rate on a log scale)."""
    x = _series(history, x_key) if history and x_key in history[0] else np.arange(1, len(history) + 1)
    panels = []
    for title, keys in result_panels(history, loss_keys):
        lines = []
        for key in keys:
            y = _series(history, key)
            if key.startswith(VAL_PREFIX):
                y[y < 0] = np.nan  # COCOeval's -1: undefined (no objects of that size)
            lines.append((key.removeprefix(VAL_PREFIX), y))
        panels.append(Panel(title, tuple(lines), log_y=title == "lr"))
    return plot_panels(x, panels, path, x_label=x_key)


# ------------------------------------------------------------------------------------------ per evaluation
def per_class_ap_table(ap: Mapping[str, float], ap50: Mapping[str, float] | None = None,
                       num_gt: Mapping[str, int] | None = None) -> str:
    """An aligned text table: class, objects, AP, AP50 (NaN shown as "-"), then the mean over classes."""
    def fmt(v: float | None) -> str:
        return "-" if v is None or not math.isfinite(v) else f"{v:.3f}"

    width = max([len("class"), len("mean"), *map(len, ap)])
    header = ["class".ljust(width)] + (["objects"] if num_gt is not None else []) + ["AP".rjust(6)]
    header += ["AP50".rjust(6)] if ap50 is not None else []
    lines = ["  ".join(header)]
    for name, value in ap.items():
        row = [name.ljust(width)] + ([str(num_gt.get(name, 0)).rjust(7)] if num_gt is not None else [])
        row.append(fmt(value).rjust(6))
        row += [fmt(ap50.get(name)).rjust(6)] if ap50 is not None else []
        lines.append("  ".join(row))
    means = [_nanmean(list(table.values())) for table in (ap, ap50 or {})]
    footer = ["mean".ljust(width)] + ([" " * 7] if num_gt is not None else []) + [fmt(means[0]).rjust(6)]
    footer += [fmt(means[1]).rjust(6)] if ap50 is not None else []
    return "\n".join(lines + ["  ".join(footer)])


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.nan


def confusion_matrix(detections: Sequence[np.ndarray], ground_truth: Sequence[np.ndarray], num_classes: int,
                     iou: float = CONFUSION_IOU, score: float = REPORT_SCORE) -> np.ndarray:
    """Counts [C+1, C+1]: rows the predicted class, columns the true class, index C the background.

    Per image, detections with score >= ``score`` are matched to ground truth regardless of class,
    greedily by decreasing IoU (>= ``iou``), each at most once. A match counts at (pred, true), an
    unmatched detection at (pred, background), an unmatched object at (background, true).
    """
    import torch  # on first use: importing this module stays cheap

    from ..ops.boxes import box_iou

    bg = num_classes
    matrix = np.zeros((num_classes + 1, num_classes + 1), dtype=np.int64)
    for dets, gt in zip(detections, ground_truth):
        dets, gt = as_rows(dets, 6), as_rows(gt, 5)
        dets = dets[dets[:, 4] >= score]
        pred_cls, true_cls = dets[:, 5].astype(np.int64), gt[:, 4].astype(np.int64)
        overlaps = box_iou(torch.from_numpy(dets[:, None, :4]),  # [D, 1, 4] with [1, G, 4] -> [D, G]
                           torch.from_numpy(gt[None, :, :4])).numpy()
        det_i, gt_i = np.nonzero(overlaps >= iou)
        order = np.argsort(-overlaps[det_i, gt_i], kind="stable")
        used_det, used_gt = np.zeros(len(dets), bool), np.zeros(len(gt), bool)
        for d, g in zip(det_i[order].tolist(), gt_i[order].tolist()):
            if not used_det[d] and not used_gt[g]:
                used_det[d] = used_gt[g] = True
                matrix[pred_cls[d], true_cls[g]] += 1
        np.add.at(matrix, (pred_cls[~used_det], bg), 1)
        np.add.at(matrix, (bg, true_cls[~used_gt]), 1)
    return matrix


# ------------------------------------------------------------------------------------------ run folder
def write_epoch_reports(history: Sequence[Mapping[str, Any]], out_dir: PathLike,
                        loss_keys: Sequence[str] | None = None, plot: bool = True) -> list[Path]:
    """results.csv and (``plot``) results.png in ``out_dir`` (call after every epoch); ``loss_keys``: the
    loss terms to plot (default: the keys containing "loss")."""
    out = Path(out_dir)
    written = [write_results_csv(history, out / RESULTS_CSV)]
    if plot:
        written.append(plot_results(history, out / RESULTS_PNG, loss_keys=loss_keys))
    return written


def write_evaluation_reports(out_dir: PathLike, per_class: Any, matrix: np.ndarray | None = None,
                             class_names: Sequence[str] | None = None, normalize: bool = False,
                             score: float = REPORT_SCORE) -> list[Path]:
    """pr_curves.png (beside the curves: precision, recall and F1 against the confidence threshold) and
    per_class_ap.txt from a per-class result (``names``, ``ap``, ``ap50``, ``num_gt``, ``curves()``,
    ``confidence_curves()``: :class:`centernet.evaluation.coco.PerClassPR`), and confusion_matrix.png (counts,
    or ``normalize``-d; counted at ``score``) when ``matrix`` is given (its class names default to
    ``per_class.names``)."""
    out = Path(out_dir)
    present = {n for n, g in zip(per_class.names, per_class.num_gt) if g > 0}
    table = per_class_ap_table({n: float(a) for n, a in zip(per_class.names, per_class.ap) if n in present},
                               {n: float(a) for n, a in zip(per_class.names, per_class.ap50) if n in present},
                               {n: int(g) for n, g in zip(per_class.names, per_class.num_gt)})
    out.mkdir(parents=True, exist_ok=True)
    (out / AP_TABLE_TXT).write_text(table + "\n")
    confidence = None
    if hasattr(per_class, "confidence_curves") and present:
        thresholds = np.linspace(0.0, 1.0, CONFIDENCE_STEPS)
        confidence = (thresholds, *(c.mean(axis=0) for c in per_class.confidence_curves(thresholds)))
    written = [plot_pr_curves(per_class.curves(), out / PR_CURVES_PNG, confidence=confidence), out / AP_TABLE_TXT]
    if matrix is not None:
        names = list(class_names) if class_names is not None else list(per_class.names)
        written.append(plot_confusion_matrix(matrix, names, out / CONFUSION_PNG, normalize, score=score,
                                             iou=CONFUSION_IOU))
    return written


# ------------------------------------------------------------------------------------------ TensorBoard
class TensorBoardLogger:
    """Scalars and pictures as TensorBoard events under ``out_dir`` (``torch.utils.tensorboard``); every
    method does nothing when tensorboard is not installed (``enabled`` is False)."""

    def __init__(self, out_dir: PathLike) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            self.writer = None
        else:
            self.writer = SummaryWriter(log_dir=str(out_dir))

    @property
    def enabled(self) -> bool:
        return self.writer is not None

    def log_scalars(self, record: Mapping[str, Any], step: int) -> None:
        """Every finite number of ``record`` but its epoch (``val_AP`` -> ``val/AP``, others ``train/<key>``)."""
        if self.writer is None:
            return
        for key, value in record.items():
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if key != "epoch" and number and math.isfinite(value):
                tag = f"val/{key.removeprefix(VAL_PREFIX)}" if key.startswith(VAL_PREFIX) else f"train/{key}"
                self.writer.add_scalar(tag, value, step)
        self.writer.flush()

    def log_image(self, tag: str, image_bgr: np.ndarray, step: int) -> None:
        if self.writer is not None:
            self.writer.add_image(tag, image_bgr[..., ::-1].copy(), step, dataformats="HWC")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

    def __enter__(self) -> "TensorBoardLogger":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ------------------------------------------------------------------------------------------ one run
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
                       score: float = REPORT_SCORE, normalize: bool = False) -> list[Path]:
    """pr_curves.png + per_class_ap.txt (when ``result.per_class``), confusion_matrix.png and val_mosaic.jpg
    (when ``result.boxes``) in ``out_dir``, both at the same ``score`` threshold; returns the files written."""
    out = Path(out_dir)
    names = list(class_names)
    matrix = None
    truth: dict[int, np.ndarray] = {}
    if result.boxes:
        truth = ground_truth_rows(source, list(result.boxes))
        ids = [i for i in result.boxes if i in truth]
        matrix = confusion_matrix([result.boxes[i] for i in ids], [truth[i] for i in ids], len(names),
                                  score=score)
    written: list[Path] = []
    if result.per_class is not None:
        written += write_evaluation_reports(out, result.per_class, matrix, names, normalize, score)
    elif matrix is not None:
        written.append(plot_confusion_matrix(matrix, names, out / CONFUSION_PNG, normalize, score=score,
                                             iou=CONFUSION_IOU))
    if truth and mosaic_images:
        picks = mosaic_picks([s for s in source.samples if s.image_id in result.boxes], truth, mosaic_images)
        images = [read_image(s.path) for s in picks]
        written.append(validation_mosaic(images, [result.boxes[s.image_id] for s in picks],
                                         [truth[s.image_id] for s in picks], names, out / MOSAIC_JPG, score,
                                         columns=MOSAIC_COLUMNS))
    return written


def mosaic_picks(samples: Sequence[Any], truth: Mapping[int, np.ndarray], count: int,
                 columns: int = MOSAIC_COLUMNS) -> list[Any]:
    """Up to ``count`` samples for the mosaic, those with objects first, as many as fill whole rows of
    ``columns`` pairs (a single image stands alone): no empty tile."""
    ranked = sorted(samples, key=lambda s: len(truth.get(s.image_id, ())) == 0)  # stable: file order kept
    picks = ranked[:count]
    full = len(picks) - len(picks) % columns
    return picks[:full] if full else picks


class RunReports:
    """The reports of one training run in ``out_dir`` (rank 0 only). ``enabled=False`` writes nothing."""

    def __init__(self, out_dir: str | Path, class_names: Sequence[str], val_source: DetectionSource | None = None,
                 enabled: bool = True) -> None:
        self.out_dir, self.class_names, self.val_source = Path(out_dir), list(class_names), val_source
        self.enabled = enabled
        self.tensorboard = TensorBoardLogger(self.out_dir) if enabled else None
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
                    lambda: write_epoch_reports(history, self.out_dir, loss_keys, plot))
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
        mosaic = self.out_dir / MOSAIC_JPG
        if self.tensorboard is not None and self.tensorboard.enabled and mosaic in written:
            image = cv2.imread(str(mosaic))
            if image is not None:
                self._guard("TensorBoard events", lambda: self.tensorboard.log_image("val/mosaic", image, epoch))
        return written

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()
