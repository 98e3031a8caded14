"""CenterNet multi-person pose (SPEC 5): a person is a centre peak with a box and 17 regressed joint offsets;
joint heatmaps refine the regressed joints ("snapping").

Detection row layout (``D = 57`` columns; coordinates in output-map pixels until mapped to the image)::

    0..3    x1, y1, x2, y2     person box
    4       score              centre heatmap peak
    5       class              always 0 (person), as in ctdet rows
    6..39   x0, y0, ..., x16, y16   the 17 COCO joints
    40..56  s0, ..., s16       joint confidence: the joint heatmap at the final joint's pixel (0 off the map)

Training targets. Joints count only when labelled (visibility > 0) and inside the output map; every other
joint is masked out of ``hps`` and gets no ``hm_hp`` peak, ``hp_offset`` or ``hp_ind``. People with no
labelled joint (COCO's ``num_keypoints == 0``) stay heatmap positives (as they effectively are in the
original, whose centre gaussian overwrites its 0.9999 marker). ``empty_person="box"`` (default) also trains
their size and centre offset, since their box is a valid label; ``empty_person="original"`` masks size and
offset as the original does. COCO's keypoint metric ignores such people, so detecting them costs nothing.
"""
from __future__ import annotations

from typing import Any, ClassVar, Mapping

import cv2
import numpy as np
import torch
from torch import Tensor

from ..data.keypoints import COCO_FLIP_PAIRS, COCO_KEYPOINT_NAMES, COCO_LIMBS, NUM_JOINTS  # noqa: F401
from ..data.sample import DetectionSource, Sample
from ..ops.decode import boxes_at, gather_feat, peaks, topk
from ..ops.heatmap import GAUSSIANS
from ..ops.losses import reg_l1_loss
from ..viz.detections import draw_detections, draw_skeletons
from .base import Task, flip_lr
from .ctdet import (CENTER_ANALYSIS_ROWS, HM_GAUSSIAN, HM_LOSSES, SIZE_LOSSES, activate_heatmap, check_choice,
                    encode_centers, heatmap_loss, scatter_at, size_loss)

JOINT_COLUMN = 6  # first joint coordinate column of a row
JOINT_SCORE_COLUMN = JOINT_COLUMN + 2 * NUM_JOINTS  # 40: first joint confidence column
ROW_SIZE = JOINT_SCORE_COLUMN + NUM_JOINTS  # 57
SNAP_THRESH = 0.1  # joint heatmap peaks below this never replace a regressed joint
SNAP_RATIO = 0.3  # ... nor those farther than this fraction of the box's longer side
EMPTY_PERSON_MODES = ("box", "original")


def flip_index(num_joints: int = NUM_JOINTS, pairs=COCO_FLIP_PAIRS) -> list[int]:
    """Joint permutation of a horizontal flip: ``perm[j]`` is the joint that j becomes."""
    perm = list(range(num_joints))
    for a, b in pairs:
        perm[a], perm[b] = b, a
    return perm


def mirror_hps(hps: Tensor) -> Tensor:
    """Joint offset maps [B, 34, H, W] of a mirrored image -> those of the image (flip, negate x, swap)."""
    b, c, h, w = hps.shape
    out = flip_lr(hps).reshape(b, c // 2, 2, h, w)
    out = torch.stack([-out[:, :, 0], out[:, :, 1]], dim=2)
    return out[:, flip_index(c // 2)].reshape(b, c, h, w)


def mirror_joint_maps(hm_hp: Tensor) -> Tensor:
    """Per-joint maps [B, J, H, W] of a mirrored image -> those of the image (flip, swap channels)."""
    return flip_lr(hm_hp)[:, flip_index(hm_hp.shape[1])]


def snap_joints(joints: Tensor, boxes: Tensor, hm_hp: Tensor, hp_offset: Tensor | None,
                thresh: float = SNAP_THRESH, ratio: float = SNAP_RATIO) -> Tensor:
    """Replace regressed ``joints`` [B, K, J, 2] by joint heatmap peaks, as the original decoder does.

    Per joint type, the top-K 3x3 peaks of ``hm_hp`` [B, J, H, W] scoring above ``thresh`` (plus
    ``hp_offset`` [B, 2, H, W], or +0.5 without it) are candidates. Each regressed joint takes its nearest
    candidate if that one lies inside the person's box (``boxes`` [B, K, 4], edges included) and within
    ``ratio * max(box w, box h)`` of it; otherwise it keeps its regressed position.
    """
    b, k, j, _ = joints.shape
    h, w = hm_hp.shape[-2:]
    p = min(k, h * w)
    cand_score, cand_ind = torch.topk(peaks(hm_hp).reshape(b, j, h * w), p)  # [B, J, P]
    cand_y = torch.div(cand_ind, w, rounding_mode="floor")
    cand_x = (cand_ind - cand_y * w).to(joints.dtype)
    cand_y = cand_y.to(joints.dtype)
    if hp_offset is not None:
        off = gather_feat(hp_offset, cand_ind.reshape(b, j * p)).reshape(b, j, p, 2)
        cand = torch.stack([cand_x + off[..., 0], cand_y + off[..., 1]], dim=3)  # [B, J, P, 2]
    else:
        cand = torch.stack([cand_x + 0.5, cand_y + 0.5], dim=3)
    regressed = joints.permute(0, 2, 1, 3)  # [B, J, K, 2]
    dx = regressed[..., 0].unsqueeze(3) - cand[..., 0].unsqueeze(2)  # [B, J, K, P]
    dy = regressed[..., 1].unsqueeze(3) - cand[..., 1].unsqueeze(2)
    dist = torch.sqrt(dx * dx + dy * dy)
    dist = torch.where((cand_score > thresh).unsqueeze(2), dist, torch.full_like(dist, float("inf")))
    min_dist, nearest = dist.min(dim=3)  # [B, J, K]
    best = cand.gather(2, nearest.unsqueeze(3).expand(b, j, k, 2))  # [B, J, K, 2]
    x1, y1, x2, y2 = (boxes[..., i].unsqueeze(1) for i in range(4))  # [B, 1, K]
    reach = torch.maximum(x2 - x1, y2 - y1) * ratio
    bx, by = best[..., 0], best[..., 1]
    ok = (bx >= x1) & (bx <= x2) & (by >= y1) & (by <= y2) & (min_dist <= reach)  # [B, J, K]
    return torch.where(ok.unsqueeze(3), best, regressed).permute(0, 2, 1, 3)


def joint_confidence(joints: Tensor, hm_hp: Tensor) -> Tensor:
    """The joint heatmap [B, J, H, W] at the pixel of each joint [B, K, J, 2]; 0 off the map. -> [B, K, J]"""
    b, k, j, _ = joints.shape
    h, w = hm_hp.shape[-2:]
    x, y = joints[..., 0], joints[..., 1]
    inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
    xi = torch.floor(x).clamp(0, w - 1).long()
    yi = torch.floor(y).clamp(0, h - 1).long()
    flat = (yi * w + xi).permute(0, 2, 1)  # [B, J, K]
    values = hm_hp.reshape(b, j, h * w).gather(2, flat).permute(0, 2, 1)  # [B, K, J]
    return torch.where(inside, values, torch.zeros_like(values))


def decode_multi_pose(hm: Tensor, wh: Tensor, reg: Tensor | None, hps: Tensor, hm_hp: Tensor | None = None,
                      hp_offset: Tensor | None = None, K: int = 100, thresh: float = SNAP_THRESH,
                      ratio: float = SNAP_RATIO) -> Tensor:
    """People from activated maps: ``hm`` [B, 1, H, W], ``wh``/``reg`` [B, 2, H, W], ``hps`` [B, 2J, H, W],
    ``hm_hp`` [B, J, H, W] (sigmoid'ed), ``hp_offset`` [B, 2, H, W]. -> [B, K, 6 + 3J] rows (module doc).

    Joints are the regressed offsets plus the integer peak position (the centre offset is not added),
    then snapped to joint heatmap peaks (:func:`snap_joints`) when ``hm_hp`` is given.
    """
    score, inds, classes, ys, xs = topk(peaks(hm), K)  # [B, K]
    b, k = score.shape
    j = hps.shape[1] // 2
    xs, ys = xs.to(hm.dtype), ys.to(hm.dtype)
    joints = gather_feat(hps, inds).reshape(b, k, j, 2) + torch.stack([xs, ys], dim=2).unsqueeze(2)
    boxes = boxes_at(inds, xs, ys, wh, reg)  # [B, K, 4]
    if hm_hp is not None:
        joints = snap_joints(joints, boxes, hm_hp, hp_offset, thresh, ratio)
        confidence = joint_confidence(joints, hm_hp)
    else:
        confidence = joints.new_zeros(b, k, j)
    return torch.cat([boxes, score.unsqueeze(2), classes.to(hm.dtype).unsqueeze(2),
                      joints.reshape(b, k, 2 * j), confidence], dim=2)


class MultiPoseTask(Task):
    """COCO person keypoints (17 joints, one class). See the module doc for the row layout and targets.
    ``hm_loss`` ("focal" or "mse", for both heatmaps) and ``size_loss`` ("l1" or "smooth_l1") as ctdet's."""

    name = "multi_pose"
    point_columns: ClassVar[tuple[int, ...]] = (0, 1, 2, 3, *range(JOINT_COLUMN, JOINT_SCORE_COLUMN))  # box, joints
    row_fields = {**Task.row_fields, "keypoints": (JOINT_COLUMN, JOINT_SCORE_COLUMN),
                  "keypoint_scores": (JOINT_SCORE_COLUMN, ROW_SIZE)}
    flip_pairs = COCO_FLIP_PAIRS
    iou_types = ("keypoints", "bbox")
    limbs = COCO_LIMBS
    heatmap_heads = ("hm", "hm_hp")
    data_options = {"keypoints": True}
    analysis_rows = CENTER_ANALYSIS_ROWS
    oracle_preset = "multi_pose_dla34_coco_1x"

    def __init__(self, num_classes: int = 1, weights: dict[str, float] | None = None, max_objects: int = 32,
                 max_detections: int = 100, radius_variant: str = "centernet", min_overlap: float = 0.7,
                 empty_person: str = "box", hm_loss: str = "focal", size_loss: str = "l1") -> None:
        if num_classes != 1:
            raise ValueError(f"multi_pose detects one class (person), got num_classes={num_classes}")
        if empty_person not in EMPTY_PERSON_MODES:
            raise ValueError(f"empty_person must be one of {EMPTY_PERSON_MODES}, got {empty_person!r}")
        super().__init__(num_classes, weights, max_objects, max_detections)
        self.radius_variant = radius_variant
        self.min_overlap = min_overlap
        self.empty_person = empty_person
        self.hm_loss = check_choice("hm_loss", hm_loss, HM_LOSSES)
        self.size_loss = check_choice("size_loss", size_loss, SIZE_LOSSES)

    @classmethod
    def suits(cls, source: DetectionSource) -> bool:
        return bool(getattr(source, "keypoint_names", None))

    def head_channels(self) -> dict[str, int]:
        return {"hm": 1, "wh": 2, "hps": 2 * NUM_JOINTS, "reg": 2, "hm_hp": NUM_JOINTS, "hp_offset": 2}

    def default_weights(self) -> dict[str, float]:
        return {"hm": 1.0, "wh": 0.1, "reg": 1.0, "hps": 1.0, "hm_hp": 1.0, "hp_offset": 1.0}

    # -- targets -----------------------------------------------------------------------------------------
    def encode(self, sample: Sample, out_w: int, out_h: int) -> dict[str, np.ndarray]:
        """ctdet's centre targets plus ``hps`` [M, 2J] / ``hps_mask`` [M, 2J], ``hm_hp`` [J, H, W] and
        ``hp_offset`` [M*J, 2] / ``hp_ind`` [M*J] / ``hp_mask`` [M*J] (slot m*J + j: joint j of person m)."""
        kps = _checked_keypoints(sample)
        gaussian = HM_GAUSSIAN[self.hm_loss]
        targets = encode_centers(sample, out_w, out_h, self.num_classes, self.max_objects,
                                 self.radius_variant, self.min_overlap, gaussian)
        m, n = self.max_objects, min(len(sample), self.max_objects)
        kept = targets["reg_mask"][:n] > 0  # [n] people with a target at all
        centers = np.stack([targets["ind"][:n] % out_w, targets["ind"][:n] // out_w], axis=1)  # [n, 2] int
        pts = kps[:n, :, :2]  # [n, J, 2]
        x, y = pts[..., 0], pts[..., 1]
        with np.errstate(invalid="ignore"):
            inside = (x >= 0) & (x < out_w) & (y >= 0) & (y < out_h)
            valid = (kps[:n, :, 2] > 0) & inside & kept[:, None]  # [n, J]
        pts = np.where(valid[..., None], pts, 0).astype(np.float32)
        pts_int = pts.astype(np.int64)  # truncation == floor inside the map
        hps = np.zeros((m, NUM_JOINTS, 2), dtype=np.float32)
        hps[:n] = np.where(valid[..., None], pts - centers[:, None, :], 0)
        hps_mask = np.zeros((m, NUM_JOINTS, 2), dtype=np.float32)
        hps_mask[:n] = valid[..., None]
        hp_offset = np.zeros((m, NUM_JOINTS, 2), dtype=np.float32)
        hp_offset[:n] = pts - pts_int
        hp_ind = np.zeros((m, NUM_JOINTS), dtype=np.int64)
        hp_ind[:n] = np.where(valid, pts_int[..., 1] * out_w + pts_int[..., 0], 0)
        hp_mask = np.zeros((m, NUM_JOINTS), dtype=np.float32)
        hp_mask[:n] = valid
        hm_hp = np.zeros((NUM_JOINTS, out_h, out_w), dtype=np.float32)
        for person, joint in zip(*np.nonzero(valid)):  # the person's radius, as the original
            GAUSSIANS[gaussian](hm_hp[joint], pts_int[person, joint], targets["radius"][person])
        if self.empty_person == "original":
            labelled = (kps[:n, :, 2] > 0).any(axis=1)
            targets["reg_mask"][:n] *= labelled
        return {**targets, "hps": hps.reshape(m, 2 * NUM_JOINTS), "hps_mask": hps_mask.reshape(m, 2 * NUM_JOINTS),
                "hm_hp": hm_hp, "hp_offset": hp_offset.reshape(m * NUM_JOINTS, 2),
                "hp_ind": hp_ind.reshape(-1), "hp_mask": hp_mask.reshape(-1)}

    # -- loss ----------------------------------------------------------------------------------------------
    def _stack_terms(self, output: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
        ind, mask = batch["ind"], batch["reg_mask"]
        return {
            "hm": heatmap_loss(self.hm_loss, output["hm"], batch["hm"]),
            "wh": size_loss(self.size_loss, output["wh"], ind, mask, batch["wh"]),
            "reg": reg_l1_loss(output["reg"], ind, mask, batch["reg"]),
            "hps": reg_l1_loss(output["hps"], ind, batch["hps_mask"], batch["hps"]),
            "hm_hp": heatmap_loss(self.hm_loss, output["hm_hp"], batch["hm_hp"]),
            "hp_offset": reg_l1_loss(output["hp_offset"], batch["hp_ind"], batch["hp_mask"], batch["hp_offset"]),
        }

    def loss(self, outputs: list[dict[str, Tensor]], batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        return self.stack_loss(outputs, batch, self._stack_terms)

    # -- inference -----------------------------------------------------------------------------------------
    def activate(self, output: dict[str, Tensor]) -> dict[str, Tensor]:
        maps = dict(output)
        maps["hm"] = activate_heatmap(self.hm_loss, output["hm"])
        maps["hm_hp"] = activate_heatmap(self.hm_loss, output["hm_hp"])
        return maps

    def merge_flip(self, maps: dict[str, Tensor]) -> dict[str, Tensor]:
        b = maps["hm"].shape[0] // 2
        return {
            "hm": (maps["hm"][:b] + flip_lr(maps["hm"][b:])) / 2,
            "wh": (maps["wh"][:b] + flip_lr(maps["wh"][b:])) / 2,
            "hps": (maps["hps"][:b] + mirror_hps(maps["hps"][b:])) / 2,
            "hm_hp": (maps["hm_hp"][:b] + mirror_joint_maps(maps["hm_hp"][b:])) / 2,
            "reg": maps["reg"][:b],  # offsets come from the unflipped image only
            "hp_offset": maps["hp_offset"][:b],
        }

    def decode(self, maps: dict[str, Tensor]) -> Tensor:
        return decode_multi_pose(maps["hm"], maps["wh"], maps.get("reg"), maps["hps"], maps.get("hm_hp"),
                                 maps.get("hp_offset"), K=self.K)  # [B, K, 57]

    def oracle_maps(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Maps rebuilt from the targets (with ``empty_person="original"`` unlabelled people get size 0)."""
        h, w = batch["hm"].shape[-2:]
        ind, mask = batch["ind"], batch["reg_mask"]
        return {
            "hm": batch["hm"],
            "wh": scatter_at(batch["wh"], ind, mask, h, w),
            "reg": scatter_at(batch["reg"], ind, mask, h, w),
            "hps": scatter_at(batch["hps"], ind, mask, h, w),
            "hm_hp": batch["hm_hp"],
            "hp_offset": scatter_at(batch["hp_offset"], batch["hp_ind"], batch["hp_mask"], h, w),
        }

    # -- output ----------------------------------------------------------------------------------------------
    def to_results(self, rows: np.ndarray, meta: Mapping[str, Any], cat_ids: list[int]) -> list[dict]:
        """COCO keypoint results: ``keypoints`` [x, y, confidence] * 17, ``bbox`` xywh, ``score``."""
        results = []
        for row in rows.tolist():
            x1, y1, x2, y2, score, cls = row[:JOINT_COLUMN]
            xy = row[JOINT_COLUMN:JOINT_SCORE_COLUMN]
            conf = row[JOINT_SCORE_COLUMN:ROW_SIZE]
            keypoints = []
            for joint in range(NUM_JOINTS):
                keypoints += [round(xy[2 * joint], 2), round(xy[2 * joint + 1], 2), round(conf[joint], 4)]
            results.append({"image_id": int(meta["image_id"]), "category_id": cat_ids[int(cls)],
                            "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                            "score": round(score, 5), "keypoints": keypoints})
        return results

    def draw(self, image: np.ndarray, rows: np.ndarray, class_names: list[str], score_thresh: float,
             meta: Mapping[str, Any] | None = None) -> np.ndarray:
        """Boxes and skeletons of people above ``score_thresh``; joints coloured (red -> green) and sized by
        their confidence."""
        people = rows[rows[:, 4] >= score_thresh]
        out = draw_detections(image, people[:, :JOINT_COLUMN], class_names, score_thresh)
        out = draw_skeletons(out, people[:, :JOINT_SCORE_COLUMN], self.limbs, score_thresh, JOINT_COLUMN)
        size = max(2, round(max(image.shape[:2]) / 200))
        for row in people:
            joints = row[JOINT_COLUMN:JOINT_SCORE_COLUMN].reshape(-1, 2)
            for (x, y), conf in zip(joints, np.clip(row[JOINT_SCORE_COLUMN:ROW_SIZE], 0, 1)):
                color = (0, int(255 * conf), int(255 * (1 - conf)))  # BGR: red (unsure) .. green (sure)
                cv2.circle(out, (int(round(x)), int(round(y))), size + int(round(size * conf)), color, -1,
                           cv2.LINE_AA)
        return out


def _checked_keypoints(sample: Sample) -> np.ndarray:
    """``sample.keypoints`` [N, 17, 3] float32, or a ValueError that says what is wrong."""
    kps = sample.keypoints
    if kps is None:
        raise ValueError(f"{sample.path}: multi_pose needs keypoints; open COCO person_keypoints data with "
                         "keypoints=True")
    kps = np.asarray(kps, dtype=np.float32)
    if kps.ndim != 3 or kps.shape[1:] != (NUM_JOINTS, 3) or len(kps) != len(sample):
        raise ValueError(f"{sample.path}: keypoints must be [{len(sample)}, {NUM_JOINTS}, 3] (x, y, visibility) "
                         f"for {len(sample)} objects, got {list(kps.shape)}")
    return kps
