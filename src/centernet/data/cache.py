"""Where the data layer keeps what it can always compute again: opened annotation files and image checks.

The cache lives beside the weight files' cache, under the same root (the torch hub convention of
:func:`centernet.weights.download.cache_dir`): ``$CENTERNET_CACHE`` when set (``off`` turns caching off), else
``$TORCH_HOME/centernet``, by default ``~/.cache/torch/centernet``:

* ``datasets/``: one ``.npz`` file per COCO annotation file of at least :data:`MIN_CACHED_BYTES` (its samples as
  arrays, see :mod:`.coco`), valid while the annotation file keeps its size and modification time;
* ``image_checks/``: one ``.json`` file per image folder: what the image check learnt of each image (its
  decoded size, whether it is truncated), valid while the image keeps its size and modification time.

Not beside the data: data sets often sit in read-only or shared folders, and a cache there could collide with
a user's own files. Every file is written to a temporary name and renamed, so a reader never sees a half
written one; a cache that cannot be read or written (a read-only home, a full disk, a damaged file) is
skipped without a word: it only ever saves time. Cache files hold arrays and json only, never pickles: a
planted file cannot run code. Deleting the folder is always safe.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import BinaryIO, Callable

CACHE_ENV = "CENTERNET_CACHE"
#: values of $CENTERNET_CACHE that turn caching off
OFF = ("0", "off", "none", "false", "no")
#: annotation files smaller than this are parsed each time (a fraction of a second); larger ones are cached
MIN_CACHED_BYTES = 4 << 20


def cache_root() -> Path | None:
    """The cache folder (see the module's text), or None when ``$CENTERNET_CACHE`` turns caching off."""
    value = os.environ.get(CACHE_ENV, "").strip()
    if value:
        return None if value.lower() in OFF else Path(value).expanduser()
    torch_home = os.environ.get("TORCH_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache", "torch")
    return Path(torch_home).expanduser() / "centernet"


def cache_file(kind: str, identity: str, suffix: str) -> Path | None:
    """``<cache>/<kind>/<digest of identity><suffix>``, or None when caching is off."""
    root = cache_root()
    if root is None:
        return None
    digest = hashlib.sha256(identity.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return root / kind / f"{digest}{suffix}"


def file_state(path: str | os.PathLike[str]) -> dict[str, int | str]:
    """What identifies a version of a file: its absolute path, size and modification time (ns)."""
    stat = os.stat(path)
    return {"path": os.path.abspath(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def code_version(*files: str | os.PathLike[str]) -> str:
    """A digest of the source ``files`` that produce a cached result: a change to them invalidates it."""
    digest = hashlib.sha256()
    for name in files:
        with open(name, "rb") as f:
            digest.update(f.read())
    return digest.hexdigest()[:16]


def write_atomic(path: Path, write: Callable[[BinaryIO], None]) -> bool:
    """Write ``path`` through ``write(file)`` under a temporary name, then rename; False when it failed."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            write(f)
        os.replace(tmp, path)
        return True
    except OSError:
        try:
            tmp.unlink()
        except OSError:
            pass
        return False
