"""Detections back to image coordinates (tensor code)."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor


def to_image_coords(dets: Tensor, trans_inv: Tensor, point_columns: Sequence[int]) -> Tensor:
    """Map the (x, y) column pairs ``point_columns`` of ``dets`` [B, K, D] through the per-image inverse
    affine ``trans_inv`` [B, 2, 3] (output map -> image, test scale included). Returns a new tensor."""
    cols = torch.as_tensor(list(point_columns), device=dets.device)
    pts = dets[..., cols].reshape(dets.shape[0], -1, 2)  # [B, K*P, 2]
    trans_inv = trans_inv.to(dets.dtype)
    mapped = pts @ trans_inv[:, :, :2].transpose(1, 2) + trans_inv[:, :, 2].unsqueeze(1)
    out = dets.clone()
    out[..., cols] = mapped.reshape(dets.shape[0], dets.shape[1], -1)
    return out
