"""Loading the original CenterNet model zoo and ImageNet backbone weights (SPEC 8).

The original saves ``{'epoch': int, 'state_dict': {...}}`` with its own module names (prefixed ``module.``
when trained with DataParallel). Our modules keep the original structure, so converting is a renaming:

* ResNet (res/resdcn): ``conv1.*``, ``bn1.*``, ``layerN.*`` -> ``backbone.*``; ``deconv_layers.*`` -> ``neck.*``
* DLA: ``base.*`` -> ``backbone.*``; ``dla_up.*``, ``ida_up.*`` -> ``neck.*``; ``base.fc.*`` (the ImageNet
  classifier the original keeps but never runs) is ignored on load and written as zeros on export
* Hourglass: ``pre``, ``kps``, ``cnvs``, ``inters``, ``inters_``, ``cnvs_`` -> ``backbone.*``
* heads: ``<head>.*`` -> ``heads.0.<head>.*``; hourglass ``<head>.<s>.0.conv.*`` / ``<head>.<s>.1.*`` ->
  ``heads.<s>.<head>.0.*`` / ``heads.<s>.<head>.2.*``

The original CornerNet saves a bare state dict (``module.`` keys); a file whose names include CornerNet's
corner branches or heads (``tl_cnvs``, ``tl_heats``, ...) is read with :mod:`.official_cornernet`'s names.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Union

import torch
from torch import Tensor, nn

from .backbones.dla import DLA
from .backbones.hourglass import HOURGLASS_HEAD_LAYERS, HOURGLASS_ROOTS, Hourglass  # noqa: F401 (re-exported)
from .backbones.resnet import ResNet
from .weights_file import load_weights_file
from .official_cornernet import cornernet_official_key, is_cornernet_state

StateSource = Union[str, "os.PathLike[str]", Mapping[str, Any]]

WRAPPER_PREFIXES = ("module.", "model.")  # DataParallel / common training wrappers
IMAGENET_CLASSES = 1000  # the ImageNet classifier the original DLA keeps as ``base.fc``
CLASSIFIER_PREFIXES = ("fc.", "head.fc.")  # torchvision / original DLA, timm
MAX_LISTED = 10  # tensors named per category in error messages


class CheckpointMismatchError(ValueError):
    """A checkpoint's tensors do not fit the model (missing, unexpected or mis-shaped tensors)."""


@dataclass
class LoadReport:
    """What a load did. Names are the file's (official) names except ``loaded``, which are ours."""

    loaded: list[str] = field(default_factory=list)
    missing: list[tuple[str, tuple[int, ...]]] = field(default_factory=list)  # (name, model shape)
    unexpected: list[tuple[str, tuple[int, ...]]] = field(default_factory=list)  # (name, file shape)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)  # file, model
    ignored: list[str] = field(default_factory=list)  # known-unused tensors (classifiers)
    epoch: int | None = None

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def describe(self, max_listed: int = MAX_LISTED) -> str:
        """The problems (and ignored tensors), each list cut to ``max_listed`` names."""
        parts = []
        if self.missing:
            parts.append(_listing("missing from the file", [f"{k} {list(s)}" for k, s in self.missing], max_listed))
        if self.unexpected:
            parts.append(_listing("unexpected in the file", [f"{k} {list(s)}" for k, s in self.unexpected],
                                  max_listed))
        if self.mismatched:
            parts.append(_listing("mis-shaped", [f"{k}: file {list(f)} vs model {list(m)}"
                                                 for k, f, m in self.mismatched], max_listed))
        if self.ignored:
            parts.append(f"{len(self.ignored)} unused tensors ignored ({', '.join(self.ignored[:max_listed])})")
        return "; ".join(parts) or "no problems"

    def __str__(self) -> str:
        return f"{len(self.loaded)} tensors loaded; {self.describe()}"


def _listing(title: str, items: list[str], max_listed: int) -> str:
    shown = ", ".join(items[:max_listed])
    more = f", ... and {len(items) - max_listed} more" if len(items) > max_listed else ""
    return f"{len(items)} {title}: {shown}{more}"


# ----------------------------------------------------------------------------------------------- reading
def read_checkpoint(source: StateSource) -> tuple[dict[str, Tensor], int | None]:
    """Tensors of a checkpoint (``{'epoch', 'state_dict'}``, ``{'model': ...}`` or a bare state dict, in
    the zip or the legacy pre-1.6 format) with wrapper prefixes such as ``module.`` stripped, and its epoch.

    Files are read by :func:`load_weights_file` (``weights_only=True``: enough for the original's files,
    legacy format included); a file that pickles other objects is refused, never unpickled.
    """
    obj: Any = source if isinstance(source, Mapping) else load_weights_file(source)
    epoch = None
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), Mapping):
                epoch = obj.get("epoch")
                obj = obj[key]
                break
    if not isinstance(obj, Mapping):
        where = "" if isinstance(source, Mapping) else f"{source}: "
        raise ValueError(f"{where}checkpoint holds a {type(obj).__name__}, not a state dict")
    state = {_strip_wrappers(k): v for k, v in obj.items() if isinstance(v, Tensor)}
    return state, (int(epoch) if isinstance(epoch, int) else None)


def _strip_wrappers(key: str) -> str:
    stripped = True
    while stripped:
        stripped = False
        for prefix in WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key, stripped = key[len(prefix):], True
    return key


# ----------------------------------------------------------------------------------------------- naming
def _family(model: nn.Module) -> str:
    backbone = getattr(model, "backbone", None)
    for cls, name in ((ResNet, "resnet"), (DLA, "dla"), (Hourglass, "hourglass")):
        if isinstance(backbone, cls):
            return name
    raise ValueError(f"no official naming for {getattr(model, 'arch', type(model).__name__)!r}")


def official_name(model: nn.Module, key: str) -> str:
    """The original code's name (without ``module.``) of our state-dict entry ``key``."""
    family = _family(model)
    root, _, rest = key.partition(".")
    if root == "backbone":
        return f"base.{rest}" if family == "dla" else rest
    if root == "neck":
        return rest
    if root == "heads":
        stack, head, index, param = rest.split(".", 3)
        if family == "hourglass":  # heads.<s>.<head>.{0,2}.<p> -> <head>.<s>.{0.conv,1}.<p>
            layer = HOURGLASS_HEAD_LAYERS[index] if len(model.heads[int(stack)][head]) > 1 else "1"
            return f"{head}.{stack}.{layer}.{param}"
        if len(model.heads[int(stack)][head]) == 1:  # head_conv <= 0: the original's bare conv
            return f"{head}.{param}"
        return f"{head}.{index}.{param}"
    raise ValueError(f"no official name for {key!r}")


def _unused_official(model: nn.Module) -> dict[str, tuple[int, ...]]:
    """Tensors the original's model holds but never uses, that we do not build: name -> shape."""
    if _family(model) != "dla":
        return {}
    width = model.backbone.channels[-1]
    return {"base.fc.weight": (IMAGENET_CLASSES, width, 1, 1), "base.fc.bias": (IMAGENET_CLASSES,)}


def _is_cornernet_model(model: nn.Module) -> bool:
    """Whether every tensor of ``model`` has a name in the original CornerNet (corner branches and heads)."""
    keys = list(model.state_dict())
    return any(k.startswith("branches.") for k in keys) and all(cornernet_official_key(k, "") for k in keys)


def official_names(model: nn.Module, cornernet: bool) -> dict[str, str]:
    """{the original's name (no ``module.``): our key} for every tensor of ``model``, in the original
    CornerNet's layout if ``cornernet``, else in CenterNet's. A tensor the layout has no name for (e.g. a
    corner branch in CenterNet's) keeps our key, so a load reports it as missing."""
    names = {}
    for key in model.state_dict():
        if cornernet:
            name = cornernet_official_key(key, "")
        else:
            name = None if key.startswith("branches.") else official_name(model, key)
        names[name or key] = key
    return names


def to_official_state_dict(model: nn.Module, prefix: str = "module.") -> dict[str, Tensor]:
    """Our state dict under the original's names (as in the released files: CenterNet's, or CornerNet's for a
    model with CornerNet's branches and heads), unused tensors as zeros."""
    state = model.state_dict()
    names = {key: name for name, key in official_names(model, _is_cornernet_model(model)).items()}
    out = {prefix + names[k]: v.detach().clone() for k, v in state.items()}
    for name, shape in _unused_official(model).items():
        out[prefix + name] = torch.zeros(shape)
    return out


# ----------------------------------------------------------------------------------------------- loading
def _is_optional(key: str) -> bool:
    return key.endswith("num_batches_tracked")  # absent from files of old PyTorch versions


def load_official_checkpoint(model: nn.Module, path_or_state: StateSource, strict: bool = True) -> LoadReport:
    """Load an original CenterNet checkpoint, or an original CornerNet one (a bare state dict, recognised by
    its corner branch and head names such as ``tl_cnvs``), into ``model`` (built by ``build_model`` for the
    same arch and heads: ``cornernet`` with CornerNet's heads for the latter). ``strict`` raises
    :class:`CheckpointMismatchError` unless every tensor fits; otherwise the fitting tensors are loaded and
    the rest reported."""
    state, epoch = read_checkpoint(path_or_state)
    ours = model.state_dict()
    to_ours = official_names(model, is_cornernet_state(state))
    unused = _unused_official(model)
    report = LoadReport(epoch=epoch)
    fitting: dict[str, Tensor] = {}
    for name, value in state.items():
        key = to_ours.get(name)
        if key is None:
            if name in unused:
                report.ignored.append(name)
            else:
                report.unexpected.append((name, tuple(value.shape)))
        elif value.shape != ours[key].shape:
            report.mismatched.append((name, tuple(value.shape), tuple(ours[key].shape)))
        else:
            fitting[key] = value
    for name, key in to_ours.items():
        if name not in state and not _is_optional(key):
            report.missing.append((name, tuple(ours[key].shape)))
    if strict and not report.ok:
        arch = getattr(model, "arch", type(model).__name__)
        raise CheckpointMismatchError(
            f"checkpoint does not fit {arch!r} ({len(fitting)} of {len(ours)} tensors fit): {report.describe()}"
        )
    model.load_state_dict(fitting, strict=False)
    report.loaded = sorted(fitting)
    return report


def load_pretrained_backbone(model: nn.Module, path_or_state: StateSource) -> LoadReport:
    """Load ImageNet weights into ``model.backbone`` (or ``model`` itself if it has none).

    Takes the original files (``resnet18-5c106cde.pth``, ``dla34-ba72cf86.pth``), torchvision's and timm's
    (same names for these networks), with the classifier (``fc.*``) dropped. Unused and missing tensors are
    reported (timm's DLA lacks the original's never-used ``project`` layers); raises
    :class:`CheckpointMismatchError` only if no tensor fits.
    """
    state, epoch = read_checkpoint(path_or_state)
    target = getattr(model, "backbone", model)
    ours = target.state_dict()
    report = LoadReport(epoch=epoch)
    fitting: dict[str, Tensor] = {}
    misfits: set[str] = set()
    for name, value in state.items():
        if name.startswith(CLASSIFIER_PREFIXES):
            report.ignored.append(name)
            continue
        key = name if name in ours else name.removeprefix("backbone.")  # our own checkpoints
        if key not in ours:
            report.unexpected.append((name, tuple(value.shape)))
        elif value.shape != ours[key].shape:
            report.mismatched.append((name, tuple(value.shape), tuple(ours[key].shape)))
            misfits.add(key)
        else:
            fitting[key] = value
    report.missing = [(k, tuple(v.shape)) for k, v in ours.items()
                      if k not in fitting and k not in misfits and not _is_optional(k)]
    if not fitting:
        raise CheckpointMismatchError(f"no tensor of the file fits the backbone: {report.describe()}")
    target.load_state_dict(fitting, strict=False)
    report.loaded = sorted(fitting)
    return report
