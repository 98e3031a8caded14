"""CornerNet decoding (SPEC 7): corner peaks -> all top-left x bottom-right pairs -> the best valid boxes.

``decode_cornernet`` is pure tensor code with fixed sizes (exportable to ONNX); ``cornernet_postprocess``
(per-class soft-NMS) runs after the rows are mapped to image pixels. ``cornernet_oracle_maps`` rebuilds
perfect head maps from encoded targets.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..ops.boxes import merge_detections
from ..ops.decode import gather_feat, peaks, topk
from .ctdet import scatter_at

INVALID_SCORE = -1.0  # score of a pair rejected by class, embedding distance or geometry (as the original)
AE_THRESHOLD = 0.5  # largest embedding distance of a corner pair of one object
NUM_DETS = 1000  # pairs kept by the decoder
ORACLE_TAG_SPACING = 1.0  # oracle embeddings: object slot k gets (k + 1) * spacing, background 0


def decode_cornernet(tl_heat: Tensor, br_heat: Tensor, tl_tag: Tensor, br_tag: Tensor, tl_regr: Tensor | None,
                     br_regr: Tensor | None, K: int = 100, ae_threshold: float = AE_THRESHOLD,
                     num_dets: int = NUM_DETS, kernel: int = 3) -> Tensor:
    """Boxes from activated maps: ``tl_heat``, ``br_heat`` [B, C, H, W] are probabilities (sigmoid already
    applied, e.g. by the task's ``activate``), ``tl_tag``, ``br_tag`` [B, 1, H, W] embeddings, ``tl_regr``,
    ``br_regr`` [B, 2, H, W] offsets (None: no offsets).

    Keeps the 3x3 peaks, takes the top ``K`` corners of each type over classes x positions, and scores
    every (top-left, bottom-right) pair by the mean of its two corner scores; a pair is invalid (score
    -1) if the classes differ, the embeddings differ by more than ``ae_threshold``, or the bottom-right
    corner lies left of or above the top-left one. Returns the best ``num_dets`` pairs (fewer if K*K is
    smaller) as [B, num_dets, 6] rows (x1, y1, x2, y2, score, class) in output-map pixels, highest first;
    invalid pairs fill the tail with score -1.
    """
    b = tl_heat.shape[0]
    dtype = tl_heat.dtype
    tl_score, tl_ind, tl_cls, tl_y, tl_x = topk(peaks(tl_heat, kernel), K)  # each [B, k]
    br_score, br_ind, br_cls, br_y, br_x = topk(peaks(br_heat, kernel), K)
    k = tl_score.shape[1]
    tl_x, tl_y, br_x, br_y = (t.to(dtype) for t in (tl_x, tl_y, br_x, br_y))
    if tl_regr is not None and br_regr is not None:
        tl_off, br_off = gather_feat(tl_regr, tl_ind), gather_feat(br_regr, br_ind)  # [B, k, 2]
        tl_x, tl_y = tl_x + tl_off[..., 0], tl_y + tl_off[..., 1]
        br_x, br_y = br_x + br_off[..., 0], br_y + br_off[..., 1]
    tl_e = gather_feat(tl_tag, tl_ind)[..., 0]  # [B, k]
    br_e = gather_feat(br_tag, br_ind)[..., 0]

    # pairs [B, k, k]: row i is the i-th top-left corner, column j the j-th bottom-right one
    shape = (b, k, k)
    x1, y1 = tl_x.unsqueeze(2).expand(shape), tl_y.unsqueeze(2).expand(shape)
    x2, y2 = br_x.unsqueeze(1).expand(shape), br_y.unsqueeze(1).expand(shape)
    score = (tl_score.unsqueeze(2) + br_score.unsqueeze(1)) / 2
    invalid = ((tl_cls.unsqueeze(2) != br_cls.unsqueeze(1))
               | ((tl_e.unsqueeze(2) - br_e.unsqueeze(1)).abs() > ae_threshold)
               | (x2 < x1) | (y2 < y1))
    score = torch.where(invalid, torch.full_like(score, INVALID_SCORE), score)

    n = min(num_dets, k * k)
    best, order = torch.topk(score.reshape(b, k * k), n)  # [B, n]
    boxes = torch.stack([x1, y1, x2, y2], dim=3).reshape(b, k * k, 4)
    boxes = boxes.gather(1, order.unsqueeze(2).expand(b, n, 4))  # [B, n, 4]
    classes = tl_cls.unsqueeze(2).expand(shape).reshape(b, k * k).gather(1, order)  # [B, n]
    return torch.cat([boxes, best.unsqueeze(2), classes.to(dtype).unsqueeze(2)], dim=2)


def cornernet_postprocess(rows: Tensor, K: int = 100, sigma: float = 0.5, threshold: float = 0.001) -> list[Tensor]:
    """Per image and class Gaussian soft-NMS (``sigma``, the original's integer-pixel IoU) of detection
    rows [B, N, 6] in image pixels, e.g. the decoder's rows of an image and its mirror concatenated; rows
    scoring below ``threshold`` (the -1 of invalid pairs) are dropped. Returns one [M_b <= K, 6] tensor per
    image, highest score first, with the decayed scores."""
    return merge_detections(rows, K, sigma=sigma, threshold=threshold, method="gaussian", offset=1.0)


def cornernet_oracle_maps(batch: dict[str, Tensor], spacing: float = ORACLE_TAG_SPACING) -> dict[str, Tensor]:
    """Perfect activated maps from collated targets (``encode_corners``'s keys, batched): the target
    heatmaps, embeddings (k + 1) * ``spacing`` at both corners of slot k and 0 elsewhere (keep ``spacing``
    above the decoder's ``ae_threshold``), and the target offsets at the corner pixels. Where corners of
    several objects share a pixel, the later slot wins (as the single embedding of a real network)."""
    tl_heat = batch["tl_heat"]
    b, _, h, w = tl_heat.shape
    mask = batch["tag_mask"]
    m = mask.shape[1]
    slots = (torch.arange(m, device=mask.device, dtype=tl_heat.dtype) + 1) * spacing
    tags = slots.reshape(1, m, 1).expand(b, m, 1)  # [B, M, 1]
    return {
        "tl_heat": tl_heat,
        "br_heat": batch["br_heat"],
        "tl_tag": scatter_at(tags, batch["tl_ind"], mask, h, w),  # [B, 1, H, W]
        "br_tag": scatter_at(tags, batch["br_ind"], mask, h, w),
        "tl_regr": scatter_at(batch["tl_regr"], batch["tl_ind"], mask, h, w),  # [B, 2, H, W]
        "br_regr": scatter_at(batch["br_regr"], batch["br_ind"], mask, h, w),
    }
