"""The one inference path, shared by the evaluator and the predictor: network (or any runner) -> activation
(+ flip merge) -> decode -> image coordinates -> the task's post-processing with per-image meta -> the merge
of test passes (scales, and flips for tasks that merge them as detections)."""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from ..data.transforms import output_side
from ..ops.transforms import to_image_coords
from ..tasks.base import Task
from .precision import autocast_context, check_fp32_runner, resolve_precision

#: activated maps decoded at a time on the CPU: a batch of 8 COCO heatmaps at 512 is 42 MB, and decoding it in one
#: piece (its temporaries as large, each mapped and faulted in afresh) took 1.8x as long as image by image here
DECODE_CHUNK_BYTES = 16 << 20
#: the output key of a runner that decodes by itself (an ONNX model exported with the decode in the graph)
DETECTIONS = "detections"
#: images [B, 3, H, W] -> activated maps of the last stack, or {DETECTIONS: [B, K, D]} in output-map pixels
Runner = Callable[[Tensor], dict[str, Tensor]]


def model_runner(model: nn.Module, task: Task, dtype: torch.dtype = torch.float32,
                 device: str | torch.device = "cpu") -> Runner:
    """images [B, 3, H, W] -> activated head maps of the model's last stack; a reduced ``dtype`` (granted by
    :func:`~centernet.engine.precision.resolve_precision`) runs the network under autocast on ``device`` and
    hands fp32 maps to the task. A model whose weights are in channels-last memory gets its images so too."""
    run = _model_runner(model, task, dtype, device)
    if is_channels_last(model):
        return lambda images: run(images.contiguous(memory_format=torch.channels_last))
    return run


def is_channels_last(model: nn.Module) -> bool:
    """Whether the first 4-D weight of ``model`` is laid out channels-last (``model.to(memory_format=...)``)."""
    weight = next((p for p in model.parameters() if p.dim() == 4), None)
    return weight is not None and not weight.is_contiguous() and weight.is_contiguous(
        memory_format=torch.channels_last)


def _model_runner(model: nn.Module, task: Task, dtype: torch.dtype = torch.float32,
                  device: str | torch.device = "cpu") -> Runner:
    if dtype == torch.float32:
        return lambda images: task.activate(model(images)[-1])

    def run(images: Tensor) -> dict[str, Tensor]:
        with autocast_context(dtype, device):
            maps = model(images)[-1]
        return task.activate({k: v.float() for k, v in maps.items()})

    return run


def as_runner(model: nn.Module | Runner | None, task: Task, precision: str = "fp32",
              device: str | torch.device = "cpu") -> Runner | None:
    """A module -> :func:`model_runner` in ``precision`` (resolved for ``device``: refused where it does not
    pay); a runner (e.g. an onnxruntime session) or None as it is, which only fp32 suits."""
    if isinstance(model, nn.Module):
        return model_runner(model, task, resolve_precision(precision, device), device)
    check_fp32_runner(precision)
    return model


def decode_batch(task: Task, maps: dict[str, Tensor]) -> Tensor:
    """``task.decode`` of activated maps [B, ...]: [B, K, D] rows, a few images at a time on the CPU (at most
    DECODE_CHUNK_BYTES of maps), the whole batch at once elsewhere."""
    first = next(iter(maps.values()))
    per_image = sum(v[0].numel() * v.element_size() for v in maps.values())
    step = max(1, DECODE_CHUNK_BYTES // max(per_image, 1))
    if first.device.type != "cpu" or first.shape[0] <= step:
        return task.decode(maps)
    return torch.cat([task.decode({k: v[i:i + step] for k, v in maps.items()})
                      for i in range(0, first.shape[0], step)])


def image_rows(task: Task, rows: Tensor, meta: dict[str, Tensor]) -> Tensor:
    """Rows [B, K, D] in output-map pixels -> image pixels (``meta["trans_inv"]`` [B, 2, 3]) -> the task's
    post-processing with the rest of ``meta``."""
    return task.postprocess(to_image_coords(rows, meta["trans_inv"], task.point_columns), meta)


def detections(task: Task, maps: dict[str, Tensor], meta: dict[str, Tensor]) -> Tensor:
    """[B, K, D] final rows in image pixels from activated maps and the batch's ``meta``."""
    return image_rows(task, decode_batch(task, maps), meta)


def _rows(task: Task, maps: dict[str, Tensor]) -> Tensor:
    """[B, K, D] rows in output-map pixels from activated maps, or from a decoding runner's output."""
    return maps[DETECTIONS] if DETECTIONS in maps else decode_batch(task, maps)


@torch.no_grad()
def run_pass(runner: Runner, task: Task, batch: dict[str, Tensor], flip: bool = False,
             down_ratio: int = 4) -> tuple[list[Tensor], dict[str, Tensor] | None]:
    """One test pass of a batch ({"input": [B, 3, H, W], "trans_inv": [B, 2, 3], meta...}).

    Returns the rows in image pixels after the task's post-processing ([B, K, D]; two entries when the task
    merges its flip test as detections) and the activated maps (None from a decoding runner)."""
    images = batch["input"]
    meta = {k: v for k, v in batch.items() if k != "input"}
    if flip and task.flip_test is None:
        raise ValueError(f"task {task.name!r} has no flip test")
    if not flip:
        maps = runner(images)
        decoded = [_rows(task, maps)]
    else:
        b = images.shape[0]
        maps = runner(torch.cat([images, torch.flip(images, dims=[3])]))
        if task.flip_test == "maps":
            if DETECTIONS in maps:
                raise ValueError("the flip test needs maps; this runner returns decoded detections "
                                 "(export without --decode)")
            maps = task.merge_flip(maps)
            decoded = [decode_batch(task, maps)]
        else:  # "detections": decode both halves, mirror the second back, merge like scales
            rows = _rows(task, maps)
            decoded = [rows[:b], task.unflip_rows(rows[b:], output_side(images.shape[-1], down_ratio))]
            maps = None if DETECTIONS in maps else {k: v[:b] for k, v in maps.items()}
    out = [image_rows(task, r, meta) for r in decoded]
    return out, (None if maps is None or DETECTIONS in maps else maps)


def predict_passes(runner: Runner, task: Task, passes: list[dict[str, Tensor]], flip: bool = False,
                   down_ratio: int = 4) -> tuple[list[Tensor], dict[str, Tensor] | None]:
    """Every pass (one per test scale) of the same images -> one [M, D] tensor per image (``task.merge``),
    and the activated maps of the first pass."""
    per_pass: list[Tensor] = []
    first_maps = None
    for i, batch in enumerate(passes):
        rows, maps = run_pass(runner, task, batch, flip, down_ratio)
        per_pass += rows
        if i == 0:
            first_maps = maps
    return task.merge(per_pass), first_maps
