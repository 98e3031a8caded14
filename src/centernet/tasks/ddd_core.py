"""Monocular 3D detection (CenterNet "ddd", SPEC 6): targets, losses, decoding and lifting to 3D.

Head maps: ``hm`` [B, C, H, W], ``dep`` [B, 1, H, W], ``rot`` [B, 8, H, W] (bin 1: 2 class logits, sin, cos;
bin 2: the same), ``dim`` [B, 3, H, W] (h, w, l metres), ``wh`` [B, 2, H, W], ``reg`` [B, 2, H, W].

Detection rows of :func:`decode_ddd` ([B, K, ROW_2D], output-map pixels until mapped back):
``x1 y1 x2 y2 score class | cx cy | depth | h w l | alpha`` (columns :data:`COLUMNS`); :func:`ddd_postprocess`
appends ``x y z rot_y`` (the KITTI location, bottom centre, and yaw) -> [B, K, ROW_3D].
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..data.kitti_labels import KittiObject, format_kitti_line, frame_file
from ..data.sample import Sample
from ..ops.decode import boxes_at, gather_feat, peaks, topk
from ..ops.heatmap import draw_gaussian, gaussian_radius
from ..ops.losses import focal_loss, reg_l1_loss
from .ctdet import scatter_at

CenterKind = Literal["box", "projected"]
#: ddd loss normalisations: "objects" (means over the real objects) or "original" (the original code's, below)
LOSS_NORMS = ("objects", "original")
#: share of training images the original augments (its aug_ddd); the rest train depth and size
ORIGINAL_AUGMENT_PROB = 0.5

HALF_PI = math.pi / 2
#: bin 1 (centre -pi/2) covers alpha < pi/6 or alpha > 5pi/6; bin 2 (centre +pi/2) alpha > -pi/6 or < -5pi/6
BIN_CENTERS = (-HALF_PI, HALF_PI)
BIN_EDGE_NEAR, BIN_EDGE_FAR = math.pi / 6, 5 * math.pi / 6
#: first of the 4 rot channels of each bin: [cls out, cls in, sin, cos]
BIN_CHANNELS = (0, 4)
IGNORE_PEAK = 0.9999  # an ignore region's centre: not a positive, (1 - y)^4 makes it nearly free of penalty
DEPTH_EPS = 1e-6  # d = 1 / (sigmoid(x) + eps) - 1
ORACLE_LOGIT = 10.0  # bin logit of the oracle rot map: softmax probability 1 - 2e-9

DDD_WEIGHTS = {"hm": 1.0, "dep": 1.0, "rot": 1.0, "dim": 1.0, "wh": 0.1, "reg": 1.0}
COLUMNS = {"x1": 0, "y1": 1, "x2": 2, "y2": 3, "score": 4, "class": 5, "cx": 6, "cy": 7, "depth": 8,
           "h": 9, "w": 10, "l": 11, "alpha": 12, "x": 13, "y": 14, "z": 15, "rot_y": 16}
ROW_2D, ROW_3D = 13, 17
#: (x, y) pairs of a row in pixels: the box corners and the 2D centre (for ``to_image_coords``)
POINT_COLUMNS = (0, 1, 2, 3, 6, 7)


def ddd_heads(num_classes: int) -> dict[str, int]:
    """Output channels of each head."""
    return {"hm": num_classes, "dep": 1, "rot": 8, "dim": 3, "wh": 2, "reg": 2}


# -- rotation bins -------------------------------------------------------------------------------------------

def encode_rotation(alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """alpha [N] (radians) -> (rotbin [N, 2] int64: in bin 1 / bin 2, rotres [N, 2]: alpha - bin centre,
    0 outside the bin). Alphas within 30 degrees of 0 or pi lie in both bins."""
    alpha = np.asarray(alpha, dtype=np.float64).reshape(-1)
    in1 = (alpha < BIN_EDGE_NEAR) | (alpha > BIN_EDGE_FAR)
    in2 = (alpha > -BIN_EDGE_NEAR) | (alpha < -BIN_EDGE_FAR)
    rotbin = np.stack([in1, in2], axis=1).astype(np.int64)
    rotres = np.stack([np.where(in1, alpha - BIN_CENTERS[0], 0.0), np.where(in2, alpha - BIN_CENTERS[1], 0.0)], 1)
    return rotbin, rotres.astype(np.float32)


def wrap_angle(angle: Tensor) -> Tensor:
    """Angles wrapped to [-pi, pi) (floor-based: exportable)."""
    return angle - 2 * math.pi * torch.floor((angle + math.pi) / (2 * math.pi))


def decode_alpha(rot: Tensor) -> Tensor:
    """rot [..., 8] -> alpha [...]: bin 1 when its "in" logit beats bin 2's, then atan2(sin, cos) + bin
    centre, wrapped to [-pi, pi) (the original leaves it unwrapped in [-3pi/2, 3pi/2])."""
    alpha1 = torch.atan2(rot[..., 2], rot[..., 3]) + BIN_CENTERS[0]
    alpha2 = torch.atan2(rot[..., 6], rot[..., 7]) + BIN_CENTERS[1]
    return wrap_angle(torch.where(rot[..., 1] > rot[..., 5], alpha1, alpha2))


# -- targets --------------------------------------------------------------------------------------------------

def encode_ddd(sample: Sample, out_w: int, out_h: int, num_classes: int, max_objects: int,
               center: CenterKind = "box", radius_variant: str = "centernet",
               min_overlap: float = 0.7) -> dict[str, np.ndarray]:
    """Targets of ``sample`` whose boxes (and keypoints) are in output-map pixels; its 3D ``extra`` fields
    (``dim``, ``loc``, ``alpha``) are untouched by the 2D warp.

    Boxes are clipped to the map; the radius comes from the unrounded clipped (h, w). The keypoint is the
    clipped box centre (``center="box"``, the original) or the projected 3D centre ``keypoints[:, 0]``
    (``"projected"``, clipped into the map). Ignore rows (``sample.ignore``) draw their gaussian on their
    label's channel with the centre set to 0.9999, in annotation order, and take no slot. Trained objects
    fill slots 0..M-1 in order (later ones are dropped): ``hm`` [C, H, W]; ``dep`` [M, 1] (z, metres);
    ``dim`` [M, 3]; ``rotbin`` [M, 2] int64; ``rotres`` [M, 2]; ``wh`` [M, 2]; ``reg`` [M, 2]; ``ind`` [M]
    int64; ``reg_mask`` [M] and ``rot_mask`` [M] (the same, float32: 1 for a filled slot).
    """
    n = len(sample)
    missing = [key for key in ("dim", "loc", "alpha") if n and key not in sample.extra]
    if missing:
        raise ValueError(f"{sample.path}: 3D targets need extra arrays {missing} (e.g. from KittiDetection)")
    if center == "projected" and n and sample.keypoints is None:
        raise ValueError(f"{sample.path}: center='projected' needs the projected 3D centres as keypoints")
    if center not in ("box", "projected"):
        raise ValueError(f"unknown center {center!r}; expected 'box' or 'projected'")
    hm = np.zeros((num_classes, out_h, out_w), dtype=np.float32)
    t = {"dep": np.zeros((max_objects, 1), np.float32), "dim": np.zeros((max_objects, 3), np.float32),
         "rotbin": np.zeros((max_objects, 2), np.int64), "rotres": np.zeros((max_objects, 2), np.float32),
         "wh": np.zeros((max_objects, 2), np.float32), "reg": np.zeros((max_objects, 2), np.float32),
         "ind": np.zeros(max_objects, np.int64), "reg_mask": np.zeros(max_objects, np.float32)}
    boxes = sample.boxes.copy()
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, out_w - 1)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, out_h - 1)
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    box_centers = np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], axis=1)
    if center == "projected" and n:
        inside = np.nextafter(np.array([out_w, out_h], np.float32), np.float32(0))  # largest value below the size
        keypoints = sample.keypoints[:, 0, :2].astype(np.float32).clip(0, inside)
    else:
        keypoints = box_centers
    rotbin, rotres = encode_rotation(sample.extra["alpha"]) if n else (None, None)
    slot = 0
    for k in range(n):
        if not (w[k] > 0 and h[k] > 0):
            continue
        radius = max(0, int(gaussian_radius(h[k], w[k], min_overlap, radius_variant)))
        channel = int(sample.labels[k])
        if sample.ignore[k]:
            cx, cy = box_centers[k].astype(np.int32)
            draw_gaussian(hm[channel], box_centers[k], radius)
            hm[channel, cy, cx] = IGNORE_PEAK
            continue
        if slot == max_objects:
            continue
        ct = keypoints[k]
        ct_int = ct.astype(np.int32)
        draw_gaussian(hm[channel], ct, radius)
        t["dep"][slot] = sample.extra["loc"][k, 2]
        t["dim"][slot] = sample.extra["dim"][k]
        t["rotbin"][slot], t["rotres"][slot] = rotbin[k], rotres[k]
        t["wh"][slot] = w[k], h[k]
        t["reg"][slot] = ct - ct_int
        t["ind"][slot] = ct_int[1] * out_w + ct_int[0]
        t["reg_mask"][slot] = 1
        slot += 1
    return {"hm": hm, **t, "rot_mask": t["reg_mask"].copy()}


# -- losses ---------------------------------------------------------------------------------------------------

def depth_from_logit(x: Tensor) -> Tensor:
    """The depth head's activation: d = 1 / (sigmoid(x) + 1e-6) - 1 (metres)."""
    return 1.0 / (torch.sigmoid(x) + DEPTH_EPS) - 1.0


def rotation_loss(rot: Tensor, rotbin: Tensor, rotres: Tensor, mask: Tensor, over_slots: bool = False) -> Tensor:
    """Bin loss of gathered ``rot`` [B, M, 8]: per bin, cross-entropy of its 2 logits over the masked
    objects plus smooth-L1 of (sin, cos) against the residual over the objects in that bin; each term is
    a mean over its objects (0 when there are none). Padded slots (``mask`` 0) never count, except with
    ``over_slots`` (the original's): the cross-entropy of logits zeroed on empty slots, which then add log 2
    each with bin target 0, averaged over all B * M slots."""
    valid = mask > 0  # [B, M]
    rot = rot.float()
    total = rot.new_zeros(())
    for b, first in enumerate(BIN_CHANNELS):
        target = rotbin[..., b].reshape(-1).long()
        if over_slots:
            total = total + F.cross_entropy((rot[..., first:first + 2] * valid.unsqueeze(2)).reshape(-1, 2), target)
        else:
            ce = F.cross_entropy(rot[..., first:first + 2].reshape(-1, 2), target, reduction="none").view_as(valid)
            total = total + (ce * valid).sum() / valid.sum().clamp(min=1)
        in_bin = valid & (rotbin[..., b] == 1)
        res = rotres[..., b].float()
        per_object = (F.smooth_l1_loss(rot[..., first + 2], torch.sin(res), reduction="none")
                      + F.smooth_l1_loss(rot[..., first + 3], torch.cos(res), reduction="none"))
        total = total + (per_object * in_bin).sum() / in_bin.sum().clamp(min=1)
    return total


def slot_l1_loss(pred: Tensor, ind: Tensor, mask: Tensor, target: Tensor) -> Tensor:
    """The original ddd's L1: ``pred`` [B, C, H, W] gathered at ``ind`` [B, M] against ``target`` [B, M, C] on the
    slots with ``mask`` [B, M] > 0, summed and divided by every element of every slot (B * M * C), filled or
    not: 2 objects among 50 slots weigh 2 / 50 of the per-object mean."""
    gathered = gather_feat(pred, ind).float()  # [B, M, C]
    weight = (mask > 0).float().unsqueeze(2)
    return ((gathered - target.float()).abs() * weight).sum() / gathered.numel()


def ddd_losses(output: dict[str, Tensor], targets: dict[str, Tensor], loss_norm: str = "objects") -> dict[str, Tensor]:
    """Unweighted loss terms {hm, dep, rot, dim, wh, reg} of raw head maps against batched targets.

    Focal loss on ``hm``. ``loss_norm="objects"`` (default): L1 on the decoded depth, the dims, wh and reg,
    each a mean over the masked objects' elements, and :func:`rotation_loss` (padded slots never count).
    ``"original"``, the original code's: the L1 terms divided by every slot (:func:`slot_l1_loss`), depth
    and dims only on images that were not augmented (``targets["augmented"]`` 0; wh and reg on all), and
    :func:`rotation_loss` over all slots. Weights: :data:`DDD_WEIGHTS`.
    """
    if loss_norm not in LOSS_NORMS:
        raise ValueError(f"ddd loss_norm must be one of {LOSS_NORMS}, got {loss_norm!r}")
    ind, mask = targets["ind"], targets["reg_mask"]
    rot = gather_feat(output["rot"], ind)  # [B, M, 8]
    depth = depth_from_logit(output["dep"].float())
    if loss_norm == "original":
        augmented = targets.get("augmented")
        plain = mask if augmented is None else mask * (1 - augmented.to(mask.dtype)).unsqueeze(1)
        return {
            "hm": focal_loss(output["hm"], targets["hm"]),
            "dep": slot_l1_loss(depth, ind, plain, targets["dep"]),
            "rot": rotation_loss(rot, targets["rotbin"], targets["rotres"], targets["rot_mask"], over_slots=True),
            "dim": slot_l1_loss(output["dim"], ind, plain, targets["dim"]),
            "wh": slot_l1_loss(output["wh"], ind, targets["rot_mask"], targets["wh"]),
            "reg": slot_l1_loss(output["reg"], ind, targets["rot_mask"], targets["reg"]),
        }
    return {
        "hm": focal_loss(output["hm"], targets["hm"]),
        "dep": reg_l1_loss(depth, ind, mask, targets["dep"]),
        "rot": rotation_loss(rot, targets["rotbin"], targets["rotres"], targets["rot_mask"]),
        "dim": reg_l1_loss(output["dim"], ind, mask, targets["dim"]),
        "wh": reg_l1_loss(output["wh"], ind, mask, targets["wh"]),
        "reg": reg_l1_loss(output["reg"], ind, mask, targets["reg"]),
    }


# -- decoding -------------------------------------------------------------------------------------------------

def activate_ddd(output: dict[str, Tensor]) -> dict[str, Tensor]:
    """Raw head maps -> decodable maps: sigmoid heatmap, depth in metres; the rest unchanged."""
    maps = dict(output)
    maps["hm"] = torch.sigmoid(output["hm"])
    maps["dep"] = depth_from_logit(output["dep"])
    return maps


def decode_ddd(hm: Tensor, dep: Tensor, rot: Tensor, dim: Tensor, wh: Tensor, reg: Tensor | None = None,
               K: int = 100) -> Tensor:
    """Activated maps -> rows [B, K, 13] in output-map pixels (layout :data:`COLUMNS`): the 2D box is
    ``wh`` around the peak + offset, which is also (cx, cy), the point the 3D centre is lifted from."""
    score, inds, classes, ys, xs = topk(peaks(hm), K)  # [B, K] each
    boxes = boxes_at(inds, xs, ys, wh, reg)  # [B, K, 4]
    centers = torch.stack([xs, ys], dim=2).to(hm.dtype)  # [B, K, 2]
    centers = centers + gather_feat(reg, inds) if reg is not None else centers + 0.5
    depth = gather_feat(dep, inds)  # [B, K, 1]
    dims = gather_feat(dim, inds)  # [B, K, 3]
    alpha = decode_alpha(gather_feat(rot, inds))  # [B, K]
    return torch.cat([boxes, score.unsqueeze(2), classes.to(hm.dtype).unsqueeze(2), centers, depth, dims,
                      alpha.unsqueeze(2)], dim=2)


def ddd_postprocess(rows: Tensor, calib: Tensor) -> Tensor:
    """Rows [B, K, 13] in image pixels + P2 ``calib`` [B, 3, 4] -> rows [B, K, 17] with x y z rot_y.

    As the original: the centre (u, v) is unprojected at depth d with z = d - P[2,3],
    x = (u d - P[0,3] - P[0,2] z) / P[0,0], y = (v d - P[1,3] - P[1,2] z) / P[1,1] + h / 2 (bottom centre);
    rot_y = alpha + atan2(u - P[0,2], P[0,0]) wrapped to [-pi, pi).
    """
    p = calib.to(rows.dtype).unsqueeze(1)  # [B, 1, 3, 4]
    u, v, d = rows[..., COLUMNS["cx"]], rows[..., COLUMNS["cy"]], rows[..., COLUMNS["depth"]]
    z = d - p[..., 2, 3]
    x = (u * d - p[..., 0, 3] - p[..., 0, 2] * z) / p[..., 0, 0]
    y = (v * d - p[..., 1, 3] - p[..., 1, 2] * z) / p[..., 1, 1] + rows[..., COLUMNS["h"]] / 2
    rot_y = wrap_angle(rows[..., COLUMNS["alpha"]] + torch.atan2(u - p[..., 0, 2], p[..., 0, 0]))
    return torch.cat([rows, torch.stack([x, y, z, rot_y], dim=2)], dim=2)


def oracle_ddd_maps(batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """Activated maps rebuilt from batched targets (the error analysis and the round-trip tests): the
    target heatmap, and every regression target written at its index (the later object wins)."""
    hm, ind, mask = batch["hm"], batch["ind"], batch["reg_mask"]
    h, w = hm.shape[-2:]
    rotbin, rotres = batch["rotbin"].to(hm.dtype), batch["rotres"].to(hm.dtype)
    logit_in = ORACLE_LOGIT * (2 * rotbin - 1)  # [B, M, 2]: +L in the bin, -L outside
    rot = torch.stack([-logit_in[..., 0], logit_in[..., 0], torch.sin(rotres[..., 0]), torch.cos(rotres[..., 0]),
                       -logit_in[..., 1], logit_in[..., 1], torch.sin(rotres[..., 1]), torch.cos(rotres[..., 1])], 2)
    maps = {"hm": hm, "rot": scatter_at(rot, ind, mask, h, w)}
    for name in ("dep", "dim", "wh", "reg"):
        maps[name] = scatter_at(batch[name].to(hm.dtype), ind, mask, h, w)
    return maps


# -- KITTI result files ---------------------------------------------------------------------------------------

def rows_to_kitti(rows: np.ndarray, class_names: Sequence[str], score_thresh: float = 0.0) -> list[str]:
    """Rows [K, 17] (image pixels, after :func:`ddd_postprocess`) with score > ``score_thresh`` -> KITTI
    result lines ``type 0.00 0 alpha x1 y1 x2 y2 h w l x y z rot_y score`` (truncation 0 and occlusion 0,
    as the original writes; values to 2 decimals, the score to 4). The original keeps scores > 0.2."""
    lines = []
    c = COLUMNS
    for row in np.asarray(rows, dtype=np.float64).tolist():
        if row[c["score"]] <= score_thresh:
            continue
        obj = KittiObject(class_names[int(row[c["class"]])], 0.0, 0, row[c["alpha"]],
                          (row[c["x1"]], row[c["y1"]], row[c["x2"]], row[c["y2"]]),
                          (row[c["h"]], row[c["w"]], row[c["l"]]), (row[c["x"]], row[c["y"]], row[c["z"]]),
                          row[c["rot_y"]], row[c["score"]])
        lines.append(format_kitti_line(obj, decimals=2, score_decimals=4))
    return lines


def write_kitti_results(folder: str | Path, frame_id: int | str, lines: Sequence[str]) -> Path:
    """Write one frame's result lines to ``folder/<frame>.txt`` (``%06d`` for an int id; empty files too,
    since the devkit expects a file per frame)."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    path = frame_file(folder, frame_id)
    path.write_text("".join(line + "\n" for line in lines))
    return path
