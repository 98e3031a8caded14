"""Task registry: a task name -> its class (ctdet, multi_pose, ...)."""
from __future__ import annotations

from ..registry import Registry
from .base import Task
from .ctdet import CtdetTask
from .pose import MultiPoseTask

TASKS: Registry[type[Task]] = Registry("task")
TASKS.register("ctdet")(CtdetTask)
TASKS.register("multi_pose")(MultiPoseTask)


def build_task(name: str, num_classes: int, weights: dict[str, float] | None = None, max_objects: int = 128,
               max_detections: int = 100, **options) -> Task:
    """Instantiate task ``name`` with explicit arguments (``options`` are task-specific)."""
    return TASKS.get(name)(num_classes=num_classes, weights=weights, max_objects=max_objects,
                           max_detections=max_detections, **options)


__all__ = ["TASKS", "Task", "CtdetTask", "MultiPoseTask", "build_task"]
