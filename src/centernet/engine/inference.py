"""The one inference path: network -> activation (+flip merge) -> decode -> image coordinates
(-> multi-scale merge with soft-NMS)."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..postprocess import merge_detections, to_image_coords
from ..tasks.base import Task


@torch.no_grad()
def infer_maps(model: nn.Module, task: Task, images: Tensor, flip: bool = False) -> dict[str, Tensor]:
    """Activated head maps of the last stack for ``images`` [B, 3, H, W]; ``flip`` averages the mirror."""
    if flip:
        images = torch.cat([images, torch.flip(images, dims=[3])])
    maps = task.activate(model(images)[-1])
    return task.merge_flip(maps) if flip else maps


def detections(task: Task, maps: dict[str, Tensor], trans_inv: Tensor) -> Tensor:
    """[B, K, D] detection rows in image pixels from activated maps and per-image ``trans_inv`` [B, 2, 3]."""
    return to_image_coords(task.decode(maps), trans_inv, task.point_columns)


@torch.no_grad()
def predict_batch(model: nn.Module, task: Task, images: Tensor, trans_inv: Tensor, flip: bool = False) -> Tensor:
    return detections(task, infer_maps(model, task, images, flip), trans_inv)


def merge_scales(task: Task, per_scale: list[Tensor]) -> list[Tensor]:
    """Detections of several test scales, each [B, K, D] in image pixels -> one [M, D] tensor per image.

    One scale passes through unchanged; several are concatenated and merged per class with Gaussian
    soft-NMS (sigma 0.5, drop below 0.001), keeping the top ``task.K`` over classes (SPEC 4)."""
    if len(per_scale) == 1:
        return list(per_scale[0])
    return merge_detections(torch.cat(per_scale, dim=1), task.K, task.score_column, task.class_column)
