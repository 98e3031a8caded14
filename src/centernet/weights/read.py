"""Reading ``.pth`` files without ever running code from them, with one-line errors that name the file.

Every checkpoint (ours, the original CenterNet's, ImageNet backbones) is read by :func:`load_weights_file`:
``torch.load(..., weights_only=True)``, which only rebuilds tensors and plain data (dicts, lists, tuples,
numbers, strings, ``collections`` containers) plus NumPy scalars, which carry data only. A file whose pickle
names anything else (a function such as ``os.system``, a class) is refused before that object is created.
On top of it, :func:`read_checkpoint` reads our own checkpoints (config and all) and :func:`read_state` the
tensors of any layout (ours, the original's ``{'epoch', 'state_dict'}``, a bare state dict).
"""
from __future__ import annotations

import pickle
import re
import warnings
import zipfile
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
from torch import Tensor

FORMAT = "centernet-checkpoint-v1"  # the ``format`` entry of our checkpoints (engine.checkpoint writes them)
WRAPPER_PREFIXES = ("module.", "model.")  # DataParallel / common training wrappers
PICKLE_PROTO = 0x80  # first byte of a binary pickle (the pre-1.6 "legacy" torch format starts with one)
ZIP_START = b"PK\x03\x04"  # first bytes of the zip format torch.save writes since 1.6
_NUMPY_CORE = getattr(np, "_core", None) or np.core
#: data-only constructors of NumPy scalars (older checkpoints keep metrics as np.float64)
NUMPY_SCALAR_GLOBALS = [_NUMPY_CORE.multiarray.scalar, np.dtype,
                        *{type(np.dtype(t)) for t in (np.float64, np.float32, np.int64, np.int32, np.bool_)}]


StateSource = Union[str, "os.PathLike[str]", Mapping[str, Any]]


class CheckpointFileError(ValueError):
    """A weights file that cannot be read safely: missing, incomplete / corrupt, or needing code to load."""


class CheckpointNotFoundError(CheckpointFileError, FileNotFoundError):
    """The weights file does not exist."""


def load_weights_file(path: str | Path) -> Any:
    """The content of a ``torch.save`` file (zip or legacy format) loaded on the CPU without running code.

    Raises :class:`CheckpointFileError` with one line naming ``path``: ``checkpoint not found``,
    ``not a complete checkpoint`` (truncated, corrupt, not a torch file) or ``refused`` (the file would
    need code execution: the message names the Python object it asks for).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointNotFoundError(f"checkpoint not found: {path}")
    with open(path, "rb") as f:
        head = f.read(len(ZIP_START))
    if not head:
        raise CheckpointFileError(f"not a complete checkpoint: {path} (empty file)")
    if not head.startswith(ZIP_START) and head[0] != PICKLE_PROTO:
        raise CheckpointFileError(f"not a complete checkpoint: {path} (not a torch.save file)")
    if head.startswith(ZIP_START) and not zipfile.is_zipfile(path):
        raise CheckpointFileError(f"not a complete checkpoint: {path} (truncated: the zip archive has no end)")
    _check_zip(path)
    try:
        with torch.serialization.safe_globals(NUMPY_SCALAR_GLOBALS), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's remarks on pickle protocols: the outcome is what counts
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise _unpickling_error(path, str(err)) from None
    except (EOFError, RuntimeError, OSError, KeyError, ValueError, IndexError, TypeError,
            AttributeError, UnicodeDecodeError, zipfile.BadZipFile) as err:
        raise CheckpointFileError(f"not a complete checkpoint: {path} ({_first_line(err)})") from None


#: the most a checkpoint's records may hold once inflated (CornerNet with its optimiser state is about 2.4 GB);
#: CENTERNET_MAX_CHECKPOINT_BYTES overrides it
MAX_CHECKPOINT_BYTES = 16 * 2**30
#: torch writes its records uncompressed: records declaring many times the file's size are a zip bomb
MAX_INFLATION = 10


def _check_zip(path: Path) -> None:
    """Check a zip checkpoint before reading a record: the sizes its records declare (a bomb is refused before
    it is inflated), then the CRC of every record (torch checks none), so a corrupt file is caught."""
    if not zipfile.is_zipfile(path):
        return
    limit = int(os.environ.get("CENTERNET_MAX_CHECKPOINT_BYTES", MAX_CHECKPOINT_BYTES))
    try:
        with zipfile.ZipFile(path) as archive:
            declared = sum(info.file_size for info in archive.infolist())
            on_disk = path.stat().st_size
            if declared > limit or declared > MAX_INFLATION * max(on_disk, 2**20):
                raise CheckpointFileError(
                    f"{path}: its records declare {declared:,} bytes once inflated, from {on_disk:,} on disk (limit "
                    f"{limit:,} bytes and {MAX_INFLATION}x the file; CENTERNET_MAX_CHECKPOINT_BYTES raises the first)")
            bad = archive.testzip()
    except CheckpointFileError:
        raise
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:
        raise CheckpointFileError(f"not a complete checkpoint: {path} ({_first_line(err)})") from None
    if bad is not None:
        raise CheckpointFileError(f"not a complete checkpoint: {path} (corrupt record {bad})")


def _unpickling_error(path: Path, message: str) -> CheckpointFileError:
    """Refused: the pickle asks for a Python object (named when the message says which) or uses an
    instruction the safe unpickler does not run."""
    wanted = re.search(r"GLOBAL ([\w.]+)", message)
    if wanted:
        return CheckpointFileError(f"refused {path}: loading it would run code ({wanted.group(1)}); "
                                   "a checkpoint may hold only tensors and plain data")
    operand = re.search(r"Unsupported operand (\d+)", message)
    detail = f"pickle operand {operand.group(1)}" if operand else "unsupported pickle content"
    return CheckpointFileError(f"refused {path}: it holds more than tensors and plain data ({detail}), "
                               "so it cannot be loaded without running code")


def _first_line(err: BaseException) -> str:
    """The first sentence of an error message, with its type: enough to tell truncation from corruption."""
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0].split('. ')[0][:160]}" if text else type(err).__name__


# ------------------------------------------------------------------------------------------------ contents
def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The content of one of our checkpoints (written by ``engine.checkpoint.save_checkpoint``), read
    without running code.

    Raises :class:`CheckpointFileError` (a ``ValueError``) with one line naming ``path``: not found,
    ``not a complete checkpoint``, ``refused`` (it would need code execution), or not a centernet file.
    """
    path = Path(path)
    payload = load_weights_file(path)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        hint = " (an original CenterNet file? use centernet.load_official_checkpoint)" \
            if isinstance(payload, dict) and "state_dict" in payload else ""
        raise CheckpointFileError(f"{path} is not a centernet checkpoint{hint}")
    model = payload.get("model")
    if not isinstance(payload.get("config"), dict) or not isinstance(model, Mapping) \
            or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in model.items()):
        raise CheckpointFileError(f"not a complete checkpoint: {path} (no config or no model tensors)")
    return payload


def read_state(source: StateSource) -> tuple[dict[str, Tensor], int | None]:
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
