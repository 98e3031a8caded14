"""Losses shared by the tasks (SPEC 3): penalty-reduced focal loss and gathered L1."""
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
