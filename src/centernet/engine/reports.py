"""Run reports written into the run folder: results.csv / results.png, per-class PR curves and AP table,
a confusion matrix, validation mosaics, and TensorBoard events when ``tensorboard`` is installed.

Plots use matplotlib's Agg backend, imported on first use, so importing this module stays cheap. Inputs
are plain numbers and numpy arrays (history records, {class: (recall, precision)}), not evaluator objects.
Detections are rows (x1, y1, x2, y2, score, class, ...); ground truth is rows (x1, y1, x2, y2, class).
"""
from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..visualize import draw_detections, draw_ground_truth

PathLike = str | os.PathLike[str]
PANEL_INCHES = 3.0  # side of one small-multiple panel
DPI = 120
MAX_MARKERS = 30  # points per line up to which each is marked
MAX_LEGEND = 20  # classes named in a PR plot's legend; more are drawn unnamed
MAX_ANNOTATED = 30  # classes whose confusion-matrix cells get numbers written in them
CELL_INCHES = 0.18  # side of one confusion-matrix cell
TILE_HEIGHT = 320  # pixels of each picture in a validation mosaic
CAPTION_HEIGHT = 22  # pixels of the white caption bar above each mosaic picture
PAIR_GAP, ROW_GAP, GAP_GREY = 4, 12, 200  # white gap inside a pair, grey gap between pairs
VAL_PREFIX = "val_"
# file names in the run folder
RESULTS_CSV, RESULTS_PNG = "results.csv", "results.png"
PR_CURVES_PNG, AP_TABLE_TXT = "pr_curves.png", "per_class_ap.txt"
CONFUSION_PNG, MOSAIC_JPG = "confusion_matrix.png", "val_mosaic.jpg"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: PathLike, tight: bool = True) -> Path:
    """Write and close ``fig``; ``tight`` crops to what is drawn (a second layout pass, about half again
    the time: only for figures with parts outside the axes, such as an outer legend)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight" if tight else None)
    _pyplot().close(fig)
    return path


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
    """Loss terms, validation metrics and the learning rate against ``x_key``, as small multiples."""
    plt = _pyplot()
    panels = result_panels(history, loss_keys)
    cols = min(4, max(1, len(panels)))
    rows = max(1, math.ceil(len(panels) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(PANEL_INCHES * cols, PANEL_INCHES * 0.8 * rows), squeeze=False)
    x = _series(history, x_key) if history and x_key in history[0] else np.arange(1, len(history) + 1)
    from matplotlib.ticker import MaxNLocator

    for ax, (title, keys) in zip(axes.flat, panels):
        for key in keys:
            y = _series(history, key)
            if key.startswith(VAL_PREFIX):
                y[y < 0] = np.nan  # COCOeval's -1: undefined (no objects of that size)
            seen = np.isfinite(y)
            marker = "o" if seen.sum() <= MAX_MARKERS else None
            ax.plot(x[seen], y[seen], marker=marker, markersize=3, linewidth=1.5, label=key.removeprefix(VAL_PREFIX))
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(x_key, fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        if title == "lr":
            ax.set_yscale("log")
        if len(keys) > 1:
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    return _save(fig, path, tight=False)


# ------------------------------------------------------------------------------------------ per evaluation
def plot_pr_curves(pr: Mapping[str, tuple[np.ndarray, np.ndarray]], path: PathLike,
                   title: str = "precision-recall (IoU 0.5)") -> Path:
    """One curve per class ({name: (recall [R], precision [R])}, NaN-free) and their mean in bold, with
    each class's AP (mean precision over the recall points) in the legend."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(PANEL_INCHES * 2, PANEL_INCHES * 1.6))
    curves = [(name, np.asarray(r), np.asarray(p)) for name, (r, p) in pr.items()]
    named = len(curves) <= MAX_LEGEND
    for name, recall, precision in curves:
        ax.plot(recall, precision, linewidth=1, alpha=0.9 if named else 0.35,
                label=f"{name} {np.mean(precision):.3f}" if named else None)
    if curves:
        mean = np.mean([p for _, _, p in curves], axis=0)
        ax.plot(curves[0][1], mean, color="blue", linewidth=3, label=f"all classes (mAP) {np.mean(mean):.3f}")
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="precision", title=title)
    ax.grid(alpha=0.3)
    if curves:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)
    return _save(fig, path)


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


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU [N, M] of boxes a [N, 4] and b [M, 4] (x1, y1, x2, y2)."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:4], b[None, :, 2:4])
    inter = (rb - lt).clip(0).prod(axis=2)
    area_a = (a[:, 2:4] - a[:, :2]).clip(0).prod(axis=1)
    area_b = (b[:, 2:4] - b[:, :2]).clip(0).prod(axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-12)


def confusion_matrix(detections: Sequence[np.ndarray], ground_truth: Sequence[np.ndarray], num_classes: int,
                     iou: float = 0.5, score: float = 0.25) -> np.ndarray:
    """Counts [C+1, C+1]: rows the predicted class, columns the true class, index C the background.

    Per image, detections with score >= ``score`` are matched to ground truth regardless of class,
    greedily by decreasing IoU (>= ``iou``), each at most once. A match counts at (pred, true), an
    unmatched detection at (pred, background), an unmatched object at (background, true).
    """
    bg = num_classes
    matrix = np.zeros((num_classes + 1, num_classes + 1), dtype=np.int64)
    for dets, gt in zip(detections, ground_truth):
        dets, gt = _rows(dets, 6), _rows(gt, 5)
        dets = dets[dets[:, 4] >= score]
        pred_cls, true_cls = dets[:, 5].astype(np.int64), gt[:, 4].astype(np.int64)
        overlaps = box_iou(dets[:, :4], gt[:, :4])  # [D, G]
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


def _rows(rows: np.ndarray, min_columns: int) -> np.ndarray:
    """``rows`` as a float [N, D] array; an empty input becomes [0, min_columns]."""
    rows = np.asarray(rows, dtype=np.float64)
    return rows if rows.size else np.zeros((0, min_columns))


def plot_confusion_matrix(matrix: np.ndarray, class_names: Sequence[str], path: PathLike,
                          normalize: bool = True, hide_empty: bool = True) -> Path:
    """The matrix of :func:`confusion_matrix` as a picture, each true-class column normalised to sum 1
    (the background column: to its own total) when ``normalize``; ``hide_empty`` leaves out classes that
    were neither present nor predicted."""
    plt = _pyplot()
    values = matrix.astype(np.float64)
    if normalize:
        values = values / np.maximum(values.sum(axis=0, keepdims=True), 1)
    names = list(class_names) + ["background"]
    if hide_empty:
        keep = (matrix.sum(axis=0) + matrix.sum(axis=1)) > 0
        keep[-1] = True
        values, names = values[np.ix_(keep, keep)], [n for n, k in zip(names, keep) if k]
    side = max(4.0, CELL_INCHES * len(names) + 2)
    fig, ax = plt.subplots(figsize=(side * 1.15, side))
    image = ax.imshow(np.where(values > 0, values, np.nan), cmap="Blues", vmin=0,
                      vmax=1 if normalize else None)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ticks = np.arange(len(names))
    font = 8 if len(names) <= MAX_ANNOTATED else 5
    ax.set_xticks(ticks, names, rotation=90, fontsize=font)
    ax.set_yticks(ticks, names, fontsize=font)
    ax.set(xlabel="true", ylabel="predicted", title="confusion matrix" + (" (normalised)" if normalize else ""))
    if len(names) <= MAX_ANNOTATED:
        for r, c in zip(*np.nonzero(values > 0)):
            ax.text(c, r, f"{values[r, c]:.2f}" if normalize else str(int(values[r, c])), ha="center",
                    va="center", fontsize=6, color="white" if values[r, c] > 0.5 * np.nanmax(values) else "black")
    return _save(fig, path)


def _fit_height(image: np.ndarray, height: int) -> np.ndarray:
    width = max(1, round(image.shape[1] * height / image.shape[0]))
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def _gap(height: int, width: int, value: int) -> np.ndarray:
    return np.full((height, width, 3), value, np.uint8)


def _caption(image: np.ndarray, text: str) -> np.ndarray:
    bar = np.full((CAPTION_HEIGHT, image.shape[1], 3), 255, np.uint8)
    cv2.putText(bar, text, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return np.vstack([bar, image])


def validation_mosaic(images: Sequence[np.ndarray], predictions: Sequence[np.ndarray],
                      ground_truth: Sequence[np.ndarray], class_names: Sequence[str], path: PathLike,
                      score: float = 0.3, columns: int = 2, tile_height: int = TILE_HEIGHT) -> Path:
    """A PNG/JPEG of BGR ``images`` with ground truth (left) and predictions above ``score`` (right) side
    by side, ``columns`` such pairs per row."""
    pairs = []
    for image, dets, gt in zip(images, predictions, ground_truth):
        dets, gt = _rows(dets, 6).copy(), _rows(gt, 5).copy()
        scale = tile_height / image.shape[0]  # draw at tile size, so labels keep a readable size
        dets[:, :4] *= scale
        gt[:, :4] *= scale
        tile = _fit_height(image, tile_height)
        kept = int((dets[:, 4] >= score).sum())
        truth = draw_ground_truth(tile, gt[:, :4], gt[:, 4].astype(np.int64), class_names)
        pairs.append(np.hstack([_caption(truth, f"ground truth ({len(gt)})"),
                                _gap(tile_height + CAPTION_HEIGHT, PAIR_GAP, 255),
                                _caption(draw_detections(tile, dets, class_names, score),
                                         f"predictions >= {score:g} ({kept})")]))
    if not pairs:
        raise ValueError("validation_mosaic: no images")
    height = tile_height + CAPTION_HEIGHT
    rows = []
    for i in range(0, len(pairs), columns):
        row = [part for pair in pairs[i:i + columns] for part in (pair, _gap(height, ROW_GAP, GAP_GREY))]
        rows.append(np.hstack(row[:-1]))
    width = max(r.shape[1] for r in rows)
    rows = [np.hstack([r, _gap(height, width - r.shape[1], GAP_GREY)]) for r in rows]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), np.vstack(rows)):
        raise OSError(f"{path}: could not write the picture")
    return path


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
                             class_names: Sequence[str] | None = None) -> list[Path]:
    """pr_curves.png and per_class_ap.txt from a per-class result (``names``, ``ap``, ``ap50``, ``num_gt``,
    ``curves()``: :class:`centernet.evaluation.coco.PerClassPR`), and confusion_matrix.png when
    ``matrix`` is given (its class names default to ``per_class.names``)."""
    out = Path(out_dir)
    present = {n for n, g in zip(per_class.names, per_class.num_gt) if g > 0}
    table = per_class_ap_table({n: float(a) for n, a in zip(per_class.names, per_class.ap) if n in present},
                               {n: float(a) for n, a in zip(per_class.names, per_class.ap50) if n in present},
                               {n: int(g) for n, g in zip(per_class.names, per_class.num_gt)})
    out.mkdir(parents=True, exist_ok=True)
    (out / AP_TABLE_TXT).write_text(table + "\n")
    written = [plot_pr_curves(per_class.curves(), out / PR_CURVES_PNG), out / AP_TABLE_TXT]
    if matrix is not None:
        names = list(class_names) if class_names is not None else list(per_class.names)
        written.append(plot_confusion_matrix(matrix, names, out / CONFUSION_PNG))
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
