"""Pictures: detections, heatmaps and skeletons drawn on images (BGR uint8)."""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np


def class_color(label: int) -> tuple[int, int, int]:
    """A stable, well-separated colour per class (golden-ratio hue steps)."""
    hue = int((label * 0.618033988749895 % 1.0) * 180)
    hsv = np.uint8([[[hue, 200, 255]]])
    return tuple(int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0])


def draw_detections(image: np.ndarray, rows: np.ndarray, class_names: Sequence[str],
                    score_thresh: float = 0.3) -> np.ndarray:
    """Boxes (x1, y1, x2, y2, score, class, ...) above ``score_thresh`` with "name score" labels."""
    out = image.copy()
    thickness = max(1, round(max(image.shape[:2]) / 400))
    for row in rows[rows[:, 4] >= score_thresh]:
        x1, y1, x2, y2 = (int(round(v)) for v in row[:4])
        label = int(row[5])
        color = class_color(label)
        cv2.rectangle(out, (x1, y1), (x2, y2), color, thickness)
        name = class_names[label] if label < len(class_names) else str(label)
        text = f"{name} {row[4]:.2f}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.4 * thickness, 1)
        top = max(y1 - th - base, 0)
        cv2.rectangle(out, (x1, top), (x1 + tw, top + th + base), color, -1)
        cv2.putText(out, text, (x1, top + th), cv2.FONT_HERSHEY_SIMPLEX, 0.4 * thickness, (0, 0, 0), 1,
                    cv2.LINE_AA)
    return out


def heatmap_overlay(image: np.ndarray, heat: np.ndarray, trans_inv: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend the class-max of an output-map heatmap [C, h, w] (in [0, 1]) onto ``image``.

    ``trans_inv`` is the 2x3 output-map -> image transform of the prediction.
    """
    peak = heat.max(axis=0).astype(np.float32)
    h, w = image.shape[:2]
    warped = cv2.warpAffine(peak, trans_inv.astype(np.float64), (w, h), flags=cv2.INTER_LINEAR)
    colored = cv2.applyColorMap(np.clip(warped * 255, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)
    weight = (np.clip(warped, 0, 1) * alpha)[..., None]
    return (image * (1 - weight) + colored * weight).astype(np.uint8)


def draw_skeletons(image: np.ndarray, rows: np.ndarray, limbs: Sequence[tuple[int, int]],
                   score_thresh: float = 0.3, keypoint_offset: int = 6) -> np.ndarray:
    """Joints (x, y pairs from column ``keypoint_offset``) and limbs of people above ``score_thresh``."""
    out = image.copy()
    for row in rows[rows[:, 4] >= score_thresh]:
        joints = row[keypoint_offset:].reshape(-1, 2)
        pts = [(int(round(x)), int(round(y))) for x, y in joints]
        for j, (a, b) in enumerate(limbs):
            cv2.line(out, pts[a], pts[b], class_color(j + 1), 2, cv2.LINE_AA)
        for p in pts:
            cv2.circle(out, p, 3, (255, 255, 255), -1, cv2.LINE_AA)
    return out
