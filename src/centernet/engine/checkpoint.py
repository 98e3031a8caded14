"""Checkpoints that carry their configuration, so eval / predict / export need only the file.

A checkpoint holds tensors and plain data only (the config and history as dicts / lists / numbers /
strings, optimizer state as tensors), is read with ``weights_only=True`` (never running code from the
file), and is written atomically and durably: temp file, fsync, rename, fsync of the folder.
"""
from __future__ import annotations

import os
from collections import Counter, OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any, Callable

import numpy as np
import torch
from torch import Tensor, nn

from ..config import ExperimentConfig
from ..weights.fit import CheckpointMismatchError, fit_state
from ..weights.read import FORMAT, CheckpointFileError, read_checkpoint

PLAIN_SCALARS = (bool, int, float, str, type(None))
MAX_LISTED = 5  # tensors named per kind of mismatch

# FORMAT, read_checkpoint and the errors live in centernet.weights (the reader of every weights file); they
# are named here too, beside the writer of the files they read
__all__ = ["FORMAT", "CheckpointFileError", "CheckpointMismatchError", "save_checkpoint", "read_checkpoint",
           "checkpoint_config", "load_model_state", "atomic_write", "finite_state", "plain",
           "unwrap"]


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside DistributedDataParallel / torch.compile wrappers."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


# ------------------------------------------------------------------------------------------------ writing
def plain(value: Any, where: str = "checkpoint") -> Any:
    """``value`` with NumPy scalars turned into Python numbers; raises ``TypeError`` for anything that
    ``weights_only=True`` could not read back (so an unreadable checkpoint is never written)."""
    if isinstance(value, Tensor):
        return value.detach()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, PLAIN_SCALARS):
        return value
    if isinstance(value, Counter):  # MultiStepLR milestones
        return Counter({plain(k, where): plain(v, where) for k, v in value.items()})
    if isinstance(value, Mapping):
        items = {k: plain(v, f"{where}[{k!r}]") for k, v in value.items()}
        if not isinstance(value, OrderedDict):
            return items
        ordered = OrderedDict(items)
        if hasattr(value, "_metadata"):  # a state dict's module versions (read by load_state_dict)
            ordered._metadata = plain(value._metadata, where)  # type: ignore[attr-defined]
        return ordered
    if isinstance(value, (list, tuple)):
        return type(value)(plain(v, f"{where}[{i}]") for i, v in enumerate(value))
    raise TypeError(f"cannot store a {type(value).__name__} at {where} in a checkpoint "
                    "(tensors and plain data only)")


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Write ``path`` through ``write(file)`` so that it is either the old or the complete new file, even
    after a crash or power loss: a temp file in the same folder, fsync, rename over ``path``, fsync folder.
    A failed write (a full disk: an OSError, or torch.save's RuntimeError) is one OSError naming the file and
    saying what was kept."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as err:
        tmp.unlink(missing_ok=True)
        reason = (getattr(err, "strerror", None) or str(err).strip().splitlines()[-1] or type(err).__name__)
        kept = f"the earlier {path.name} is unchanged" if path.exists() else "nothing was written there"
        raise OSError(f"could not write {path} ({reason}; is the disk full?): {kept}") from err
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a no-op where folders cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_checkpoint(path: str | Path, cfg: ExperimentConfig, model: nn.Module, **state: Any) -> Path:
    """Write {format, config, model, **state} atomically and durably (see :func:`atomic_write`)."""
    payload = plain({"format": FORMAT, "config": cfg.to_dict(), "model": unwrap(model).state_dict(), **state})
    return atomic_write(path, lambda f: torch.save(payload, f))


def finite_state(model: nn.Module) -> bool:
    """Whether every floating-point parameter and buffer of ``model`` is finite."""
    tensors = [t for t in unwrap(model).state_dict().values() if t.is_floating_point()]
    return all(bool(torch.isfinite(t).all()) for t in tensors)


# ------------------------------------------------------------------------------------------------ reading
def checkpoint_config(payload: dict[str, Any], path: str | Path) -> ExperimentConfig:
    """The :class:`ExperimentConfig` stored in a checkpoint's ``payload`` (errors name ``path``)."""
    try:
        return ExperimentConfig.from_dict(payload["config"])
    except (ValueError, TypeError) as err:
        raise CheckpointFileError(f"{path}: its config cannot be read: {err}") from None


def load_model_state(model: nn.Module, state: Mapping[str, Tensor], path: str | Path) -> None:
    """``model.load_state_dict(state)``, or :class:`CheckpointMismatchError` naming ``path`` and the
    missing, unexpected and mis-shaped tensors (a checkpoint of another architecture or task)."""
    _, report = fit_state(model.state_dict(), state)
    if not report.ok:
        arch = getattr(model, "arch", type(model).__name__)
        raise CheckpointMismatchError(f"{path}: the weights do not fit the {arch!r} model of its config "
                                      f"(another architecture or task?): {report.describe(MAX_LISTED)}")
    model.load_state_dict(state)
