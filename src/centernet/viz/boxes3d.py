"""Pictures of 3D boxes: projected wire boxes on the image and a bird's-eye view (numpy / OpenCV)."""
from __future__ import annotations

import cv2
import numpy as np

from ..data.kitti import box3d_corners, project_to_image

#: faces of :func:`box3d_corners` corners; face 0 (corners 0, 1, 5, 4) is the front
FACES = ((0, 1, 5, 4), (1, 2, 6, 5), (2, 3, 7, 6), (3, 0, 4, 7))
GT_COLOR, PRED_COLOR = (0, 200, 0), (0, 0, 255)  # BGR
GRID_COLOR, EGO_COLOR = (70, 70, 70), (255, 255, 255)


def draw_box3d(image: np.ndarray, corners2d: np.ndarray, color: tuple[int, int, int] = PRED_COLOR,
               front_face_marked: bool = True, thickness: int = 2) -> np.ndarray:
    """Draw the 12 edges of a projected box (corners [8, 2] in :func:`box3d_corners` order) in place;
    the front face gets a cross. Returns ``image``."""
    pts = np.round(np.asarray(corners2d)).astype(np.int32)
    for face in FACES:
        for j in range(4):
            a, b = pts[face[j]], pts[face[(j + 1) % 4]]
            cv2.line(image, tuple(int(v) for v in a), tuple(int(v) for v in b), color, thickness, cv2.LINE_AA)
    if front_face_marked:
        f = FACES[0]
        for a, b in ((f[0], f[2]), (f[1], f[3])):
            cv2.line(image, tuple(int(v) for v in pts[a]), tuple(int(v) for v in pts[b]), color, 1, cv2.LINE_AA)
    return image


def draw_boxes3d(image: np.ndarray, boxes: np.ndarray, calib: np.ndarray,
                 color: tuple[int, int, int] = PRED_COLOR) -> np.ndarray:
    """Draw boxes [N, 7] (h, w, l, x, y, z, rot_y) in front of the camera onto a copy of ``image``."""
    out = image.copy()
    for h, w, l, x, y, z, ry in np.asarray(boxes, dtype=np.float64).reshape(-1, 7):
        corners = box3d_corners((h, w, l), (x, y, z), ry)
        if (corners[:, 2] > 0.1).all():
            draw_box3d(out, project_to_image(corners, calib), color)
    return out


def draw_birds_eye(gt: np.ndarray | None = None, pred: np.ndarray | None = None, size: tuple[int, int] = (400, 600),
                   x_range: tuple[float, float] = (-20.0, 20.0), z_range: tuple[float, float] = (0.0, 60.0),
                   grid_m: float = 10.0) -> np.ndarray:
    """A top view (x right, z up, the camera at the bottom centre) of boxes [N, 7] (h, w, l, x, y, z, rot_y):
    ground truth in green, predictions in red, each footprint a rotated rectangle with a line to its front
    face, over a ``grid_m`` metre grid. ``size`` is (W, H) pixels; returns a BGR image."""
    width, height = size
    image = np.zeros((height, width, 3), dtype=np.uint8)
    sx = width / (x_range[1] - x_range[0])
    sz = height / (z_range[1] - z_range[0])

    def to_px(x: np.ndarray, z: np.ndarray) -> np.ndarray:
        return np.stack([(x - x_range[0]) * sx, height - (z - z_range[0]) * sz], axis=-1)

    for gx in np.arange(np.ceil(x_range[0] / grid_m) * grid_m, x_range[1] + 1e-9, grid_m):
        px = int(round((gx - x_range[0]) * sx))
        cv2.line(image, (px, 0), (px, height - 1), GRID_COLOR, 1)
    for gz in np.arange(np.ceil(z_range[0] / grid_m) * grid_m, z_range[1] + 1e-9, grid_m):
        pz = int(round(height - (gz - z_range[0]) * sz))
        cv2.line(image, (0, pz), (width - 1, pz), GRID_COLOR, 1)
    ego = to_px(np.array(0.0), np.array(0.0))
    cv2.circle(image, (int(round(ego[0])), min(height - 1, int(round(ego[1])))), 4, EGO_COLOR, -1)
    for boxes, color in ((gt, GT_COLOR), (pred, PRED_COLOR)):
        if boxes is None:
            continue
        for h, w, l, x, y, z, ry in np.asarray(boxes, dtype=np.float64).reshape(-1, 7):
            bottom = box3d_corners((h, w, l), (x, y, z), ry)[:4]
            poly = np.round(to_px(bottom[:, 0], bottom[:, 2])).astype(np.int32)
            cv2.polylines(image, [poly], True, color, 2, cv2.LINE_AA)
            front = to_px(bottom[:2, 0].mean(), bottom[:2, 2].mean())
            centre = to_px(np.array(x), np.array(z))
            cv2.line(image, tuple(int(round(v)) for v in centre), tuple(int(round(v)) for v in front), color, 1,
                     cv2.LINE_AA)
    return image
