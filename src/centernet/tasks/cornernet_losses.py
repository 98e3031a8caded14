"""CornerNet losses (SPEC 7): focal loss on both corner heatmaps, associative-embedding pull and push,
smooth-L1 corner offsets. Tensor code.

Batch normalisation, everywhere: pooled over the batch. The focal loss divides by the positives of the
whole batch (as ``losses.focal_loss``, the same as the original's ``_neg_loss`` per stack); pull by the
objects of the batch; push by the ordered pairs (i, j), i != j, of objects of the same image over the
batch; offsets by the objects of the batch. Images with one object add no push pair; a batch without
objects (or without pairs) gives 0, not NaN.

The original instead sums per-image means over each GPU's chunk (4-5 images of its batch of 49), so its
pull and push weights of 0.1 act about 5x larger than here; its push also counts the diagonal and
leaves ~1 for one-object images, is 0 with bool masks and breaks at batch size 1 (SPEC 7). None of
that is reproduced.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..ops.decode import gather_feat
from ..ops.losses import focal_loss, reg_smooth_l1_loss

# Loss weights (SPEC 7): heatmaps 1, pull 0.1, push 0.1, offsets 1
CORNERNET_WEIGHTS = {"heat": 1.0, "pull": 0.1, "push": 0.1, "regr": 1.0}
PUSH_MARGIN = 1.0  # embeddings of different objects are pushed at least this far apart


def ae_loss(tl_tag: Tensor, br_tag: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Pull and push of the corner embeddings ``tl_tag``, ``br_tag`` [B, M] (gathered at the corners of
    slot m) with ``mask`` [B, M] (> 0 for the slots that hold an object; float, int or bool).

    With e_k = (tl_k + br_k) / 2: pull = sum over objects of (tl_k - e_k)^2 + (br_k - e_k)^2, divided by
    the number of objects in the batch; push = sum over ordered pairs (i, j), i != j, of one image of
    relu(1 - |e_i - e_j|), divided by the number of such pairs in the batch. Each is 0 when it has nothing
    to average. Returns (pull, push), scalars.
    """
    if tl_tag.shape != br_tag.shape or tl_tag.shape != mask.shape or tl_tag.dim() != 2:
        raise ValueError(f"ae_loss expects [B, M] tags and mask, got {tuple(tl_tag.shape)}, "
                         f"{tuple(br_tag.shape)} and {tuple(mask.shape)}")
    tl_tag, br_tag = tl_tag.float(), br_tag.float()
    valid = (mask > 0).float()  # [B, M]
    mean = (tl_tag + br_tag) / 2  # [B, M]
    pull_sum = (((tl_tag - mean) ** 2 + (br_tag - mean) ** 2) * valid).sum()
    pull = pull_sum / valid.sum().clamp(min=1)

    m = valid.shape[1]
    off_diagonal = 1 - torch.eye(m, device=valid.device, dtype=valid.dtype)
    pairs = valid.unsqueeze(2) * valid.unsqueeze(1) * off_diagonal  # [B, M, M]
    gap = (mean.unsqueeze(2) - mean.unsqueeze(1)).abs()  # [B, M, M]
    push_sum = (F.relu(PUSH_MARGIN - gap) * pairs).sum()
    push = push_sum / pairs.sum().clamp(min=1)
    return pull, push


def offset_loss(pred: Tensor, ind: Tensor, mask: Tensor, target: Tensor) -> Tensor:
    """Smooth-L1 between ``pred`` [B, 2, H, W] gathered at ``ind`` [B, M] and ``target`` [B, M, 2],
    summed over the masked slots (``mask`` [B, M] > 0) and both channels, divided by the number of
    objects (+1e-4, as the original; 0 without objects)."""
    return reg_smooth_l1_loss(pred, ind, mask, target)


def corner_terms(output: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """The unweighted loss terms of one stack: ``output`` holds the raw head maps ``tl_heat``, ``br_heat``
    [B, C, H, W] (logits), ``tl_tag``, ``br_tag`` [B, 1, H, W], ``tl_regr``, ``br_regr`` [B, 2, H, W];
    ``batch`` the collated targets of :func:`~centernet.tasks.cornernet_targets.encode_corners`.

    Returns {"heat": focal(tl) + focal(br), "pull", "push", "regr": offsets(tl) + offsets(br)}; weight them
    with :data:`CORNERNET_WEIGHTS` and average over stacks.
    """
    mask = batch["tag_mask"]
    tl_tag = gather_feat(output["tl_tag"], batch["tl_ind"])[..., 0]  # [B, M]
    br_tag = gather_feat(output["br_tag"], batch["br_ind"])[..., 0]
    pull, push = ae_loss(tl_tag, br_tag, mask)
    return {
        "heat": focal_loss(output["tl_heat"], batch["tl_heat"]) + focal_loss(output["br_heat"], batch["br_heat"]),
        "pull": pull,
        "push": push,
        "regr": offset_loss(output["tl_regr"], batch["tl_ind"], mask, batch["tl_regr"])
        + offset_loss(output["br_regr"], batch["br_ind"], mask, batch["br_regr"]),
    }
