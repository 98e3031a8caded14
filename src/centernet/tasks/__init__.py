"""Task registry: a task name -> its class (ctdet, multi_pose, cornernet, ...), and the helpers that need all tasks."""
from __future__ import annotations

import inspect
from typing import Any, Mapping

from ..data.sample import DetectionSource
from ..models.heads import HeadSpec
from ..registry import Registry
from .base import Task
from .cornernet import CornerNetTask
from .ctdet import CtdetTask
from .ddd import DddTask
from .pose import MultiPoseTask

TASKS: Registry[type[Task]] = Registry("task")
TASKS.register("ctdet")(CtdetTask)
TASKS.register("multi_pose")(MultiPoseTask)
TASKS.register("cornernet")(CornerNetTask)
TASKS.register("ddd")(DddTask)

_BASE_ARGS = ("num_classes", "weights", "max_objects", "max_detections")


def task_options(name: str) -> dict[str, inspect.Parameter]:
    """The task-specific keyword options of task ``name`` (its constructor's, beyond the shared ones)."""
    params = inspect.signature(TASKS.get(name).__init__).parameters
    return {k: p for k, p in params.items() if k not in ("self", *_BASE_ARGS) and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def build_task(name: str, num_classes: int, weights: dict[str, float] | None = None, max_objects: int = 128,
               max_detections: int = 100, **options: Any) -> Task:
    """Instantiate task ``name`` with explicit arguments; ``options`` must be the task's own keyword options
    (an unknown one is an error naming the ones it has)."""
    known = task_options(name)
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ValueError(f"task {name!r} has no option(s) {unknown}; its options: {sorted(known) or 'none'}")
    return TASKS.get(name)(num_classes=num_classes, weights=weights, max_objects=max_objects,
                           max_detections=max_detections, **options)


def guess_task(source: DetectionSource) -> str:
    """The most specific registered task that suits ``source`` (e.g. multi_pose for keypoint data)."""
    suited = [name for name in TASKS.names() if TASKS.get(name).suits(source)]
    specific = [name for name in suited if name != "ctdet"]
    if specific:
        return specific[0]
    if suited:
        return suited[0]
    raise ValueError("no task suits this data set; name one")


def resolve_heads(heads: Mapping[str, int]) -> dict[str, HeadSpec]:
    """Plain {name: channels} -> HeadSpecs, taking each name's prior, bias and branch from the task that
    declares it (a name no task declares gets a plain head)."""
    specs = {}
    for name, channels in heads.items():
        spec = HeadSpec(name, int(channels))
        for task_name in TASKS.names():
            cls = TASKS.get(task_name)
            if name in cls.heatmap_heads or name in cls.head_biases or name in cls.head_branches:
                spec = cls.head_spec(name, int(channels))
                break
        specs[name] = spec
    return specs


__all__ = ["TASKS", "Task", "CornerNetTask", "CtdetTask", "DddTask", "MultiPoseTask", "build_task", "guess_task",
           "resolve_heads", "task_options"]
