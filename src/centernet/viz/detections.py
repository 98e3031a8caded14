"""Pictures: detections, heatmaps and skeletons drawn on images (BGR uint8).

Lines are 2 px on a picture of up to :data:`REFERENCE_SIDE` pixels and thicker in proportion on larger ones;
boxes are clipped to the image; each label goes above its box, or inside it when there is no room above,
or to the next free place, so that labels neither leave the image nor cover each other.
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from ..ops.boxes import clip_boxes

REFERENCE_SIDE = 640  # longest image side at which lines are BASE_THICKNESS pixels wide
BASE_THICKNESS = 2
FONT = cv2.FONT_HERSHEY_SIMPLEX
FONT_SCALE_PER_PX = 0.25  # font scale per pixel of line thickness: 0.5 at 2 px (about 11 px high text)
LABEL_PAD = 2  # pixels between the label text and its background's edge


def class_color(label: int) -> tuple[int, int, int]:
    """A stable, well-separated colour per class (golden-ratio hue steps)."""
    hue = int((label * 0.618033988749895 % 1.0) * 180)
    hsv = np.uint8([[[hue, 200, 255]]])
    return tuple(int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0])


def line_thickness(shape: Sequence[int]) -> int:
    """Line width in pixels for an image of ``shape`` (h, w, ...)."""
    return max(BASE_THICKNESS, round(BASE_THICKNESS * max(shape[:2]) / REFERENCE_SIDE))


def pixel_corners(boxes: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Boxes [N, 4] (x1, y1, x2, y2) rounded to integer pixel corners inside an image of ``shape`` (h, w, ...)."""
    h, w = shape[:2]
    return clip_boxes(np.round(np.asarray(boxes, dtype=np.float64).reshape(-1, 4)), w - 1, h - 1).astype(np.int64)


def _covered(rect: np.ndarray, placed: list[np.ndarray]) -> int:
    """Pixels of ``rect`` that earlier label rectangles cover (summed over them)."""
    if not placed:
        return 0
    others = np.array(placed)
    w = np.minimum(rect[2], others[:, 2]) - np.maximum(rect[0], others[:, 0])
    h = np.minimum(rect[3], others[:, 3]) - np.maximum(rect[1], others[:, 1])
    return int((w.clip(0) * h.clip(0)).sum())


def layout_labels(boxes: np.ndarray, sizes: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Label rectangles [N, 4] (x1, y1, x2, y2) for clipped ``boxes`` [N, 4] and label ``sizes`` [N, 2]
    (width, height), placed in order (put the most important first).

    Candidates per box: above it, inside its top, below it, inside its bottom; the first that lies in the
    image and covers no earlier label wins; if none is free, the one covering the least. Rectangles are
    shifted left to stay inside the image.
    """
    h, w = shape[:2]
    placed: list[np.ndarray] = []
    for (x1, y1, x2, y2), (tw, th) in zip(np.asarray(boxes).tolist(), np.asarray(sizes).tolist()):
        left = min(max(x1, 0), max(w - tw, 0))
        tops = (y1 - th, y1, y2 + 1, y2 - th + 1)  # above, inside top, below, inside bottom
        candidates = [np.array([left, t, left + tw, t + th]) for t in tops if 0 <= t and t + th <= h]
        if not candidates:  # taller than the image allows: pin to the top edge
            candidates = [np.array([left, 0, left + tw, min(th, h)])]
        covered = [_covered(c, placed) for c in candidates]
        rect = candidates[int(np.argmin(covered))]  # argmin: the first of equals, so a free one in order
        placed.append(rect)
    return np.array(placed, dtype=np.int64).reshape(-1, 4)


def draw_boxes(image: np.ndarray, boxes: np.ndarray, classes: Sequence[int], texts: Sequence[str],
               order: Sequence[int] | None = None) -> np.ndarray:
    """Boxes [N, 4] in their class colours with a label each (``texts``); ``order`` (indices, most
    important first) decides which labels get the best places. Returns a new image."""
    out = image.copy()
    if len(boxes) == 0:
        return out
    thickness = line_thickness(image.shape)
    scale = FONT_SCALE_PER_PX * thickness
    text_px = max(1, thickness // BASE_THICKNESS)
    order = list(range(len(boxes))) if order is None else list(order)
    clipped = pixel_corners(boxes, image.shape)[order]
    colors = [class_color(int(classes[i])) for i in order]
    for (x1, y1, x2, y2), color in zip(clipped.tolist()[::-1], colors[::-1]):  # most important drawn last
        cv2.rectangle(out, (x1, y1), (x2, y2), color, thickness)
    sizes = []
    for i in order:
        (tw, th), base = cv2.getTextSize(texts[i], FONT, scale, text_px)
        sizes.append((tw + 2 * LABEL_PAD, th + base + 2 * LABEL_PAD))
    rects = layout_labels(clipped, np.array(sizes), image.shape)
    for (lx1, ly1, lx2, ly2), color, i in zip(rects.tolist(), colors, order):
        cv2.rectangle(out, (lx1, ly1), (lx2 - 1, ly2 - 1), color, -1)
        baseline = ly2 - LABEL_PAD - cv2.getTextSize(texts[i], FONT, scale, text_px)[1]
        cv2.putText(out, texts[i], (lx1 + LABEL_PAD, baseline), FONT, scale, (0, 0, 0), text_px, cv2.LINE_AA)
    return out


def _name(class_names: Sequence[str], label: int) -> str:
    return class_names[label] if 0 <= label < len(class_names) else str(label)


def draw_detections(image: np.ndarray, rows: np.ndarray, class_names: Sequence[str],
                    score_thresh: float = 0.3) -> np.ndarray:
    """Boxes (x1, y1, x2, y2, score, class, ...) above ``score_thresh`` with "name score" labels; the
    highest scores get the best label places."""
    kept = rows[rows[:, 4] >= score_thresh]
    classes = kept[:, 5].astype(np.int64)
    texts = [f"{_name(class_names, c)} {s:.2f}" for c, s in zip(classes.tolist(), kept[:, 4].tolist())]
    return draw_boxes(image, kept[:, :4], classes, texts, order=np.argsort(-kept[:, 4], kind="stable"))


def draw_ground_truth(image: np.ndarray, boxes: np.ndarray, classes: Sequence[int],
                      class_names: Sequence[str]) -> np.ndarray:
    """Ground-truth boxes [G, 4] labelled with their class names."""
    texts = [_name(class_names, int(c)) for c in classes]
    return draw_boxes(image, np.asarray(boxes).reshape(-1, 4), classes, texts)


def heatmap_overlay(image: np.ndarray, heat: np.ndarray, trans_inv: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """Blend the class-max of an output-map heatmap [C, h, w] (in [0, 1]) onto ``image``; the blend
    weight grows with the square root of the heat, so the flanks of the peaks stay visible.

    ``trans_inv`` is the 2x3 output-map -> image transform of the prediction.
    """
    peak = heat.max(axis=0).astype(np.float32)
    h, w = image.shape[:2]
    warped = np.clip(cv2.warpAffine(peak, trans_inv.astype(np.float64), (w, h), flags=cv2.INTER_LINEAR), 0, 1)
    colored = cv2.applyColorMap((warped * 255).astype(np.uint8), cv2.COLORMAP_JET)
    weight = (np.sqrt(warped) * alpha)[..., None]
    return (image * (1 - weight) + colored * weight).astype(np.uint8)


def draw_skeletons(image: np.ndarray, rows: np.ndarray, limbs: Sequence[tuple[int, int]],
                   score_thresh: float = 0.3, keypoint_offset: int = 6) -> np.ndarray:
    """Joints (x, y pairs from column ``keypoint_offset``) and limbs of people above ``score_thresh``."""
    out = image.copy()
    thickness = line_thickness(image.shape)
    for row in rows[rows[:, 4] >= score_thresh]:
        joints = row[keypoint_offset:].reshape(-1, 2)
        pts = [(int(round(x)), int(round(y))) for x, y in joints]
        for j, (a, b) in enumerate(limbs):
            cv2.line(out, pts[a], pts[b], class_color(j + 1), thickness, cv2.LINE_AA)
        for p in pts:
            cv2.circle(out, p, thickness + 1, (255, 255, 255), -1, cv2.LINE_AA)
    return out
