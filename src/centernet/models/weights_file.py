"""Reading ``.pth`` files without ever running code from them, with one-line errors that name the file.

Every checkpoint (ours, the original CenterNet's, ImageNet backbones) is read by :func:`load_weights_file`:
``torch.load(..., weights_only=True)``, which only rebuilds tensors and plain data (dicts, lists, tuples,
numbers, strings, ``collections`` containers) plus NumPy scalars, which carry data only. A file whose pickle
names anything else (a function such as ``os.system``, a class) is refused before that object is created.
"""
from __future__ import annotations

import pickle
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

PICKLE_PROTO = 0x80  # first byte of a binary pickle (the pre-1.6 "legacy" torch format starts with one)
ZIP_START = b"PK\x03\x04"  # first bytes of the zip format torch.save writes since 1.6
_NUMPY_CORE = getattr(np, "_core", None) or np.core
#: data-only constructors of NumPy scalars (older checkpoints keep metrics as np.float64)
NUMPY_SCALAR_GLOBALS = [_NUMPY_CORE.multiarray.scalar, np.dtype,
                        *{type(np.dtype(t)) for t in (np.float64, np.float32, np.int64, np.int32, np.bool_)}]


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


def _check_zip(path: Path) -> None:
    """Verify the CRC of every record of a zip checkpoint (torch does not), so a corrupt file is caught."""
    if not zipfile.is_zipfile(path):
        return
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
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
