"""The original CenterNet's checkpoint layout against ours, and loading its files (SPEC 8).

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
A model-zoo name (``"ctdet_coco_dla_2x"``) resolves through :mod:`.download` (the torch hub cache,
downloading when absent).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..models.backbones.dla import DLA
from ..models.backbones.hourglass import HOURGLASS_HEAD_LAYERS, Hourglass
from ..models.backbones.resnet import ResNet
from .catalogue import is_known
from .download import resolve_weights
from .fit import CheckpointMismatchError, LoadReport, fit_state, is_optional
from .official_cornernet import cornernet_official_key, is_cornernet_state
from .read import StateSource, read_state

IMAGENET_CLASSES = 1000  # the ImageNet classifier the original DLA keeps as ``base.fc``
ZOO_HINT = "pass a local file instead"


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
def _is_name(source: Any) -> bool:
    return isinstance(source, str) and is_known(source) and not Path(source).expanduser().is_file()


def load_official_checkpoint(model: nn.Module, source: StateSource, strict: bool = True,
                             cache: str | os.PathLike[str] | None = None, progress: bool = True) -> LoadReport:
    """Load an original CenterNet checkpoint, or an original CornerNet one (a bare state dict, recognised by
    its corner branch and head names such as ``tl_cnvs``), into ``model`` (built by ``build_model`` for the
    same arch and heads: ``cornernet`` with CornerNet's heads for the latter). ``source`` is a state dict, a
    file, or a model-zoo name (see :func:`.catalogue.known_weights`), found in the torch hub cache or
    downloaded there (a missing file's error says where to put it). ``strict`` raises
    :class:`CheckpointMismatchError` unless every tensor fits; otherwise the fitting tensors are loaded and
    the rest reported."""
    if _is_name(source):
        source = resolve_weights(source, cache=cache, progress=progress, hint=ZOO_HINT)
    state, epoch = read_state(source)
    ours = model.state_dict()
    to_ours = official_names(model, is_cornernet_state(state))
    to_name = {key: name for name, key in to_ours.items()}
    unused = _unused_official(model)
    fitting, report = fit_state(ours, state, key_of=to_ours.get, name_of=to_name.__getitem__,
                                ignore=lambda name: name in unused and name not in to_ours, optional=is_optional)
    report.epoch = epoch
    if strict and not report.ok:
        arch = getattr(model, "arch", type(model).__name__)
        raise CheckpointMismatchError(
            f"checkpoint does not fit {arch!r} ({len(fitting)} of {len(ours)} tensors fit): {report.describe()}"
        )
    model.load_state_dict(fitting, strict=False)
    return report
