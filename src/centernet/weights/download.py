"""Weight files by name or URL: verified downloads into the torch hub cache.

A download goes to ``<dest>.<pid>.part`` and is renamed to ``dest`` only once it is complete (as many bytes
as the server announced) and its sha256 matches, so an interrupted or corrupt download never leaves a file
that looks usable. Every failure is a :class:`DownloadError` whose message is one line saying what was
tried, why it failed, and where the user can put the file instead.
"""
from __future__ import annotations

import hashlib
import os
import sys
import urllib.error
import urllib.request
from http.client import HTTPException
from pathlib import Path
from urllib.parse import urlparse

from .catalogue import imagenet_weights, is_known, known_weights, weights_info

PRETRAINED_HINT = "train without ImageNet weights (--pretrained none)"
NO_PRETRAINED = ("", "none", "null", "false")  # model.pretrained values meaning "start from scratch"
CHUNK = 1 << 20  # bytes read and hashed at a time
TIMEOUT_S = 30.0  # per socket operation, not for the whole file
USER_AGENT = "centernet-weights/1.0"


class DownloadError(RuntimeError):
    """A file could not be fetched or verified; ``str()`` is one line for the user."""


def cache_dir(root: str | os.PathLike[str] | None = None) -> Path:
    """Where weight files live: ``root``, else ``torch.hub.get_dir()/checkpoints`` (``$TORCH_HOME/hub/...``)."""
    if root is not None:
        return Path(root)
    import torch.hub  # lazily: the CLI's help must not import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def sha256_of(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def mismatch(path: Path, sha256: str | None = None, size: int | None = None) -> str | None:
    """Why ``path`` is not the expected file (wrong size, or a sha256 not starting with ``sha256``: a full
    digest or the 8-hex prefix a file name carries), or ``None`` when it is."""
    actual = path.stat().st_size
    if size is not None and actual != size:
        return f"{actual} bytes, expected {size}"
    if sha256:
        got = sha256_of(path)
        if not got.startswith(sha256.lower()):
            return f"sha256 {got[:16]}... does not match the expected {sha256[:16]}..."
    return None


def check_file(path: Path, sha256: str | None = None, size: int | None = None) -> None:
    """Raise :class:`DownloadError` naming ``path`` unless it has the expected size and sha256."""
    problem = mismatch(path, sha256, size)
    if problem:
        raise DownloadError(f"{path}: {problem}; replace or delete the file")


def _file_name(url: str) -> str:
    name = Path(urlparse(url).path).name
    return name or "download"


def download(url: str, dest: str | os.PathLike[str] | None = None, sha256: str | None = None,
             progress: bool = True, size: int | None = None, hint: str | None = None,
             timeout: float = TIMEOUT_S, max_bytes: int | None = None) -> Path:
    """Fetch ``url`` to ``dest`` (a file path; a folder gets the URL's file name; ``None``: the hub cache)
    and return it. ``sha256`` (digest or prefix) and ``size`` are checked before the file appears; a file
    growing past ``max_bytes`` is refused while it arrives; ``hint`` is the alternative the error message
    offers (e.g. "train without (--pretrained none)")."""
    target = Path(dest) if dest is not None else cache_dir() / _file_name(url)
    if target.is_dir():
        target = target / _file_name(url)
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(f"{target.name}.{os.getpid()}.part")
    try:
        _fetch(url, part, progress, timeout, max_bytes)
        problem = mismatch(part, sha256, size)
        if problem:
            raise DownloadError(f"{problem}; the download was removed")
        with open(part, "rb") as f:
            os.fsync(f.fileno())
        os.replace(part, target)
    except BaseException as err:
        part.unlink(missing_ok=True)
        if isinstance(err, (KeyboardInterrupt, SystemExit)):
            raise
        instead = f" or {hint}" if hint else ""
        raise DownloadError(f"could not download {target.name} from {url} ({_reason(err)}); "
                            f"put the file at {target}{instead}") from None
    return target


def _fetch(url: str, part: Path, progress: bool, timeout: float, max_bytes: int | None = None) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        if "text/html" in response.headers.get("Content-Type", "") and not url.endswith((".html", ".htm")):
            raise DownloadError("the server sent a web page, not the file: a login or confirmation page?")
        length = response.headers.get("Content-Length")
        expected = int(length) if length and length.isdigit() else None
        if max_bytes is not None and (expected or 0) > max_bytes:
            raise DownloadError(f"the server announces {expected:,} bytes, over the limit of {max_bytes:,}")
        from tqdm import tqdm  # lazily, like torch

        received = 0
        with open(part, "wb") as out, tqdm(total=expected, unit="B", unit_scale=True, unit_divisor=1024,
                                           desc=part.name.split(".")[0], disable=not progress,
                                           file=sys.stderr, leave=False) as bar:
            while block := response.read(CHUNK):
                out.write(block)
                received += len(block)
                if max_bytes is not None and received > max_bytes:
                    raise DownloadError(f"more than the limit of {max_bytes:,} bytes")
                bar.update(len(block))
            out.flush()
    if expected is not None and received != expected:
        raise DownloadError(f"connection closed after {received} of {expected} bytes")


def _reason(err: BaseException) -> str:
    if isinstance(err, DownloadError):
        return str(err)
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code} {err.reason}"
    if isinstance(err, urllib.error.URLError):
        return f"no connection: {err.reason}"
    if isinstance(err, HTTPException):
        return f"connection broken: {type(err).__name__}"
    if isinstance(err, (TimeoutError, OSError)):
        return f"{type(err).__name__}: {err}"
    return f"{type(err).__name__}: {err}"


def resolve_weights(name_or_path: str | os.PathLike[str], cache: str | os.PathLike[str] | None = None,
                    progress: bool = True, hint: str | None = None) -> Path:
    """A local file for ``name_or_path``: an existing path as is; a known name (see
    :func:`.catalogue.known_weights`) from the cache, downloading it if absent; an http(s) URL
    likewise by its file name. A file found in the cache (downloaded before or put there by hand) is
    checked against the known sha256 / size and used without network."""
    text = os.fspath(name_or_path)
    path = Path(text).expanduser()
    if path.is_file():
        return path
    if text.startswith(("http://", "https://")):
        url, file, sha256, size = text, _file_name(text), None, None
    elif is_known(text):
        info = weights_info(text)
        url, file, sha256, size = info.url, info.file, info.sha256, info.size
    else:
        raise FileNotFoundError(f"{text}: no such file, and not a known weights name (known: "
                                f"{', '.join(known_weights())})")
    target = cache_dir(cache) / file
    if target.is_file():
        check_file(target, sha256, size)
        return target
    if url is None:
        instead = f" or {hint}" if hint else ""
        raise DownloadError(f"{text} has no known download address; put the file at {target}{instead}")
    return download(url, target, sha256=sha256, progress=progress, size=size, hint=hint)


def resolve_pretrained(value: str | None, arch: str, cache: str | os.PathLike[str] | None = None,
                       progress: bool = True) -> Path | None:
    """The backbone file for ``model.pretrained`` / ``--pretrained``: ``None`` / ``"none"`` -> ``None``;
    ``"imagenet"`` -> the ImageNet file of ``arch`` (see :func:`.catalogue.imagenet_weights`);
    anything else (a path, a known name, a URL) through :func:`resolve_weights`. Errors are one line
    that offers ``--pretrained none``."""
    if value is None or value.strip().lower() in NO_PRETRAINED:
        return None
    name = value
    if value.strip().lower() == "imagenet":
        found = imagenet_weights(arch)
        if found is None:
            archs = sorted({weights_info(n).arch for n in known_weights("backbone")})
            raise ValueError(f"no ImageNet weights are known for {arch!r} (known for {', '.join(archs)} and "
                             f"their resdcn variants); use --pretrained none or a path to a file")
        name = found
    return resolve_weights(name, cache=cache, progress=progress, hint=PRETRAINED_HINT)
