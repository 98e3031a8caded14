"""Run folders: where a training run writes, so that no run overwrites or loses another's work.

* A new run goes to a fresh numbered folder (``runs/train``, ``runs/train2``, ...) unless the user names
  one (``--out``, ``--set train.out_dir=...`` or a ``--config`` file); a named folder that already holds a run
  is refused unless ``exist_ok`` (the new run then replaces it).
* A folder is locked (:data:`LOCK_FILE`) while a process trains in it: a second training there is refused.
* ``--resume PATH`` continues in PATH's own folder with the checkpoint's own configuration when PATH is the
  run's ``last.pth``; from any other checkpoint (``best.pth``, a copy) it continues in a new run folder, so
  that the run's own ``last.pth`` and log are never rewound. Overrides that
  only steer the rest of the run apply (:data:`RESUMABLE`: epochs, learning rate schedule, validation,
  devices, data paths); any other change is refused with a message, never recorded while ignored.
* ``config.json`` and ``log.jsonl`` are strict JSON (a non-finite number is written as ``null``), and
  ``log.jsonl`` holds exactly one record per epoch of the checkpoint it continues from.
"""
from __future__ import annotations

import copy
import json
import math
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from ..config import RANGES, ExperimentConfig, override
from ..data.transforms import output_side
from ..data.verify import VERIFY_MODES
from ..weights.read import read_checkpoint
from . import distributed as dist_utils
from .checkpoint import atomic_write, checkpoint_config
from .recipe import OPTIMIZERS

#: files whose presence means a folder holds a run
RUN_FILES = ("last.pth", "best.pth", "log.jsonl", "config.json")
#: config fields an override may change when resuming (the rest are refused)
RESUMABLE = frozenset({
    "train.epochs", "train.lr", "train.lr_steps", "train.lr_factor", "train.val_interval",
    "train.max_steps_per_epoch", "train.max_bad_steps", "train.device", "train.amp", "train.sync_bn",
    "data.num_workers", "data.verify", "data.train", "data.train_images", "data.val", "data.val_images",
    "data.train_split", "data.val_split", "train.patience", "train.log_every", "train.flops", "train.reports",
})
#: config fields that hold paths, stored absolute so that a run resumes from any working folder
PATH_FIELDS = (("data", "train"), ("data", "val"), ("data", "train_images"), ("data", "val_images"),
               ("train", "out_dir"))
#: fields that may be a path or a name (``imagenet``, a weights name): made absolute only when the file exists
FILE_OR_NAME_FIELDS = (("model", "pretrained"), ("model", "weights"))
MAX_NUMBERED = 10_000  # runs/train .. runs/train9999
#: the file that marks a run folder as in use by a training process
LOCK_FILE = "train.lock"
#: the checkpoint a run continues from in its own folder
LAST = "last.pth"


class RunFolderError(ValueError):
    """A run folder or resume request that would overwrite work or silently ignore a setting."""


# ------------------------------------------------------------------------------------------ new runs
def run_files(folder: str | Path) -> list[str]:
    """The run files (:data:`RUN_FILES`) present in ``folder``."""
    folder = Path(folder)
    return [name for name in RUN_FILES if (folder / name).exists()]


def out_dir_given(assignments: list[str]) -> bool:
    """Whether ``section.key=value`` overrides name ``train.out_dir``."""
    return any(item.split("=", 1)[0].strip() == "train.out_dir" for item in assignments)


def claim_run_dir(out_dir: str | Path, explicit: bool, exist_ok: bool = False) -> Path:
    """The folder a new run writes to (created). ``explicit``: the user named ``out_dir``, which is refused
    if it holds a run (unless ``exist_ok``); otherwise the first free one of ``out_dir``, ``out_dir2``, ...
    Under torchrun, rank 0 decides and every process gets its answer."""
    return Path(_rank0_decides(lambda: str(_claim(Path(out_dir), explicit, exist_ok))))


def _rank0_decides(decide: Callable[[], Any]) -> Any:
    """``decide()`` on rank 0, its answer (or its RunFolderError, raised) in every process under torchrun."""
    answer: list[Any] = [None]
    if dist_utils.rank() == 0:
        try:
            answer[0] = decide()
        except RunFolderError as err:
            answer[0] = err
    if dist_utils.is_distributed():
        torch.distributed.broadcast_object_list(answer, src=0)
    if isinstance(answer[0], BaseException):
        raise answer[0]
    return answer[0]


def _claim(out_dir: Path, explicit: bool, exist_ok: bool) -> Path:
    if out_dir.exists() and not out_dir.is_dir():
        raise RunFolderError(f"run folder {out_dir} is a file")
    if explicit:
        present = run_files(out_dir)
        if present and not exist_ok:
            raise RunFolderError(f"{out_dir} already holds a run ({', '.join(present)}): pass --exist-ok to "
                                 f"replace it, --resume {out_dir / 'last.pth'} to continue it, or another --out")
        out_dir.mkdir(parents=True, exist_ok=True)
        return out_dir
    return numbered_dir(out_dir)


def numbered_dir(base: str | Path) -> Path:
    """The first of ``base``, ``base2``, ``base3``, ... that does not exist, created (atomically: two commands
    never pick the same folder). Outputs of runs, predictions and demos never mix."""
    base = Path(base)
    for number in range(1, MAX_NUMBERED):
        candidate = base if number == 1 else base.with_name(f"{base.name}{number}")
        try:
            candidate.mkdir(parents=True, exist_ok=False)
            return candidate
        except FileExistsError:
            continue
    raise RunFolderError(f"no free folder {base}2 .. {base}{MAX_NUMBERED - 1}; pass --out")


class RunLock:
    """The lock of a run folder while a process trains in it: a file holding the process id, host and start
    time, created atomically. A lock left by a process that no longer runs (on this host) is taken over."""

    def __init__(self, folder: str | Path) -> None:
        self.path = Path(folder) / LOCK_FILE
        self.held = False

    def acquire(self) -> RunLock:
        text = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M")})
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = _lock_holder(self.path)
                if holder is None:  # a stale lock: its process is gone
                    self.path.unlink(missing_ok=True)
                    continue
                raise RunFolderError(f"{self.path.parent} is in use: a training (process {holder.get('pid')} on "
                                     f"{holder.get('host')}, since {holder.get('since')}) writes there; wait for "
                                     f"it to end or name another --out") from None
            with os.fdopen(fd, "w") as f:
                f.write(text)
            self.held = True
            return self
        raise RunFolderError(f"{self.path.parent}: could not lock the run folder (another process keeps taking it)")

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False


def _lock_holder(path: Path) -> dict[str, Any] | None:
    """What a lock file says about its process, or None when that process is gone (or the file is unreadable)."""
    try:
        holder = json.loads(path.read_text())
        pid = int(holder["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if holder.get("host") == socket.gethostname():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:  # alive, another user's
            pass
    return holder


def lock_run_dir(folder: str | Path) -> RunLock:
    """Lock ``folder`` for this training (rank 0 takes the lock; under torchrun every process gets its
    answer, so a refusal stops all of them). Release the returned lock when training ends."""
    lock = RunLock(folder)
    _rank0_decides(lambda: lock.acquire() and None)
    return lock


# ------------------------------------------------------------------------------------------ resuming
@dataclass
class Resume:
    """A checkpoint to continue: its path, content and configuration (``out_dir`` = its own folder).
    ``branch``: the checkpoint is not its run's ``last.pth``, so the run continues in a new folder."""

    path: Path
    payload: dict[str, Any]
    saved: ExperimentConfig
    branch: bool = False


def resume_config(checkpoint: str | Path, assignments: list[str],
                  base: ExperimentConfig | None = None) -> tuple[ExperimentConfig, Resume]:
    """The configuration to continue ``checkpoint`` with: its own (or ``base``, e.g. the run's config.json),
    with ``assignments`` applied, writing into the checkpoint's folder. :func:`check_resume` then refuses
    what differs from the checkpoint's own and cannot apply."""
    path = Path(checkpoint)
    payload = read_checkpoint(path)
    missing = [k for k in ("optimizer", "scheduler", "epoch") if k not in payload]
    if missing:
        raise RunFolderError(f"{path} cannot be resumed: it holds weights only (no {', '.join(missing)})")
    saved = checkpoint_config(payload, path)
    branch = path.name != LAST
    # a branch goes to a new numbered folder beside the run's (runs/train_resumed, ...) unless --out names one
    saved.train.out_dir = str(path.parent.resolve()) if not branch else str(path.parent.resolve()) + "_resumed"
    start = copy.deepcopy(base if base is not None else saved)
    start.train.out_dir = saved.train.out_dir
    return override(start, assignments), Resume(path, payload, saved, branch)


def check_resume(cfg: ExperimentConfig, resume: Resume) -> list[str]:
    """Refuse changes of the checkpoint's configuration that a resumed run cannot honour; returns the
    applied ones as ``"field old -> new"``."""
    changed = _differences(resume.saved, cfg)
    out = changed.pop("train.out_dir", None)
    if out is not None and not resume.branch and Path(out[1]).resolve() != resume.path.parent.resolve():
        raise RunFolderError(f"--resume continues in the checkpoint's own folder {resume.path.parent}; "
                             f"--out {out[1]} is not used with it (to branch the run into another folder, resume from a copy "
                             f"of the checkpoint under another name)")
    refused = sorted(set(changed) - RESUMABLE)
    if refused:
        shown = "; ".join(f"{k} {_short(changed[k][0])} -> {_short(changed[k][1])}" for k in refused)
        raise RunFolderError(f"--resume {resume.path}: a resumed run keeps its model, data geometry, task and "
                             f"batch; cannot change {shown} (start a new run instead)")
    return [f"{k} {_short(a)} -> {_short(b)}" for k, (a, b) in sorted(changed.items())]


def _differences(a: ExperimentConfig, b: ExperimentConfig) -> dict[str, tuple[Any, Any]]:
    da, db = a.to_dict(), b.to_dict()
    return {f"{section}.{key}": (da[section][key], db[section][key])
            for section in da for key in da[section] if da[section][key] != db[section][key]}


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ------------------------------------------------------------------------------------------ checks
def absolute_paths(cfg: ExperimentConfig) -> ExperimentConfig:
    """Make the path fields of ``cfg`` absolute (in place; returns it), so that the stored config resumes
    from any working folder."""
    for section, key in PATH_FIELDS:
        value = getattr(getattr(cfg, section), key)
        if value:
            setattr(getattr(cfg, section), key, str(Path(value).expanduser().resolve()))
    for section, key in FILE_OR_NAME_FIELDS:
        value = getattr(getattr(cfg, section), key)
        if value and Path(value).expanduser().is_file():
            setattr(getattr(cfg, section), key, str(Path(value).expanduser().resolve()))
    return cfg


def read_config_file(path: str | Path) -> ExperimentConfig:
    """A ``config.json`` (as a run writes it); errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        return ExperimentConfig.from_dict(json.loads(path.read_text()))
    except (ValueError, TypeError, AttributeError) as err:  # json errors are ValueErrors
        raise ValueError(f"{path}: not a usable config file ({err})") from None
    except RecursionError:
        raise ValueError(f"{path}: not a usable config file (json nested too deeply)") from None


#: the learning rate schedules of ``train.schedule`` (:func:`centernet.engine.schedule.lr_at`)
SCHEDULES = ("step", "cosine")


def validate_train_config(cfg: ExperimentConfig) -> None:
    """Refuse values a run cannot start with, naming the field (types are checked by the config itself)."""
    t, d = cfg.train, cfg.data
    rules = [
        ("train.batch_size", t.batch_size, t.batch_size >= 1, "at least 1"),
        ("train.epochs", t.epochs, t.epochs >= 0, "0 or more"),
        ("train.lr", t.lr, math.isfinite(t.lr) and t.lr > 0, "a positive number"),
        ("train.max_bad_steps", t.max_bad_steps, t.max_bad_steps >= 1, "at least 1"),
        ("train.val_interval", t.val_interval, t.val_interval >= 0, "0 (off) or more"),
        ("train.patience", t.patience, t.patience >= 0, "0 (off) or more"),
        ("train.log_every", t.log_every, t.log_every >= 0, "0 (about 10 lines per epoch) or more"),
        ("train.max_steps_per_epoch", t.max_steps_per_epoch,
         t.max_steps_per_epoch is None or t.max_steps_per_epoch >= 1, "null or at least 1"),
        ("train.schedule", t.schedule, t.schedule in SCHEDULES, f"one of {SCHEDULES}"),
        ("train.warmup_epochs", t.warmup_epochs, math.isfinite(t.warmup_epochs) and t.warmup_epochs >= 0,
         "0 (off) or more"),
        ("train.ema", t.ema, 0 <= t.ema < 1, "0 (off) or a decay below 1"),
        ("train.optimizer", t.optimizer, t.optimizer in OPTIMIZERS, f"one of {tuple(OPTIMIZERS)}"),
        ("train.weight_decay", t.weight_decay, math.isfinite(t.weight_decay) and t.weight_decay >= 0,
         "0 (off) or more"),
        ("data.num_workers", d.num_workers, d.num_workers >= 0, "0 or more"),
        ("data.down_ratio", d.down_ratio, d.down_ratio >= 1, "at least 1"),
        ("data.verify", d.verify, d.verify in VERIFY_MODES, 'true, false, "full" or "headers"'),
    ]
    for name, value, ok, wanted in rules:
        if not ok:
            raise ValueError(f"{name} must be {wanted}, got {value!r}")
    if t.patience and not (d.val and t.val_interval):
        raise ValueError(f"train.patience {t.patience} needs validation: pass --val and a --val-interval above 0")
    from .distributed import resolve_device

    resolve_device(t.device)  # a device this machine lacks is refused before any work
    check_input_size(cfg.model.arch, d.input_size, d.down_ratio)


def check_input_size(arch: str, size: Any, down_ratio: int, name: str = "data.input_size") -> None:
    """Refuse an input size (w, h) that ``arch`` cannot take: the strided layers round up, so what must divide
    evenly is the output map (511 -> 128, as CornerNet's)."""
    from ..models import INPUT_MULTIPLE

    high = RANGES[("data", "input_size")][1]
    if len(size) != 2 or any(not 0 < v <= high for v in size):
        raise ValueError(f"{name} {list(size)} must be two sides (w, h) between 1 and {high:g} pixels")
    multiple = INPUT_MULTIPLE.get(arch)
    if multiple and any(v <= 0 or output_side(v, down_ratio) % max(1, multiple // down_ratio) for v in size):
        raise ValueError(f"{name} {list(size)} must be positive and give output maps whose sides are multiples "
                         f"of {multiple // down_ratio} for {arch} (e.g. multiples of {multiple}, or one less)")


# ------------------------------------------------------------------------------------------ files
def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None (strict JSON has no NaN / Infinity)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def write_config(folder: str | Path, cfg: ExperimentConfig) -> Path:
    """``config.json`` of a run (atomically)."""
    text = json.dumps(json_safe(cfg.to_dict()), indent=2, allow_nan=False)
    return atomic_write(Path(folder) / "config.json", lambda f: f.write(text.encode()))


def write_log(folder: str | Path, records: list[dict[str, Any]]) -> Path:
    """Replace ``log.jsonl`` with ``records`` (those of the checkpoint a run starts from)."""
    text = "".join(json.dumps(json_safe(r), allow_nan=False) + "\n" for r in records)
    return atomic_write(Path(folder) / "log.jsonl", lambda f: f.write(text.encode()))


def append_log(folder: str | Path, record: dict[str, Any]) -> None:
    """Append one epoch record to ``log.jsonl``."""
    with open(Path(folder) / "log.jsonl", "a") as f:
        f.write(json.dumps(json_safe(record), allow_nan=False) + "\n")
