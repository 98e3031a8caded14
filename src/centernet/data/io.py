"""Image reading with errors that name the file."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


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
