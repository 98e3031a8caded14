"""Image reading with errors that name the file, and a cheap check for truncated JPEG / PNG files."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

JPEG_START, JPEG_END = b"\xff\xd8", b"\xff\xd9"
PNG_START, PNG_END = b"\x89PNG\r\n\x1a\n", b"IEND"
# Bytes at the end of a file searched for the end marker (writers may append padding or metadata).
TAIL_BYTES = 4096


class DataError(ValueError):
    """A data set file that cannot be used as it is: the message names the file and the problem."""


def read_image(path: str | Path) -> np.ndarray:
    """Read an image as uint8 BGR [H, W, 3]; raises :class:`DataError` if missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"image not found: {path}")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise DataError(f"image could not be decoded (corrupt or not an image): {path}")
    return image


def truncated(path: str | Path) -> bool:
    """Whether a JPEG or PNG file lacks its end marker (a cut-off download or copy).

    Such a file often still decodes (libjpeg warns "premature end of data segment" and fills the missing
    rows with grey), so :func:`read_image` alone does not notice. Other formats return False.
    """
    with open(path, "rb") as f:
        head = f.read(len(PNG_START))
        f.seek(0, 2)
        size = f.tell()
        f.seek(max(size - TAIL_BYTES, 0))
        tail = f.read()
    if head.startswith(JPEG_START):
        return JPEG_END not in tail
    if head.startswith(PNG_START):
        return PNG_END not in tail
    return False
