"""The run-report figures: small multiples of training curves, per-class PR curves, a confusion matrix and a
validation mosaic, each written to a file (PNG / JPEG).

Plots use matplotlib's Agg backend, imported on first use, so importing this module stays cheap. Inputs
are plain numbers and numpy arrays; what to plot (which history keys, which classes, which images) is the
caller's choice (:mod:`centernet.engine.reports`). Detections are rows (x1, y1, x2, y2, score, class, ...);
ground truth is rows (x1, y1, x2, y2, class).
"""
from __future__ import annotations

import functools
import math
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .detections import draw_detections, draw_ground_truth

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


@dataclass(frozen=True)
class Panel:
    """One small multiple of :func:`plot_panels`: ``lines`` (label, y [N]; NaN where there is no value),
    a legend when there is more than one, a logarithmic y axis when ``log_y``."""

    title: str
    lines: tuple[tuple[str, np.ndarray], ...]
    log_y: bool = False


def _without_pyparsing_deprecations(plot: Callable[..., Path]) -> Callable[..., Path]:
    """``plot`` without the deprecation warnings pyparsing 3.3 and newer raises inside matplotlib before 3.11
    (which still calls ``parseString``, ``resetCache``): nothing a user of the plots can act on."""

    @functools.wraps(plot)
    def run(*args: Any, **kwargs: Any) -> Path:
        with warnings.catch_warnings():
            try:
                from pyparsing.warnings import PyparsingDeprecationWarning
            except ImportError:  # an older pyparsing warns about nothing
                pass
            else:
                warnings.simplefilter("ignore", PyparsingDeprecationWarning)
            return plot(*args, **kwargs)

    return run


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: PathLike, tight: bool = True) -> Path:
    """Write and close ``fig``; ``tight`` crops to what is drawn (a second layout pass, about half again
    the time: only for figures with parts outside the axes, such as an outer legend)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight" if tight else None)
    _pyplot().close(fig)
    return path


def as_rows(rows: np.ndarray, min_columns: int) -> np.ndarray:
    """``rows`` as a float [N, D] array; an empty input becomes [0, min_columns]."""
    rows = np.asarray(rows, dtype=np.float64)
    return rows if rows.size else np.zeros((0, min_columns))


# ------------------------------------------------------------------------------------------ curves
@_without_pyparsing_deprecations
def plot_panels(x: np.ndarray, panels: Sequence[Panel], path: PathLike, x_label: str = "epoch") -> Path:
    """Small multiples, four a row: each panel's lines against ``x`` [N] (their finite points only, marked
    when there are few), integer x ticks."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    cols = min(4, max(1, len(panels)))
    rows = max(1, math.ceil(len(panels) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(PANEL_INCHES * cols, PANEL_INCHES * 0.8 * rows), squeeze=False)
    for ax, panel in zip(axes.flat, panels):
        for label, y in panel.lines:
            seen = np.isfinite(y)
            marker = "o" if seen.sum() <= MAX_MARKERS else None
            ax.plot(x[seen], y[seen], marker=marker, markersize=3, linewidth=1.5, label=label)
        ax.set_title(panel.title, fontsize=10)
        ax.set_xlabel(x_label, fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        if panel.log_y:
            ax.set_yscale("log")
        if len(panel.lines) > 1:
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    return _save(fig, path, tight=False)


@_without_pyparsing_deprecations
def plot_pr_curves(pr: Mapping[str, tuple[np.ndarray, np.ndarray]], path: PathLike,
                   title: str = "precision-recall (IoU 0.5)",
                   confidence: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None) -> Path:
    """One curve per class ({name: (recall [R], precision [R])}, NaN-free) and their mean in bold, with
    each class's AP (mean precision over the recall points) in the legend. ``confidence`` (thresholds [G],
    precision, recall, F1 [G], averaged over classes) adds a panel beside it: the three against the confidence
    threshold, the best F1 marked."""
    plt = _pyplot()
    if confidence is None:
        fig, ax = plt.subplots(figsize=(PANEL_INCHES * 2, PANEL_INCHES * 1.6))
    else:
        fig, (ax, side) = plt.subplots(1, 2, figsize=(PANEL_INCHES * 3.6, PANEL_INCHES * 1.6),
                                       gridspec_kw={"width_ratios": [1.25, 1]})
        _confidence_panel(side, *confidence)
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
    if curves and confidence is None:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)
    elif curves:  # the confidence panel sits on the right: the legend goes inside
        ax.legend(fontsize=6, loc="lower left", ncol=1 + (len(curves) > MAX_LEGEND // 2) * named)
    return _save(fig, path)


def _confidence_panel(ax: Any, thresholds: np.ndarray, precision: np.ndarray, recall: np.ndarray,
                      f1: np.ndarray) -> None:
    best = int(np.argmax(f1))
    ax.plot(thresholds, precision, label="precision", color="tab:green")
    ax.plot(thresholds, recall, label="recall", color="tab:orange")
    ax.plot(thresholds, f1, label=f"F1 (best {f1[best]:.3f} at {thresholds[best]:.2f})", color="blue", linewidth=3)
    ax.axvline(thresholds[best], color="blue", linestyle=":", linewidth=1)
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="confidence threshold", ylabel="all classes (mean)",
           title="precision, recall, F1 against confidence (IoU 0.5)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")


# ------------------------------------------------------------------------------------------ confusion matrix
@_without_pyparsing_deprecations
def plot_confusion_matrix(matrix: np.ndarray, class_names: Sequence[str], path: PathLike,
                          normalize: bool = False, hide_empty: bool = True, score: float | None = None,
                          iou: float | None = None) -> Path:
    """A confusion matrix [C+1, C+1] (rows predicted, columns true, index C the background) as a picture of
    counts, or with each true-class column normalised to sum 1 (the background column: to its own total) when
    ``normalize``; ``hide_empty`` leaves out classes that were neither present nor predicted; the title names
    the ``score`` and ``iou`` thresholds the matrix was counted at."""
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
    rules = [f"score >= {score:g}"] * (score is not None) + [f"IoU >= {iou:g}"] * (iou is not None)
    title = "confusion matrix, " + ("normalised per true class" if normalize else "counts")
    ax.set(xlabel="true", ylabel="predicted", title=title + (f" ({', '.join(rules)})" if rules else ""))
    if len(names) <= MAX_ANNOTATED:
        for r, c in zip(*np.nonzero(values > 0)):
            ax.text(c, r, f"{values[r, c]:.2f}" if normalize else str(int(values[r, c])), ha="center",
                    va="center", fontsize=6, color="white" if values[r, c] > 0.5 * np.nanmax(values) else "black")
    return _save(fig, path)


# ------------------------------------------------------------------------------------------ mosaic
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
        dets, gt = as_rows(dets, 6).copy(), as_rows(gt, 5).copy()
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
