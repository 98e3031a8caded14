"""Weights by name into models: the original model zoo's configurations (``"ctdet_coco_dla_2x"``), ImageNet
backbones (``--pretrained imagenet``) and the initial weights of a fine-tune (``--weights``).

Names resolve through :mod:`.download` (the torch hub cache, downloading when absent); every failure is one
line saying where to put the file. A zoo entry's configuration comes from the catalogue
(:mod:`.catalogue`: architecture, task, classes, input size); its heads are the task's. Every loader keeps
the tensors that fit (:func:`.fit.fit_state`) and reports the rest.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from torch import nn

from ..config import ExperimentConfig
from ..tasks import TASKS
from .catalogue import CATEGORY_IDS, is_known, known_weights, weights_info
from .download import resolve_pretrained, resolve_weights
from .fit import CheckpointMismatchError, LoadReport, fit_state, is_optional, load_fitting
from .official import load_official_checkpoint
from .read import FORMAT, StateSource, load_weights_file, read_state

CLASSIFIER_PREFIXES = ("fc.", "head.fc.")  # torchvision / original DLA, timm


def official_config(name: str) -> ExperimentConfig:
    """The configuration of model-zoo entry ``name``: architecture, task, classes (names and dataset
    category ids), input size and normalisation of the original."""
    info = weights_info(name)
    if info.kind != "detector":
        raise ValueError(f"{name} holds a backbone's ImageNet weights, not a detector: use it with --pretrained")
    if info.task not in TASKS.names():
        raise ValueError(f"{name} is a {info.task!r} model; this version has no such task "
                         f"(tasks: {', '.join(TASKS.names())})")
    cfg = ExperimentConfig()
    cfg.model.arch, cfg.model.weights = info.arch, name
    if info.input_size is not None:
        height, width = info.input_size
        cfg.data.input_size = (width, height)
    cfg.data.mean, cfg.data.std = tuple(info.mean), tuple(info.std)
    cfg.task.name, cfg.task.num_classes = info.task, info.num_classes
    cfg.task.class_names = list(info.class_names)
    cfg.task.cat_ids = list(CATEGORY_IDS.get(info.classes or "", ()))
    return cfg


def detector_names() -> list[str]:
    """The model-zoo names (``centernet predict NAME ...``)."""
    return known_weights("detector")


def is_detector_name(text: str) -> bool:
    return is_known(text) and weights_info(text).kind == "detector"


# ----------------------------------------------------------------------------------------------- backbones
def resolve_backbone(cfg: ExperimentConfig, progress: bool = True) -> Path | None:
    """The file of ``model.pretrained`` (``imagenet``: the architecture's ImageNet weights, downloaded
    into the cache when absent; ``none``: None); errors are one line offering ``--pretrained none``."""
    return resolve_pretrained(cfg.model.pretrained, cfg.model.arch, progress=progress)


def load_pretrained_backbone(model: nn.Module, path_or_state: StateSource) -> LoadReport:
    """Load ImageNet weights into ``model.backbone`` (or ``model`` itself if it has none).

    Takes the original files (``resnet18-5c106cde.pth``, ``dla34-ba72cf86.pth``), torchvision's and timm's
    (same names for these networks), with the classifier (``fc.*``) dropped. Unused and missing tensors are
    reported (timm's DLA lacks the original's never-used ``project`` layers); raises
    :class:`CheckpointMismatchError` only if no tensor fits.
    """
    state, epoch = read_state(path_or_state)
    target = getattr(model, "backbone", model)
    ours = target.state_dict()

    def key_of(name: str) -> str:  # our own checkpoints name the backbone's tensors "backbone.*"
        return name if name in ours else name.removeprefix("backbone.")

    fitting, report = fit_state(ours, state, key_of=key_of, optional=is_optional,
                                ignore=lambda name: name.startswith(CLASSIFIER_PREFIXES))
    report.epoch = epoch
    if not fitting:
        raise CheckpointMismatchError(f"no tensor of the file fits the backbone: {report.describe()}")
    target.load_state_dict(fitting, strict=False)
    return report


def load_backbone(model: nn.Module, path: Path) -> str:
    """Load ImageNet weights from ``path`` into the model's backbone; returns a one-line report."""
    report = load_pretrained_backbone(model, path)
    return f"pretrained backbone {path.name}: {report}"


# ----------------------------------------------------------------------------------------------- initial weights
def resolve_initial_weights(source: str, progress: bool = True) -> Path:
    """The file of ``model.weights``: a path, or a known name found in / downloaded to the cache."""
    return resolve_weights(source, progress=progress, hint="train without them (drop --weights)")


def load_initial_weights(model: nn.Module, path: Path) -> str:
    """Load a whole model's weights from ``path`` (a centernet checkpoint, or an original CenterNet file):
    every tensor whose name and shape fit; the rest (e.g. a heatmap head for another class count) stay
    fresh. Returns a one-line report; a file of which nothing fits is a ``ValueError``."""
    payload = load_weights_file(path)
    if isinstance(payload, Mapping) and payload.get("format") == FORMAT:
        report = load_fitting(model, payload["model"])
    else:
        report = load_official_checkpoint(model, path, strict=False)
    if not report.loaded:
        raise ValueError(f"{path}: no tensor fits the {getattr(model, 'arch', 'model')!r} model "
                         f"({report.describe(3)})")
    return f"initial weights {path.name}: {report}"


__all__ = ["CLASSIFIER_PREFIXES", "detector_names", "is_detector_name", "load_backbone",
           "load_initial_weights", "load_pretrained_backbone", "official_config", "resolve_backbone",
           "resolve_initial_weights"]
