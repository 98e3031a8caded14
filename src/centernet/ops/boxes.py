"""Box maths on tensors: the one box IoU, soft-NMS (SPEC 4 multi-scale merge, SPEC 7) and the merge of
detection rows per image and class that the tasks use for test-time augmentation and CornerNet's decode."""
from __future__ import annotations

import torch
from torch import Tensor

SOFT_NMS_METHODS = ("gaussian", "linear", "hard")


def box_iou(a: Tensor, b: Tensor, offset: float = 0.0, relative_to_first: bool = False) -> Tensor:
    """IoU of boxes ``a`` [..., 4] and ``b`` [..., 4] (x1, y1, x2, y2), broadcast over the leading dimensions:
    pairs [N, 4] with [N, 4] -> [N]; one box [4] with [N, 4] -> [N]; all pairs as ``a[:, None]`` [N, 1, 4] with
    ``b[None]`` [1, M, 4] -> [N, M].

    ``offset=0`` treats coordinates as continuous (x2 - x1 wide); ``offset=1`` uses the original's integer-pixel
    areas ((x2 - x1 + 1) * (y2 - y1 + 1)). With ``relative_to_first`` the intersection is divided by the area of
    ``a`` instead of the union (the KITTI devkit's criterion for detections inside DontCare regions). Boxes that
    do not overlap, or whose denominator is empty, give 0. The one box IoU of the package: NumPy callers convert
    with ``torch.from_numpy`` (torch promotes mixed float32 / float64 operands as NumPy does, so their values are
    unchanged)."""
    iw = (torch.minimum(a[..., 2], b[..., 2]) - torch.maximum(a[..., 0], b[..., 0]) + offset).clamp(min=0)
    ih = (torch.minimum(a[..., 3], b[..., 3]) - torch.maximum(a[..., 1], b[..., 1]) + offset).clamp(min=0)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0] + offset) * (a[..., 3] - a[..., 1] + offset)
    area_b = (b[..., 2] - b[..., 0] + offset) * (b[..., 3] - b[..., 1] + offset)
    denom = area_a if relative_to_first else area_a + area_b - inter
    return torch.where((inter > 0) & (denom > 0), inter / denom.clamp(min=1e-12), torch.zeros_like(inter))


def clip_boxes(boxes: Tensor, width: float, height: float) -> Tensor:
    """A copy of ``boxes`` [..., >=4] (columns 0-3: x1, y1, x2, y2) with x clipped to [0, width] and y to
    [0, height]; other columns are kept. Takes a tensor or a NumPy array and returns the same kind."""
    out = boxes.clone() if isinstance(boxes, Tensor) else boxes.copy()
    out[..., 0:4:2] = out[..., 0:4:2].clip(0, width)
    out[..., 1:4:2] = out[..., 1:4:2].clip(0, height)
    return out


def _soft_nms_padded(boxes: Tensor, scores: Tensor, valid: Tensor, sigma: float, threshold: float, method: str,
                     iou_threshold: float, offset: float) -> tuple[Tensor, Tensor]:
    """Soft-NMS run independently in each of G groups: ``boxes`` [G, L, 4], ``scores`` [G, L], ``valid`` [G, L].

    Each step picks the highest-scoring unpicked box of every group at once and decays the rest of its
    group by their IoU with it; boxes that fall below ``threshold`` are dropped. Returns the final scores
    [G, L] and the kept mask [G, L]. The loop runs (largest number of boxes kept in one group) times."""
    current = scores.clone()
    active = valid & (current >= threshold)  # unpicked and still above the threshold
    kept = torch.zeros_like(active)
    rows = torch.arange(boxes.shape[0], device=boxes.device)
    neg_inf = torch.tensor(float("-inf"), dtype=current.dtype, device=current.device)
    while bool(active.any()):
        has = active.any(dim=1)  # [G] groups with something left
        best = torch.where(active, current, neg_inf).argmax(dim=1)  # [G]
        picked = has.unsqueeze(1) & (torch.arange(active.shape[1], device=boxes.device) == best.unsqueeze(1))
        kept |= picked
        active &= ~picked
        iou = box_iou(boxes[rows, best].unsqueeze(1), boxes, offset)  # [G, 1, 4] with [G, L, 4] -> [G, L]
        if method == "gaussian":
            decay = torch.exp(-(iou * iou) / sigma)
        elif method == "linear":
            decay = torch.where(iou > iou_threshold, 1 - iou, torch.ones_like(iou))
        else:  # hard: classic NMS
            decay = torch.where(iou > iou_threshold, torch.zeros_like(iou), torch.ones_like(iou))
        current = torch.where(active, current * decay, current)
        active &= current >= threshold
    return current, kept


def batched_soft_nms(boxes: Tensor, scores: Tensor, groups: Tensor, sigma: float = 0.5, threshold: float = 0.001,
                     method: str = "gaussian", iou_threshold: float = 0.5, offset: float = 0.0) -> tuple[Tensor, Tensor]:
    """Soft-NMS of ``boxes`` [N, 4] (x1, y1, x2, y2) with ``scores`` [N] within each group of ``groups`` [N]
    (e.g. class, or image * C + class); boxes of different groups never interact.

    ``method``: "gaussian" (score *= exp(-iou^2 / sigma)), "linear" (score *= 1 - iou above
    ``iou_threshold``) or "hard" (plain NMS at ``iou_threshold``). Boxes whose score falls below
    ``threshold`` are dropped (also those that start below it). Returns (indices into the input [M],
    their decayed scores [M]), sorted by decayed score, highest first.
    """
    if method not in SOFT_NMS_METHODS:
        raise ValueError(f"unknown soft-NMS method {method!r}; choose one of {SOFT_NMS_METHODS}")
    n = scores.shape[0]
    if n == 0:
        return torch.zeros(0, dtype=torch.long, device=scores.device), scores.new_zeros(0)
    # Pack the groups into a padded [G, L] layout: group g's boxes at row g, columns 0..count-1.
    order = torch.argsort(groups, stable=True)
    _, counts = torch.unique_consecutive(groups[order], return_counts=True)
    row = torch.repeat_interleave(torch.arange(counts.numel(), device=scores.device), counts)  # [N]
    col = torch.arange(n, device=scores.device) - (torch.cumsum(counts, 0) - counts)[row]
    g, length = counts.numel(), int(counts.max())
    packed_boxes = boxes.new_zeros(g, length, 4)
    packed_boxes[row, col] = boxes[order]
    packed_scores = scores.new_zeros(g, length)
    packed_scores[row, col] = scores[order]
    valid = torch.zeros(g, length, dtype=torch.bool, device=scores.device)
    valid[row, col] = True
    source = torch.full((g, length), -1, dtype=torch.long, device=scores.device)
    source[row, col] = order
    final, kept = _soft_nms_padded(packed_boxes, packed_scores, valid, sigma, threshold, method, iou_threshold,
                                   offset)
    keep, new_scores = source[kept], final[kept]
    rank = torch.argsort(new_scores, descending=True, stable=True)
    return keep[rank], new_scores[rank]


def soft_nms(boxes: Tensor, scores: Tensor, sigma: float = 0.5, threshold: float = 0.001, method: str = "gaussian",
             iou_threshold: float = 0.5, offset: float = 0.0) -> tuple[Tensor, Tensor]:
    """Soft-NMS (Bodla et al. 2017) of ``boxes`` [N, 4] with ``scores`` [N], all of one class.

    Returns (kept indices [M], decayed scores [M]), highest score first. See :func:`batched_soft_nms`.
    """
    groups = torch.zeros(scores.shape[0], dtype=torch.long, device=scores.device)
    return batched_soft_nms(boxes, scores, groups, sigma, threshold, method, iou_threshold, offset)


def merge_detections(dets: Tensor, K: int, score_column: int = 4, class_column: int = 5, sigma: float = 0.5,
                     threshold: float = 0.001, method: str = "gaussian", offset: float = 1.0) -> list[Tensor]:
    """Merge detection rows [B, N, D] (e.g. several test scales concatenated, image pixels): per image and
    class soft-NMS on the boxes in columns 0..3, then the top ``K`` over classes (SPEC 4).

    Returns one [M_b, D] tensor per image (M_b <= K), rows sorted by score with the decayed score written
    into ``score_column``. ``offset=1`` reproduces the original's integer-pixel IoU."""
    b, n, _ = dets.shape
    flat = dets.reshape(b * n, -1)
    image = torch.arange(b, device=dets.device).repeat_interleave(n)  # [B*N]
    classes = flat[:, class_column].long()
    num_classes = int(classes.max()) + 1 if classes.numel() else 1
    keep, scores = batched_soft_nms(flat[:, :4], flat[:, score_column], image * num_classes + classes,
                                    sigma, threshold, method, offset=offset)
    rows = flat[keep].clone()
    rows[:, score_column] = scores
    kept_image = image[keep]
    out = []
    for i in range(b):  # per image: rows are already sorted by score, so the first K are the top K
        out.append(rows[kept_image == i][:K])
    return out
