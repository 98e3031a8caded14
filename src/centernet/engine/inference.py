"""The one inference path: network -> activation (+flip merge) -> decode -> image coordinates
(-> multi-scale merge with soft-NMS)."""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from ..postprocess import merge_detections, to_image_coords
from ..tasks.base import Task


#: the output key of a runner that decodes by itself (an ONNX model exported with the decode in the graph)
DETECTIONS = "detections"
Runner = Callable[[Tensor], dict[str, Tensor]]


def model_runner(model: nn.Module, task: Task) -> Runner:
    """images [B, 3, H, W] -> activated head maps of the model's last stack."""
    return lambda images: task.activate(model(images)[-1])


@torch.no_grad()
def run_maps(runner: Runner, task: Task, images: Tensor, flip: bool = False) -> dict[str, Tensor]:
    """``runner``'s maps for ``images``; ``flip`` runs the mirrors in the same batch and merges them."""
    if not flip:
        return runner(images)
    maps = runner(torch.cat([images, torch.flip(images, dims=[3])]))
    if DETECTIONS in maps:
        raise ValueError("the flip test needs maps; this runner returns decoded detections "
                         "(export without --decode)")
    return task.merge_flip(maps)


def infer_maps(model: nn.Module, task: Task, images: Tensor, flip: bool = False) -> dict[str, Tensor]:
    """Activated head maps of the last stack for ``images`` [B, 3, H, W]; ``flip`` averages the mirror."""
    return run_maps(model_runner(model, task), task, images, flip)


def detections(task: Task, maps: dict[str, Tensor], trans_inv: Tensor) -> Tensor:
    """[B, K, D] detection rows in image pixels from activated maps and per-image ``trans_inv`` [B, 2, 3]."""
    return to_image_coords(task.decode(maps), trans_inv, task.point_columns)


def merge_scales(task: Task, per_scale: list[Tensor]) -> list[Tensor]:
    """Detections of several test scales, each [B, K, D] in image pixels -> one [M, D] tensor per image.

    One scale passes through unchanged; several are concatenated and merged per class with Gaussian
    soft-NMS (sigma 0.5, drop below 0.001), keeping the top ``task.K`` over classes (SPEC 4)."""
    if len(per_scale) == 1:
        return list(per_scale[0])
    return merge_detections(torch.cat(per_scale, dim=1), task.K, task.score_column, task.class_column)
