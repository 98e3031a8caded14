"""CornerNet (SPEC 7) as a task: an object is a top-left and a bottom-right corner, each found on its own
heatmap after corner pooling, offset to sub-pixel precision and paired by a 1-d embedding.

Heads (per stack): ``tl_heat`` / ``br_heat`` (C, heatmap prior), ``tl_tag`` / ``br_tag`` (1), ``tl_regr`` /
``br_regr`` (2); the ``tl_*`` heads read the top-left corner branch ("tl": top and left pooling), the
``br_*`` heads the bottom-right one ("br"). Targets, losses, decoding and the soft-NMS come from
``cornernet_targets``, ``cornernet_losses`` and ``cornernet_decode``; detection rows are ctdet's
(x1, y1, x2, y2, score, class).

Test time as the original: a keep_res input is the image padded to n | 127 per side (480 -> 511, not 512),
copied in at an integer offset and mapped back with the ratio input / output of each side (511 / 128), not
a fixed 4 (``test_pad_style = "cornernet"``, see ``data.transforms.prepare_test_image``); the flip test
decodes the image and its mirror separately and merges their detections (``flip_test = "detections"``,
mirror mapped back with x -> map width - x); every test (one pass included) ends with per-class Gaussian
soft-NMS and the top ``max_detections``. The paper preset tests with the flip on (``data.test_flip``).

Error analysis (the CornerNet paper's Table 6): the network's maps with the ground truth substituted for
the corner heatmaps, then for the heatmaps and the offsets. The embeddings stay the network's in both
rows, as in the paper: they are read at the ground-truth corner pixels, exactly where the pull/push loss
trains them, so the pairing stays meaningful and what is left below 100 in the last row is the grouping
error. A last row also substitutes perfect embeddings (each object's own tag at both of its corners),
which is the whole ground truth through the real decoder: the oracle.
"""
from __future__ import annotations

from typing import Any, Mapping

import cv2
import numpy as np
import torch
from torch import Tensor, nn

from ..data.sample import Sample
from ..models.heads import HEATMAP_PRIOR, Branch, HeadSpec
from ..models.layers.corner_pool import CornerPoolModule
from ..viz.detections import class_color, draw_detections, line_thickness
from .base import Meta, Task
from .cornernet_decode import (AE_THRESHOLD, NUM_DETS, ORACLE_TAG_SPACING, cornernet_oracle_maps,
                               cornernet_postprocess, decode_cornernet)
from .cornernet_losses import CORNERNET_WEIGHTS, corner_terms
from .cornernet_targets import FIXED_RADIUS, PENALTIES, encode_corners

#: corner branch name -> its two pooling directions (SPEC 7)
CORNER_DIRECTIONS = {"tl": ("top", "left"), "br": ("bottom", "right")}
TOP_K = 100  # corners of each type the decoder pairs
HEAT_HEADS = ("tl_heat", "br_heat")
TAG_HEADS = ("tl_tag", "br_tag")
REGR_HEADS = ("tl_regr", "br_regr")

CORNER_ANALYSIS_ROWS = (
    ("none", frozenset()),
    ("heatmaps", frozenset(HEAT_HEADS)),
    ("heatmaps + offsets", frozenset(HEAT_HEADS + REGR_HEADS)),
    ("heatmaps + offsets + embeddings", frozenset(HEAT_HEADS + REGR_HEADS + TAG_HEADS)),
)


def cornernet_heads(num_classes: int = 80) -> dict[str, int]:
    """CornerNet's heads and their channels: heatmaps per class, a 1-d embedding and a 2-d offset per corner."""
    return {"tl_heat": num_classes, "br_heat": num_classes, "tl_tag": 1, "br_tag": 1, "tl_regr": 2, "br_regr": 2}


def pool_channels(dim: int) -> int:
    """Width of a corner branch's pooled maps: half its input, the original's 128 at 256."""
    return max(1, dim // 2)


def corner_branch(corner: str, pool: bool = True) -> Branch:
    """The shared module of the ``corner`` ("tl" or "br") heads: a :class:`CornerPoolModule`; with
    ``pool=False`` the same module with both pools replaced by the identity (the paper's ablation)."""
    directions = CORNER_DIRECTIONS[corner]

    def build(dim: int) -> nn.Module:  # [B, dim, H, W] -> [B, dim, H, W]
        return CornerPoolModule(dim, directions, pool_channels(dim), pool=pool)

    return Branch(corner, build)


_BRANCHES = {corner: corner_branch(corner) for corner in CORNER_DIRECTIONS}


class CornerNetTask(Task):
    """CornerNet. Options (``TaskConfig.options``), each with the paper's default:

    * ``corner_pool``: corner pooling in both branches; False is the paper's ablation, where each branch
      keeps its convolutions (same parameters and names) and sums its two 3x3 conv-BN-ReLU outputs unpooled
    * ``penalty``: heatmap penalty reduction "object" (gaussian radius from the box size), "fixed"
      (``fixed_radius`` for every object) or "none" (only the corner pixel is positive)
    * ``ae_threshold`` (largest embedding distance of a pair), ``top_k`` (corners of each type),
      ``num_dets`` (pairs kept by the decoder), ``show_corners`` (pictures mark the two corners)
    """

    name = "cornernet"
    heatmap_heads = HEAT_HEADS
    head_branches = {head: _BRANCHES[head[:2]] for head in HEAT_HEADS + TAG_HEADS + REGR_HEADS}
    flip_test = "detections"
    test_pad_style = "cornernet"
    analysis_rows = CORNER_ANALYSIS_ROWS
    oracle_preset = "cornernet_hg104_coco"

    def __init__(self, num_classes: int, weights: dict[str, float] | None = None, max_objects: int = 128,
                 max_detections: int = 100, corner_pool: bool = True, penalty: str = "object",
                 fixed_radius: int = FIXED_RADIUS, ae_threshold: float = AE_THRESHOLD, num_dets: int = NUM_DETS,
                 top_k: int = TOP_K, show_corners: bool = False) -> None:
        if penalty not in PENALTIES:
            raise ValueError(f"penalty must be one of {PENALTIES}, got {penalty!r}")
        for option, value in (("num_dets", num_dets), ("top_k", top_k)):
            if int(value) < 1:
                raise ValueError(f"{option} must be at least 1, got {value}")
        if ae_threshold <= 0:
            raise ValueError(f"ae_threshold must be positive, got {ae_threshold}")
        super().__init__(num_classes, weights, max_objects, max_detections)
        self.corner_pool = bool(corner_pool)
        self.penalty = penalty
        self.fixed_radius = int(fixed_radius)
        self.ae_threshold = float(ae_threshold)
        self.num_dets = int(num_dets)
        self.top_k = int(top_k)
        self.show_corners = bool(show_corners)
        self.branches = {corner: corner_branch(corner, self.corner_pool) for corner in CORNER_DIRECTIONS}

    # -- heads ---------------------------------------------------------------------------------------------
    def head_channels(self) -> dict[str, int]:
        return cornernet_heads(self.num_classes)

    def heads(self) -> dict[str, HeadSpec]:
        return {name: HeadSpec(name, n, HEATMAP_PRIOR if name in HEAT_HEADS else None, self.branches[name[:2]])
                for name, n in self.head_channels().items()}

    def default_weights(self) -> dict[str, float]:
        return dict(CORNERNET_WEIGHTS)

    # -- training ------------------------------------------------------------------------------------------
    def encode(self, sample: Sample, out_w: int, out_h: int) -> dict[str, np.ndarray]:
        return encode_corners(sample.boxes, sample.labels, sample.ignore, out_w, out_h, self.num_classes,
                              self.max_objects, self.penalty, self.fixed_radius)

    def loss(self, outputs: list[dict[str, Tensor]], batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        return self.stack_loss(outputs, batch, corner_terms)

    # -- inference -----------------------------------------------------------------------------------------
    def activate(self, output: dict[str, Tensor]) -> dict[str, Tensor]:
        return {name: torch.sigmoid(value) if name in HEAT_HEADS else value for name, value in output.items()}

    def decode(self, maps: dict[str, Tensor]) -> Tensor:
        return decode_cornernet(maps["tl_heat"], maps["br_heat"], maps["tl_tag"], maps["br_tag"],
                                maps.get("tl_regr"), maps.get("br_regr"), K=self.top_k,
                                ae_threshold=self.ae_threshold, num_dets=self.num_dets)  # [B, num_dets, 6]

    def unflip_rows(self, rows: Tensor, map_width: int) -> Tensor:
        """Rows [B, N, 6] of the mirrored image -> the image's: x -> map_width - x, x1 and x2 swapped (as the
        original; corners are continuous positions, so the mirror of x is W - x, not W - 1 - x)."""
        out = rows.clone()
        out[..., 0] = map_width - rows[..., 2]
        out[..., 2] = map_width - rows[..., 0]
        return out

    def postprocess(self, rows: Tensor, meta: Meta) -> Tensor:
        """Boxes [B, N, 6] in image pixels clipped to the image (``meta["image_size"]`` [B, 2], w h)."""
        size = meta["image_size"].to(rows.dtype)  # [B, 2]
        out = rows.clone()
        out[..., [0, 2]] = torch.minimum(rows[..., [0, 2]].clamp(min=0), size[:, None, :1])
        out[..., [1, 3]] = torch.minimum(rows[..., [1, 3]].clamp(min=0), size[:, None, 1:])
        return out

    def merge(self, per_pass: list[Tensor]) -> list[Tensor]:
        """Every pass (scales, the mirror) concatenated, then per-class Gaussian soft-NMS and the top
        ``max_detections``: also for a single pass, as the original (invalid pairs, score -1, drop out)."""
        return cornernet_postprocess(torch.cat(per_pass, dim=1), self.K)

    def oracle_maps(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Target heatmaps and offsets, and perfect embeddings spaced beyond ``ae_threshold``."""
        return cornernet_oracle_maps(batch, max(ORACLE_TAG_SPACING, 2 * self.ae_threshold))

    # -- output --------------------------------------------------------------------------------------------
    def heatmap(self, maps: dict[str, Tensor]) -> Tensor | None:
        """Both corner heatmaps in one picture: their elementwise max [B, C, h, w]."""
        return torch.maximum(maps["tl_heat"], maps["br_heat"])

    def draw(self, image: np.ndarray, rows: np.ndarray, class_names: list[str], score_thresh: float,
             meta: Mapping[str, Any] | None = None) -> np.ndarray:
        """Boxes above ``score_thresh``; with ``show_corners`` also a dot on each top-left corner and a
        square on each bottom-right one, in the class colour."""
        out = draw_detections(image, rows, class_names, score_thresh)
        if not self.show_corners:
            return out
        size = 2 * line_thickness(image.shape)
        for x1, y1, x2, y2, _, cls in rows[rows[:, 4] >= score_thresh, :6].tolist():
            color = class_color(int(cls))
            cv2.circle(out, (round(x1), round(y1)), size, color, -1, cv2.LINE_AA)
            cv2.rectangle(out, (round(x2) - size, round(y2) - size), (round(x2) + size, round(y2) + size), color, -1)
        return out
