"""CenterNet ("Objects as Points") in pure PyTorch: detectors, tasks, training, evaluation, export.

Names are imported on first use, so ``centernet --help`` never loads torch.
"""
from __future__ import annotations

import importlib
import importlib.machinery
import sys
import types
import warnings
from typing import Any

__all__ = ["CenterNet", "Result", "build_model", "load_official_checkpoint", "load_pretrained_backbone"]


def build_model(arch: str, heads, head_conv: int | None = None):
    """Build architecture ``arch`` with ``heads``: plain {name: channels} take each head's initial prior and
    branch from the task that declares it (``hm`` starts at the heatmap prior, ...); HeadSpecs pass through.
    The model's forward returns a list with one {head: [B, n, H/4, W/4]} dict per stack."""
    from collections.abc import Mapping

    from .models import build_model as build
    from .tasks import resolve_heads

    if isinstance(heads, Mapping) and all(isinstance(v, int) for v in heads.values()):
        heads = resolve_heads(heads)
    return build(arch, heads, head_conv)


# Modules that moved (old path -> new path). The old paths keep working for one release, with a
# DeprecationWarning: an alias module forwards every attribute to the new one (the same objects).
MOVED_MODULES: dict[str, str] = {
    "centernet.targets": "centernet.ops.heatmap",
    "centernet.decode": "centernet.ops.decode",
    "centernet.losses": "centernet.ops.losses",
    "centernet.postprocess": "centernet.ops.boxes",  # to_image_coords: centernet.ops.transforms
    "centernet.visualize": "centernet.viz.detections",
    "centernet.visualize_3d": "centernet.viz.boxes3d",
    "centernet.engine.run_reports": "centernet.engine.reports",
    "centernet.evaluation.kitti_labels": "centernet.data.kitti_labels",
    "centernet.hub": "centernet.weights.download",
    "centernet.pretrained": "centernet.weights.pretrained",
    "centernet.models.weights_file": "centernet.weights.read",
    "centernet.models.official": "centernet.weights.official",
    "centernet.models.official_cornernet": "centernet.weights.official_cornernet",
    "centernet.builders": "centernet.app.builders",
    "centernet.runs": "centernet.app.runs",
    "centernet.demo": "centernet.app.demo",
}


class _MovedModule(types.ModuleType):
    """A deprecated import path: attributes come from the module that replaced it."""

    __moved_to__: str

    def __getattr__(self, name: str) -> Any:
        return getattr(importlib.import_module(self.__moved_to__), name)

    def __dir__(self) -> list[str]:
        return dir(importlib.import_module(self.__moved_to__))


class _MovedModuleFinder:
    """Finder and loader (``sys.meta_path`` protocol) of the old paths in :data:`MOVED_MODULES`."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        return importlib.machinery.ModuleSpec(fullname, self) if fullname in MOVED_MODULES else None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        new = MOVED_MODULES[spec.name]
        # stacklevel 2: the importing code (the warnings module skips importlib's own frames)
        warnings.warn(f"{spec.name} has moved to {new}; the old path will be removed in the next release",
                      DeprecationWarning, stacklevel=2)
        module = _MovedModule(spec.name, f"deprecated alias of {new}")
        module.__moved_to__ = new
        importlib.import_module(new)  # a broken target fails here, at the import
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        pass


if not any(isinstance(f, _MovedModuleFinder) for f in sys.meta_path):
    sys.meta_path.insert(0, _MovedModuleFinder())


def __getattr__(name: str) -> Any:
    if name in ("CenterNet", "Result"):
        from . import api

        return getattr(api, name)
    if name == "load_official_checkpoint":  # also takes model-zoo names ("ctdet_coco_dla_2x")
        from .weights.official import load_official_checkpoint

        return load_official_checkpoint
    if name == "load_pretrained_backbone":
        from .weights.pretrained import load_pretrained_backbone

        return load_pretrained_backbone
    if f"{__name__}.{name}" in MOVED_MODULES:  # ``centernet.targets`` as an attribute
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'centernet' has no attribute {name!r}")
