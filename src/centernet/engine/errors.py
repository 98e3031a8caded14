"""What a command tells the user when it fails: a clear message for user errors (bad data, bad files,
bad arguments, a diverged run), the same with or without DataLoader worker processes, never a traceback."""
from __future__ import annotations

import importlib
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..data.io import printable
from ..weights.download import DownloadError

#: the last "package.module.SomeError: message" line of a traceback
_RAISED_LINE = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?[A-Za-z_]\w*(?:Error|Exception|Diverged): ", re.MULTILINE)
_WORKER_MARK = "Original Traceback (most recent call last)"


class TrainingDiverged(RuntimeError):
    """Training stopped: the loss or the gradients stayed non-finite; the message names the last good
    checkpoint."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a command; the message says what was saved and how to continue."""


class MissingDependency(ImportError):
    """An optional package is not installed; the message names the extra that installs it."""


def require(module: str, extra: str, purpose: str) -> Any:
    """Import ``module`` or raise :class:`MissingDependency`: "<purpose> needs <module>: pip install
    'centernet[<extra>]'"."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependency(f"{purpose} needs the {module} package, which is not installed: "
                                f"pip install 'centernet[{extra}]'") from None


#: exception types whose message is meant for the user (their messages name the file and the problem)
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, KeyError, OSError, TrainingDiverged, MissingDependency,
                                                DownloadError)


def is_user_error(err: BaseException) -> bool:
    """A user error: a bad input, file or argument (incl. onnxruntime refusing a model file)."""
    return isinstance(err, USER_ERRORS) or type(err).__module__.startswith("onnxruntime")


def user_message(err: BaseException) -> str:
    """The message of ``err``, escaped for the terminal (line breaks kept: the multi-line messages escape what
    they list); for an error re-raised from a DataLoader worker, the original message (the worker's traceback
    dropped), so ``--workers 2`` reads like ``--workers 0``."""
    text = err.args[0] if isinstance(err, KeyError) and err.args and isinstance(err.args[0], str) else str(err)
    if _WORKER_MARK in text:
        raised = list(_RAISED_LINE.finditer(text))
        if raised:
            text = text[raised[-1].end():]
    return printable(text.strip(), keep_newlines=True) or type(err).__name__


@contextmanager
def cli_warnings() -> Iterator[None]:
    """Show warnings as ``warning: <message>`` lines (no source file and line) while the block runs."""
    original = warnings.formatwarning
    warnings.formatwarning = lambda message, category, *args, **kwargs: f"warning: {printable(message, True)}\n"
    try:
        yield
    finally:
        warnings.formatwarning = original
