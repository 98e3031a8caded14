"""Box overlaps of the KITTI devkit, element-wise over N box pairs in NumPy: image boxes, rotated
bird's-eye-view rectangles (x-z plane, exact polygon clipping) and 3D boxes.

Every function takes the pair's two sides as equal-length arrays (pair i = a[i] with b[i]). With
``relative_to_first`` the intersection is divided by the first box's area / volume instead of the union
(the devkit's criterion 0, used for detections against DontCare regions).
"""
from __future__ import annotations

import numpy as np
import torch

from ..ops.boxes import box_iou

QUAD = 4  # corners of a rectangle
# Clipping a convex polygon by one half-plane adds at most one vertex: a quad clipped by a quad's four
# edges has at most 4 + 4 vertices.
MAX_VERTICES = 2 * QUAD


def image_overlap(a: np.ndarray, b: np.ndarray, relative_to_first: bool = False) -> np.ndarray:
    """Overlap of image boxes a [N, 4], b [N, 4] (x1, y1, x2, y2; no +1 on widths, as the devkit) -> [N] float64:
    the package's one box IoU (:func:`~centernet.ops.boxes.box_iou`) on float64 copies, pair by pair."""
    return box_iou(torch.from_numpy(np.asarray(a, np.float64)), torch.from_numpy(np.asarray(b, np.float64)),
                   relative_to_first=relative_to_first).numpy()


def bev_corners(x: np.ndarray, z: np.ndarray, length: np.ndarray, width: np.ndarray,
                rotation_y: np.ndarray) -> np.ndarray:
    """Bird's-eye-view corners [N, 4, 2] (x, z) of boxes centred at (x, z), rotated by rotation_y.

    The corner order and rotation are the devkit's: local (l/2, w/2), (l/2, -w/2), (-l/2, -w/2),
    (-l/2, w/2), mapped by [[cos, sin], [-sin, cos]].
    """
    half_l, half_w = (length / 2)[:, None], (width / 2)[:, None]
    lx = np.array([1.0, 1.0, -1.0, -1.0]) * half_l  # [N, 4]
    lz = np.array([1.0, -1.0, -1.0, 1.0]) * half_w
    c, s = np.cos(rotation_y)[:, None], np.sin(rotation_y)[:, None]
    return np.stack([c * lx + s * lz + x[:, None], -s * lx + c * lz + z[:, None]], axis=-1)


def polygon_area(points: np.ndarray, count: np.ndarray | None = None) -> np.ndarray:
    """Unsigned shoelace area of polygons [N, V, 2] whose first ``count`` [N] vertices are used."""
    n, v = points.shape[:2]
    count = np.full(n, v) if count is None else count
    idx = np.arange(v)
    nxt = np.where(idx[None] + 1 < count[:, None], idx[None] + 1, 0)  # [N, V] the next vertex, wrapping
    x, y = points[..., 0], points[..., 1]
    xn, yn = np.take_along_axis(x, nxt, 1), np.take_along_axis(y, nxt, 1)
    terms = np.where(idx[None] < count[:, None], x * yn - xn * y, 0.0)
    return np.abs(terms.sum(axis=1)) / 2


def convex_intersection_area(subject: np.ndarray, clip: np.ndarray) -> np.ndarray:
    """Area of the intersection of convex quads subject [N, 4, 2] and clip [N, 4, 2] -> [N].

    Sutherland-Hodgman: the subject is clipped by each edge's half-plane in turn, all pairs at once;
    the polygon lives in a fixed [N, 8, 2] buffer with a per-pair vertex count.
    """
    n = subject.shape[0]
    poly = np.zeros((n, MAX_VERTICES, 2))
    poly[:, :QUAD] = subject
    count = np.full(n, QUAD)
    # Orientation of each clip quad, so that "inside" is cross >= 0 whatever the winding.
    edges = np.roll(clip, -1, axis=1) - clip  # [N, 4, 2]
    winding = np.sign(np.sum(clip[..., 0] * np.roll(clip[..., 1], -1, 1) - np.roll(clip[..., 0], -1, 1)
                             * clip[..., 1], axis=1))[:, None]  # [N, 1]
    idx = np.arange(MAX_VERTICES)[None]
    for e in range(QUAD):
        start, edge = clip[:, e, None], edges[:, e, None]  # [N, 1, 2]
        side = winding * (edge[..., 0] * (poly[..., 1] - start[..., 1])
                          - edge[..., 1] * (poly[..., 0] - start[..., 0]))  # [N, 8]
        valid = idx < count[:, None]
        nxt = np.where(idx + 1 < count[:, None], idx + 1, 0)
        side_next = np.take_along_axis(side, nxt, 1)
        poly_next = np.take_along_axis(poly, nxt[..., None], 1)
        inside, inside_next = side >= 0, side_next >= 0
        crossing = valid & (inside != inside_next)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(crossing, side / np.where(crossing, side - side_next, 1.0), 0.0)
        cut = poly + t[..., None] * (poly_next - poly)
        # Each edge (vertex i -> i + 1) emits vertex i if inside, then the crossing point if it crosses.
        candidates = np.stack([poly, cut], axis=2).reshape(n, 2 * MAX_VERTICES, 2)
        keep = np.stack([valid & inside, crossing], axis=2).reshape(n, 2 * MAX_VERTICES)
        order = np.argsort(~keep, axis=1, kind="stable")[:, :MAX_VERTICES]
        poly = np.take_along_axis(candidates, order[..., None], 1)
        count = np.minimum(keep.sum(axis=1), MAX_VERTICES)
    return np.where(count >= 3, polygon_area(poly, count), 0.0)


def bev_intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """x-z intersection areas of 3D boxes a [N, 7], b [N, 7] (h, w, l, x, y, z, rotation_y) -> [N].

    Pairs whose circumscribed circles are apart are skipped (area 0) before clipping.
    """
    radius_a, radius_b = np.hypot(a[:, 1], a[:, 2]) / 2, np.hypot(b[:, 1], b[:, 2]) / 2
    near = np.hypot(a[:, 3] - b[:, 3], a[:, 5] - b[:, 5]) < radius_a + radius_b
    inter = np.zeros(len(a))
    if near.any():
        a, b = a[near], b[near]
        quad_a = bev_corners(a[:, 3], a[:, 5], a[:, 2], a[:, 1], a[:, 6])
        quad_b = bev_corners(b[:, 3], b[:, 5], b[:, 2], b[:, 1], b[:, 6])
        inter[near] = convex_intersection_area(quad_a, quad_b)
    return inter


def bev_overlap(a: np.ndarray, b: np.ndarray, relative_to_first: bool = False,
                intersection: np.ndarray | None = None) -> np.ndarray:
    """Rotated-rectangle overlap in the x-z plane of 3D boxes a [N, 7], b [N, 7] -> [N].

    ``intersection``: the pairs' bev_intersection, when already computed.
    """
    inter = bev_intersection(a, b) if intersection is None else intersection
    area_a, area_b = np.abs(a[:, 1] * a[:, 2]), np.abs(b[:, 1] * b[:, 2])
    denom = area_a if relative_to_first else area_a + area_b - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(inter > 0, inter / np.where(inter > 0, denom, 1.0), 0.0)


def box3d_overlap(a: np.ndarray, b: np.ndarray, relative_to_first: bool = False,
                  intersection: np.ndarray | None = None) -> np.ndarray:
    """3D overlap of boxes a [N, 7], b [N, 7]: x-z intersection times the shared y-extent, over the union.

    KITTI's y points down and the location is the bottom centre, so a box spans [y - h, y].
    ``intersection``: the pairs' bev_intersection, when already computed.
    """
    y_overlap = np.minimum(a[:, 4], b[:, 4]) - np.maximum(a[:, 4] - a[:, 0], b[:, 4] - b[:, 0])
    inter = (bev_intersection(a, b) if intersection is None else intersection) * np.maximum(y_overlap, 0.0)
    vol_a, vol_b = a[:, 0] * a[:, 1] * a[:, 2], b[:, 0] * b[:, 1] * b[:, 2]
    denom = vol_a if relative_to_first else vol_a + vol_b - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(inter > 0, inter / np.where(inter > 0, denom, 1.0), 0.0)
