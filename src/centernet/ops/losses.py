"""Losses shared by the tasks (SPEC 3): penalty-reduced focal loss and gathered L1, and the alternatives of
the papers' ablations (MSE heatmaps, gathered smooth-L1)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .decode import gather_feat

PROB_CLAMP = 1e-4  # the original clamps sigmoid outputs to [1e-4, 1 - 1e-4]


def focal_loss(logits: Tensor, target: Tensor, alpha: float = 2.0, beta: float = 4.0) -> Tensor:
    """CornerNet/CenterNet focal loss on raw ``logits`` against a gaussian ``target`` (same shape).

    Positives are exactly ``target == 1``; the sum is normalised by the positives of the whole batch
    (or not at all when there are none).
    """
    p = torch.sigmoid(logits.float()).clamp(PROB_CLAMP, 1 - PROB_CLAMP)
    target = target.float()
    pos = target.eq(1).float()
    neg_weight = torch.pow(1 - target, beta) * (1 - pos)
    pos_loss = (torch.log(p) * torch.pow(1 - p, alpha) * pos).sum()
    neg_loss = (torch.log(1 - p) * torch.pow(p, alpha) * neg_weight).sum()
    num_pos = pos.sum()
    return torch.where(num_pos > 0, -(pos_loss + neg_loss) / num_pos.clamp(min=1), -neg_loss)


def reg_l1_loss(pred: Tensor, ind: Tensor, mask: Tensor, target: Tensor) -> Tensor:
    """L1 between ``pred`` [B, C, H, W] gathered at ``ind`` [B, M] and ``target`` [B, M, C].

    ``mask`` is [B, M] (per object) or [B, M, C] (per channel); the sum is divided by the number of masked
    elements + 1e-4, i.e. a per-element mean.
    """
    gathered = gather_feat(pred, ind).float()  # [B, M, C]
    if mask.dim() == 2:
        mask = mask.unsqueeze(2).expand_as(gathered)
    mask = mask.float()
    loss = F.l1_loss(gathered * mask, target.float() * mask, reduction="sum")
    return loss / (mask.sum() + 1e-4)


def heatmap_mse_loss(pred: Tensor, target: Tensor) -> Tensor:
    """Mean squared error over every element of the raw heatmap ``pred`` and ``target`` (same shape): the
    original CenterNet's ``--mse_loss`` (``nn.MSELoss`` on the head output, no sigmoid)."""
    return F.mse_loss(pred.float(), target.float())


def reg_smooth_l1_loss(pred: Tensor, ind: Tensor, mask: Tensor, target: Tensor) -> Tensor:
    """Smooth-L1 between ``pred`` [B, C, H, W] gathered at ``ind`` [B, M] and ``target`` [B, M, C], summed over
    the slots with ``mask`` [B, M] > 0 and all channels, divided by the number of objects + 1e-4 (0 without
    objects): the original's ``RegLoss`` (CenterNet's ``--reg_loss sl1``, CornerNet's offset loss)."""
    gathered = gather_feat(pred, ind).float()  # [B, M, C]
    valid = (mask > 0).float()
    weight = valid.unsqueeze(2)  # [B, M, 1]
    loss = F.smooth_l1_loss(gathered * weight, target.float() * weight, reduction="sum")
    return loss / (valid.sum() + 1e-4)


def giou_loss(pred: Tensor, target: Tensor, weight: Tensor) -> Tensor:
    """TTFNet's box loss: 1 - GIoU of the boxes ``pred`` and ``target`` [B, 4, H, W] (x1, y1, x2, y2 per
    pixel), weighted by ``weight`` [B, H, W] and divided by the weights' sum + 1e-4 (pixels of weight 0 do not
    count). GIoU = IoU - (enclosing area - union) / enclosing area."""
    pred, target, weight = pred.float(), target.float(), weight.float()
    valid = weight > 0
    if not bool(valid.any()):
        return pred.sum() * 0  # keeps the graph: no objects, no box loss
    p = pred.permute(0, 2, 3, 1)[valid]  # [N, 4]
    t = target.permute(0, 2, 3, 1)[valid]
    w = weight[valid]
    area_p = (p[:, 2] - p[:, 0]).clamp(min=0) * (p[:, 3] - p[:, 1]).clamp(min=0)
    area_t = (t[:, 2] - t[:, 0]) * (t[:, 3] - t[:, 1])
    inter = ((torch.min(p[:, 2], t[:, 2]) - torch.max(p[:, 0], t[:, 0])).clamp(min=0)
             * (torch.min(p[:, 3], t[:, 3]) - torch.max(p[:, 1], t[:, 1])).clamp(min=0))
    union = area_p + area_t - inter
    enclose = ((torch.max(p[:, 2], t[:, 2]) - torch.min(p[:, 0], t[:, 0]))
               * (torch.max(p[:, 3], t[:, 3]) - torch.min(p[:, 1], t[:, 1])))
    giou = inter / union.clamp(min=1e-6) - (enclose - union) / enclose.clamp(min=1e-6)
    return ((1 - giou) * w).sum() / (w.sum() + 1e-4)
