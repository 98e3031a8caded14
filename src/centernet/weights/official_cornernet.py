"""Names of the original CornerNet checkpoint (princeton-vl/CornerNet, ``models/CornerNet.py`` on ``kp``)
against ours. The original saves a bare state dict with keys prefixed ``module.``:

* backbone ``pre``, ``kps``, ``cnvs``, ``inters``, ``inters_``, ``cnvs_`` -> ``backbone.*`` (the hourglass
  names of :mod:`.official`)
* corner branches ``tl_cnvs.<s>.*``, ``br_cnvs.<s>.*`` -> ``branches.<s>.tl.*``, ``branches.<s>.br.*``
  (a :class:`~centernet.models.layers.corner_pool.CornerPoolModule` keeps the original's inner names)
* heads ``<head>s.<s>.0.conv.*`` / ``<head>s.<s>.1.*`` -> ``heads.<s>.<head>.0.*`` / ``heads.<s>.<head>.2.*``
  for ``<head>`` in tl_heat, br_heat, tl_tag, br_tag, tl_regr, br_regr
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

from torch import Tensor

from ..models.backbones.hourglass import HOURGLASS_HEAD_LAYERS, HOURGLASS_ROOTS

OFFICIAL_PREFIX = "module."
CORNER_HEADS = ("tl_heat", "br_heat", "tl_tag", "br_tag", "tl_regr", "br_regr")
# our branch name -> the original's ModuleList
BRANCHES = {"tl": "tl_cnvs", "br": "br_cnvs"}
_BRANCH_OF = {official: ours for ours, official in BRANCHES.items()}
_HEAD_OF = {f"{head}s": head for head in CORNER_HEADS}  # the original pluralises: tl_heats, tl_tags, ...
_HEAD_LAYER_OF = {official: ours for ours, official in HOURGLASS_HEAD_LAYERS.items()}
# top-level names only CornerNet's files have (its corner branches and heads)
CORNERNET_ROOTS = frozenset(BRANCHES.values()) | frozenset(_HEAD_OF)


def is_cornernet_state(names: Iterable[str]) -> bool:
    """Whether tensor ``names`` (with or without ``module.``) are laid out as the original CornerNet's."""
    return any(name.removeprefix(OFFICIAL_PREFIX).partition(".")[0] in CORNERNET_ROOTS for name in names)


def cornernet_key_map(official_key: str) -> str | None:
    """Our state-dict name for the original's ``official_key`` (with or without ``module.``), or None if
    the name is not one of the original CornerNet's."""
    key = official_key.removeprefix(OFFICIAL_PREFIX)
    root, _, rest = key.partition(".")
    if not rest:
        return None
    if root in HOURGLASS_ROOTS:
        return f"backbone.{key}"
    if root in _BRANCH_OF:
        stack, _, inner = rest.partition(".")
        return f"branches.{stack}.{_BRANCH_OF[root]}.{inner}" if stack.isdigit() and inner else None
    if root in _HEAD_OF:
        parts = rest.split(".")
        stack, layer, param = parts[0], ".".join(parts[1:-1]), parts[-1]
        if not stack.isdigit() or layer not in _HEAD_LAYER_OF:
            return None
        return f"heads.{stack}.{_HEAD_OF[root]}.{_HEAD_LAYER_OF[layer]}.{param}"
    return None


def cornernet_official_key(key: str, prefix: str = OFFICIAL_PREFIX) -> str | None:
    """The original's name (with ``prefix``) of our state-dict entry ``key``, or None if it has none;
    the inverse of :func:`cornernet_key_map`."""
    root, _, rest = key.partition(".")
    if root == "backbone" and rest.split(".")[0] in HOURGLASS_ROOTS:
        return prefix + rest
    if root == "branches":
        stack, branch, inner = (rest.split(".", 2) + ["", ""])[:3]
        if stack.isdigit() and branch in BRANCHES and inner:
            return f"{prefix}{BRANCHES[branch]}.{stack}.{inner}"
        return None
    if root == "heads":
        parts = rest.split(".")
        if len(parts) == 4 and parts[0].isdigit() and parts[1] in CORNER_HEADS and parts[2] in HOURGLASS_HEAD_LAYERS:
            stack, head, layer, param = parts
            return f"{prefix}{head}s.{stack}.{HOURGLASS_HEAD_LAYERS[layer]}.{param}"
    return None


def from_cornernet_official(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The original's state dict under our names. Raises ValueError naming the tensors it cannot place."""
    out: dict[str, Tensor] = {}
    unknown = []
    for name, value in state.items():
        key = cornernet_key_map(name)
        if key is None:
            unknown.append(name)
        else:
            out[key] = value
    if unknown:
        shown = ", ".join(unknown[:10]) + (f", ... and {len(unknown) - 10} more" if len(unknown) > 10 else "")
        raise ValueError(f"{len(unknown)} tensors are not CornerNet's: {shown}")
    return out


def to_cornernet_official(state: Mapping[str, Tensor], prefix: str = OFFICIAL_PREFIX) -> dict[str, Tensor]:
    """Our state dict under the original's names. Raises ValueError naming the tensors it has no name for."""
    out: dict[str, Tensor] = {}
    unknown = []
    for key, value in state.items():
        name = cornernet_official_key(key, prefix)
        if name is None:
            unknown.append(key)
        else:
            out[name] = value
    if unknown:
        raise ValueError(f"{len(unknown)} tensors have no CornerNet name: {', '.join(unknown[:10])}")
    return out
