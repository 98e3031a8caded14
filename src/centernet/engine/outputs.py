"""Where commands write outside run folders, so that nothing a user made is overwritten unless they asked.

* An output folder (``predict --out``, ``eval --results-dir``) is new, empty, or one the same command wrote
  before: it carries a mark (:data:`MARK`) naming the command. A folder holding anything else (photos, a data
  set's label files) is refused, and so is a folder that holds one of the command's inputs.
* An output file (``eval --json``, ``analyze --json``) is new, or a file the same command wrote before
  (recognised by its content); a checkpoint, an image or anyone else's file is refused.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

#: the file by which an output folder says which command made it
MARK = ".centernet-output"
LISTED = 3  # foreign files named in a refusal


class OutputError(ValueError):
    """An output path that would overwrite or mix with something the command did not make."""


def claim_output_dir(folder: str | Path, command: str, inputs: Iterable[str | Path] = (), flag: str = "--out") -> Path:
    """``folder`` ready for the outputs of ``command`` (created and marked), or :class:`OutputError` when it
    is a file, holds files ``command`` did not write there, or holds one of ``inputs``."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{flag} {folder} is a file, not a folder; name a new or empty folder")
    root = folder.resolve()
    for item in inputs:
        path = Path(item).resolve()
        if path == root or root in path.parents:
            raise OutputError(f"{flag} {folder} holds the input {item}: outputs there would mix with (and could "
                              f"overwrite) the inputs; name another folder")
    mark = folder / MARK
    if folder.is_dir() and not mark.is_file():
        foreign = sorted(p.name for p in folder.iterdir())
        if foreign:
            shown = ", ".join(foreign[:LISTED]) + (f" and {len(foreign) - LISTED} more" if len(foreign) > LISTED else "")
            raise OutputError(f"{flag} {folder} holds files that centernet {command} did not write ({shown}); "
                              f"name a new or empty folder")
    elif mark.is_file() and (maker := _mark_command(mark)) != command:
        raise OutputError(f"{flag} {folder} holds the outputs of centernet {maker or 'another command'}, not of "
                          f"{command}; name a new or empty folder")
    folder.mkdir(parents=True, exist_ok=True)
    mark.write_text(json.dumps({"command": command}) + "\n")
    return folder


def _mark_command(mark: Path) -> str | None:
    try:
        value = json.loads(mark.read_text())
    except (OSError, ValueError):
        return None
    return value.get("command") if isinstance(value, dict) else None


def check_output_file(path: str | Path, made_by_command: Callable[[Any], bool], command: str,
                      flag: str = "--json") -> Path:
    """``path`` if it is new, or an earlier output of ``command`` (its JSON content passes
    ``made_by_command``); else :class:`OutputError`."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{flag} {path} is a folder; name a .json file")
    if path.exists():
        try:
            ours = made_by_command(json.loads(path.read_text()))
        except (OSError, ValueError, UnicodeDecodeError, RecursionError):
            ours = False
        if not ours:
            raise OutputError(f"{flag} {path} exists and is not an earlier output of centernet {command}; name "
                              f"another file")
    return path


def is_metrics_json(value: Any) -> bool:
    """An ``eval --json`` file: an object of metric name -> number (or null)."""
    return isinstance(value, dict) and all(isinstance(v, (int, float)) or v is None for v in value.values())


def is_rows_json(value: Any) -> bool:
    """An ``analyze --json`` file: a list of rows, each with a "name"."""
    return isinstance(value, list) and all(isinstance(r, dict) and "name" in r for r in value)
