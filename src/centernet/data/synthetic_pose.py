"""A small synthetic person-keypoints data set (stick figures, 17 COCO joints) for tests and smoke training."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .keypoints import COCO_KEYPOINT_NAMES, COCO_LIMBS, NUM_JOINTS
from .synthetic import _background, write_coco_splits

# Canonical front-facing figure, in units of the figure's height, relative to the pelvis centre (x right,
# y down). The person faces the camera, so their left side (odd joints) is on the image's right: a mirror
# image with left/right labels swapped is again a valid figure, which keeps flip augmentation consistent.
_HEAD = {0: (0.0, -0.86), 1: (0.03, -0.89), 2: (-0.03, -0.89), 3: (0.065, -0.87), 4: (-0.065, -0.87)}
_SHOULDER, _HIP = (0.11, -0.62), (0.07, 0.0)
_UPPER_ARM, _FOREARM, _THIGH, _SHIN = 0.17, 0.15, 0.23, 0.22
MAX_OVERLAP = 0.3  # box IoU above which a new figure is not placed next to an earlier one
UNLABELLED_PROB = 0.06  # chance that a drawn joint is left unlabelled (v=0), as annotators sometimes do
OCCLUDER_PROB = 0.3  # chance per figure of a block that hides (v=1) the joints under it
EMPTY_PROB = 0.1  # chance that a figure carries no joint labels at all (COCO's num_keypoints == 0)


def make_synthetic_pose_dataset(out_dir: str | Path, num_train: int = 32, num_val: int = 8,
                                image_size: tuple[int, int] = (128, 128), max_people: int = 3, seed: int = 0,
                                ext: str = ".png") -> dict[str, Path]:
    """Write stick-figure images plus COCO ``person_keypoints`` jsons; return their paths.

    Each image has 1..``max_people`` front-facing figures (random size, position, lean and limb angles).
    Visibility follows COCO: 2 visible; 1 labelled but hidden under an occluding block; 0 unlabelled
    (coordinates 0, 0): joints outside the image, a few random joints, and every joint of the occasional
    figure with no labels (``num_keypoints`` 0). Boxes are the figure's drawn extent clipped to the image;
    ``area`` (the OKS scale) is the box area. The output is a pure function of the arguments. Layout:
    ``train/``, ``val/``, ``annotations/person_keypoints_{train,val}.json``. Returned keys: ``root``,
    ``train_images``, ``val_images``, ``train_ann``, ``val_ann``.
    """
    width, height = image_size
    if min(width, height) < 64:
        raise ValueError(f"image_size must be at least 64x64, got {image_size}")
    if max_people < 1:
        raise ValueError(f"max_people must be at least 1, got {max_people}")
    category = {"id": 1, "name": "person", "supercategory": "person", "keypoints": list(COCO_KEYPOINT_NAMES),
                "skeleton": [[a + 1, b + 1] for a, b in COCO_LIMBS]}

    def render(rng: np.random.Generator) -> tuple[np.ndarray, list[dict[str, Any]]]:
        image, people = _render(rng, width, height, max_people)
        return image, [{"category_id": 1, "iscrowd": 0, "bbox": [x1, y1, x2 - x1, y2 - y1],
                        "area": float((x2 - x1) * (y2 - y1)), "keypoints": keypoints.reshape(-1).tolist(),
                        "num_keypoints": int((keypoints[:, 2] > 0).sum()), "segmentation": []}
                       for (x1, y1, x2, y2), keypoints in people]

    return write_coco_splits(out_dir, "person_keypoints", [category],
                             f"centernet synthetic stick figures, seed {seed}", seed,
                             {"train": num_train, "val": num_val}, render, ext)


def _figure(rng: np.random.Generator, cx: float, bottom: float, size: float) -> np.ndarray:
    """Joint positions [17, 2] (image pixels) of a figure ``size`` tall standing with its feet at ``bottom``."""
    pelvis = np.array([cx, bottom - size * (_THIGH + _SHIN)])
    lean = rng.uniform(-0.15, 0.15)  # radians; rotates the upper body about the pelvis
    rot = np.array([[np.cos(lean), -np.sin(lean)], [np.sin(lean), np.cos(lean)]])
    pts = np.zeros((NUM_JOINTS, 2))
    for j, offset in _HEAD.items():
        pts[j] = pelvis + rot @ (np.array(offset) * size)
    for side, sign in ((0, 1.0), (1, -1.0)):  # 0: left (image right), 1: right
        shoulder = pelvis + rot @ (np.array([sign * _SHOULDER[0], _SHOULDER[1]]) * size)
        hip = pelvis + np.array([sign * _HIP[0], _HIP[1]]) * size
        arm = rng.uniform(0.1, 2.4)  # angle from straight down, outwards
        elbow = shoulder + _UPPER_ARM * size * np.array([sign * np.sin(arm), np.cos(arm)])
        fore = arm + rng.uniform(-1.2, 1.2)
        wrist = elbow + _FOREARM * size * np.array([sign * np.sin(fore), np.cos(fore)])
        leg = rng.uniform(0.0, 0.5)
        knee = hip + _THIGH * size * np.array([sign * np.sin(leg), np.cos(leg)])
        shin = leg + rng.uniform(-0.4, 0.2)
        ankle = knee + _SHIN * size * np.array([sign * np.sin(shin), np.cos(shin)])
        for j, p in zip((5, 7, 9, 11, 13, 15), (shoulder, elbow, wrist, hip, knee, ankle)):
            pts[j + side] = p
    return pts


def _render(rng: np.random.Generator, width: int, height: int,
            max_people: int) -> tuple[np.ndarray, list[tuple[list[int], np.ndarray]]]:
    """One image and its people as ([x1, y1, x2, y2], keypoints [17, 3] with COCO visibility)."""
    canvas = _background(rng, width, height)
    figures: list[tuple[np.ndarray, list[int], int, int]] = []  # joints, box, line thickness, head radius
    target = int(rng.integers(1, max_people + 1))
    for _ in range(target * 10):  # bounded retries for placements that overlap an earlier figure
        if len(figures) == target:
            break
        size = rng.uniform(0.45, 0.9) * height
        pts = _figure(rng, rng.uniform(0.15, 0.85) * width, rng.uniform(0.85, 1.1) * height, size)
        thick = max(2, round(size / 28))
        head_r = max(2, round(size * 0.06))
        lo = np.minimum(pts.min(axis=0), pts[0] - head_r) - thick
        hi = np.maximum(pts.max(axis=0), pts[0] + head_r) + thick
        box = [int(max(0, np.floor(lo[0]))), int(max(0, np.floor(lo[1]))),
               int(min(width, np.ceil(hi[0]))), int(min(height, np.ceil(hi[1])))]
        if box[2] - box[0] < 8 or box[3] - box[1] < 8 or _overlaps(box, [f[1] for f in figures]):
            continue
        figures.append((pts, box, thick, head_r))
    people = []
    for pts, box, thick, head_r in figures:
        body = tuple(int(c) for c in rng.integers(0, 256, size=3))
        joint_colour = tuple(255 - c for c in body)
        cv2.circle(canvas, _px(pts[0]), head_r, body, -1, cv2.LINE_AA)
        for a, b in COCO_LIMBS:
            if a >= 5 and b >= 5:  # head limbs are replaced by the head disc
                cv2.line(canvas, _px(pts[a]), _px(pts[b]), body, thick, cv2.LINE_AA)
        cv2.line(canvas, _px(pts[0]), _px((pts[5] + pts[6]) / 2), body, thick, cv2.LINE_AA)  # neck
        for j in range(NUM_JOINTS):
            cv2.circle(canvas, _px(pts[j]), max(1, thick // 2), joint_colour, -1, cv2.LINE_AA)
        vis = np.full(NUM_JOINTS, 2.0)
        vis[rng.random(NUM_JOINTS) < UNLABELLED_PROB] = 0
        if rng.random() < EMPTY_PROB:
            vis[:] = 0
        people.append([box, pts, vis])
    for _ in range(sum(rng.random() < OCCLUDER_PROB for _ in figures)):  # blocks hide joints of anyone
        side = rng.uniform(0.08, 0.18) * height
        x, y = rng.uniform(0, width - side), rng.uniform(0, height - side)
        cv2.rectangle(canvas, (round(x), round(y)), (round(x + side), round(y + side)),
                      tuple(float(c) for c in rng.integers(0, 256, size=3)), -1)
        for person in people:
            hidden = (person[1][:, 0] >= x) & (person[1][:, 0] <= x + side) & \
                     (person[1][:, 1] >= y) & (person[1][:, 1] <= y + side)
            person[2][hidden & (person[2] > 0)] = 1
    canvas += rng.normal(0.0, 6.0, size=canvas.shape).astype(np.float32)
    image = np.clip(np.round(canvas), 0, 255).astype(np.uint8)
    out = []
    for box, pts, vis in people:
        inside = (pts[:, 0] >= 0) & (pts[:, 0] <= width - 1) & (pts[:, 1] >= 0) & (pts[:, 1] <= height - 1)
        vis = np.where(inside, vis, 0)
        keypoints = np.concatenate([np.round(pts, 2) * (vis[:, None] > 0), vis[:, None]], axis=1)
        out.append((box, keypoints))
    return image, out


def _px(p: np.ndarray) -> tuple[int, int]:
    return int(round(float(p[0]))), int(round(float(p[1])))


def _overlaps(box: list[int], others: list[list[int]]) -> bool:
    """Whether ``box`` (x1, y1, x2, y2) has an IoU above ``MAX_OVERLAP`` with any of ``others``."""
    if not others:
        return False
    import torch  # on first use: importing this module stays cheap

    from ..ops.boxes import box_iou

    ious = box_iou(torch.tensor(box, dtype=torch.float64),  # [4] with [N, 4] -> [N]
                   torch.tensor(others, dtype=torch.float64))
    return bool((ious > MAX_OVERLAP).any())
