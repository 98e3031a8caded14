"""torch.distributed helpers: process group from torchrun's environment, averaging, sharded evaluation."""
from __future__ import annotations

import gc
import os
from typing import Any

import torch
import torch.distributed as dist

from ..data.sample import DetectionSource, Subset


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def launch_rank() -> int:
    """This process's global rank as the launcher (torchrun) set it: valid before the process group starts and
    after it is torn down, when :func:`rank` says 0 everywhere."""
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def init_from_env(device: str = "auto") -> bool:
    """Join the process group described by torchrun's variables (nccl on CUDA, gloo on CPU).

    Returns False (and does nothing) when not launched by torchrun.
    """
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ or is_distributed():
        return is_distributed()
    use_cuda = torch.cuda.is_available() and device in ("auto", "cuda")
    if use_cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return True


def cleanup(synchronize: bool = True) -> None:
    """Leave the process group (if any). ``synchronize`` (after success): first wait until every rank is
    here, so that no rank tears its connections down while another still uses them; not after an error, where
    the others may never arrive. Then collect garbage while the interpreter is whole, so that no tensor of a
    collective is left for a native thread to free during shutdown. (Both guard against a rare abort of a
    rank at exit, "terminate called without an active exception", seen in CI and not reproduced here.)"""
    if is_distributed():
        if synchronize:
            dist.barrier()
        dist.destroy_process_group()
        gc.collect()


def broadcast_buffers(module: torch.nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s buffers (batch-norm running statistics) to every process.

    DDP keeps parameters identical, but each process updates its running statistics from its own
    batches (DDP only re-broadcasts them at the next forward). Calling this after an epoch makes every
    rank evaluate and save the same model as rank ``src``.
    """
    if not is_distributed():
        return
    for buffer in module.buffers():
        dist.broadcast(buffer.data, src)


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when available), ``cpu``, ``cuda``, ``cuda:N``; a device this machine lacks is a
    ``ValueError`` that says so (not a failure deep inside the first CUDA call)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} requested but CUDA is not available here; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r} requested but only {torch.cuda.device_count()} CUDA devices exist")
    return device


def device_for_rank(device: torch.device) -> torch.device:
    """On CUDA each process takes the GPU of its LOCAL_RANK."""
    if device.type == "cuda" and is_distributed():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return device


def average(values: dict[str, float], device: torch.device) -> dict[str, float]:
    """Mean of each value over the processes."""
    if not is_distributed():
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return {k: float(v) / world_size() for k, v in zip(keys, t.tolist())}


def evaluate_sharded(model, task, source: DetectionSource, settings, device,
                     progress: bool = True) -> tuple[dict[str, float], str]:
    """(metrics, headline metric name) of ``model`` on ``source``: alone, or with each rank scoring a shard
    through the task's scorer and rank 0 merging every rank's scorer state (the scorer protocol)."""
    result = evaluate_sharded_result(model, task, source, settings, device, progress)
    return result.metrics, result.headline


def evaluate_sharded_result(model, task, source: DetectionSource, settings, device, progress: bool = True):
    """:func:`evaluate_sharded` as an :class:`~centernet.engine.evaluator.EvalResult`. Alone it is
    :func:`~centernet.engine.evaluator.evaluate`'s; sharded it holds the metrics on every rank and the
    per-class curves on rank 0 (no results or boxes: each rank saw only its shard)."""
    from .evaluator import EvalResult, evaluate, scorer_results

    if not is_distributed():
        return evaluate(model, task, source, settings, device, progress=progress)
    scorer = task.scorer(source)
    headline = scorer.headline
    shard = Subset(source, range(rank(), len(source), world_size()))  # a view: no copy of the samples
    scorer.add(scorer_results(model, task, shard, settings, device, progress))
    state = scorer.state()
    del scorer  # from here on ``state`` is the only reference to this rank's results
    # gathered on rank 0 only (every rank holding every rank's results would be world-size copies of all of
    # them per process); rank 0 reads its own back from the gather, so each process holds one copy of each
    gathered: list[Any] | None = [None] * world_size() if rank() == 0 else None
    dist.gather_object(state, gathered, dst=0)
    del state
    metrics: list[Any] = [None]
    per_class = None
    if gathered is not None:
        total = task.scorer(source)
        total.merge(gathered)
        del gathered
        metrics = [total.result()]
        per_class = getattr(total, "per_class", None)
    dist.broadcast_object_list(metrics, src=0)
    return EvalResult(metrics[0], [], headline, per_class=per_class)
