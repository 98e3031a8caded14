"""Pictures: labels stay inside the image and off each other, boxes are clipped, lines scale."""
from __future__ import annotations

import numpy as np

from centernet.viz.detections import (class_color, pixel_corners, draw_detections, draw_ground_truth, heatmap_overlay,
                                 layout_labels, line_thickness)


def _overlap(a: np.ndarray, b: np.ndarray) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def test_line_thickness_scales_with_the_image():
    assert line_thickness((480, 640, 3)) == 2 and line_thickness((200, 300)) == 2
    assert line_thickness((1280, 1920, 3)) == 6


def test_labels_inside_image_and_apart():
    shape = (120, 200)
    boxes = pixel_corners(np.array([[-30, -10, 60, 50],  # off the top-left corner: no room above
                                 [5, 0, 70, 60],  # same corner again: must not cover the first label
                                 [150, 30, 260, 110],  # off the right edge
                                 [40, 100, 90, 140]]), shape)  # off the bottom
    assert boxes[:, 0::2].min() >= 0 and boxes[:, 0::2].max() <= 199
    assert boxes[:, 1::2].min() >= 0 and boxes[:, 1::2].max() <= 119
    rects = layout_labels(boxes, np.array([[60, 14]] * 4), shape)
    assert (rects[:, 0] >= 0).all() and (rects[:, 1] >= 0).all()
    assert (rects[:, 2] <= shape[1]).all() and (rects[:, 3] <= shape[0]).all()
    assert rects[0, 1] == boxes[0, 1]  # no room above the first box: inside its top
    for i in range(len(rects)):
        for j in range(i):
            assert not _overlap(rects[i], rects[j]), (i, j, rects)
    free = layout_labels(np.array([[20, 50, 80, 90]]), np.array([[30, 14]]), shape)
    assert free[0].tolist() == [20, 36, 50, 50]  # room above: sits on the box's top edge


def test_box_outside_the_image_is_drawn_on_its_edge():
    image = np.zeros((100, 160, 3), np.uint8)
    rows = np.array([[-50.0, 20, 40, 80, 0.9, 3], [120, 10, 400, 90, 0.8, 5]])
    out = draw_detections(image, rows, ["c"] * 6)
    assert tuple(out[60, 0]) == class_color(3)  # left edge clipped onto column 0
    assert tuple(out[60, 159]) == class_color(5)  # right edge clipped onto the last column
    assert (out[95:, :] == 0).all()  # nothing below the boxes
    below = draw_detections(image, rows, ["c"] * 6, score_thresh=0.95)
    assert (below == 0).all()


def test_ground_truth_and_heatmap():
    image = np.full((64, 64, 3), 128, np.uint8)
    out = draw_ground_truth(image, np.array([[10, 20, 40, 50]]), [1], ["a", "b"])
    assert tuple(out[35, 10]) == class_color(1)
    heat = np.zeros((1, 16, 16), np.float32)
    heat[0, 8, 8] = 1.0
    trans_inv = np.array([[4.0, 0, 0], [0, 4.0, 0]])
    overlay = heatmap_overlay(image, heat, trans_inv)
    assert np.abs(overlay[32, 32].astype(int) - 128).sum() > 100  # the peak shows
    assert (overlay[2, 2] == 128).all()  # no heat: untouched
