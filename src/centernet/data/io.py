"""Image reading with errors that name the file, a pixel limit checked from the header before decoding, and a
cheap check for truncated JPEG / PNG files."""
from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

JPEG_START, JPEG_END = b"\xff\xd8", b"\xff\xd9"
PNG_START, PNG_END = b"\x89PNG\r\n\x1a\n", b"IEND"
# Bytes at the end of a file searched for the end marker (writers may append padding or metadata).
TAIL_BYTES = 4096


def printable(text: object, keep_newlines: bool = False) -> str:
    """``str(text)`` safe to show on a terminal: every character that is not printable (escape sequences,
    carriage returns, newlines, bidirectional overrides, undecodable bytes of a file name) as its Python escape,
    e.g. ``\\x1b``, ``\\n``, ``\\u202e``. Names and strings read from users' files go through it before they are
    printed. ``keep_newlines`` keeps the line breaks of a listing: a newline followed by the two-space indent of
    its items (which are escaped where the listing is made), so no line can start as a forged ``error:``."""
    text = str(text)
    return "".join(c if c.isprintable() or (keep_newlines and c == "\n" and text.startswith("  ", i + 1))
                   else c.encode("unicode_escape").decode() for i, c in enumerate(text))


class DataError(ValueError):
    """A data set file that cannot be used as it is: the message names the file and the problem."""


#: the most pixels an image may declare (Pillow's refusal threshold); CENTERNET_MAX_IMAGE_PIXELS overrides it
MAX_IMAGE_PIXELS = 178_956_970
# JPEG start-of-frame markers (baseline, progressive, ...; not DHT C4, JPG C8, DAC CC): they carry the size
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) an image file declares in its header (PNG, JPEG, GIF, BMP, WebP), without decoding;
    None for other formats or a header that says nothing readable."""
    if data[:8] == PNG_START and data[12:16] == b"IHDR" and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        return struct.unpack("<HH", data[6:10])
    if data[:2] == b"BM" and len(data) >= 26:
        width, height = struct.unpack("<ii", data[18:26])
        return abs(width), abs(height)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and len(data) >= 30:
        chunk = data[12:16]
        if chunk == b"VP8X":
            return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
        if chunk == b"VP8 ":
            width, height = struct.unpack("<HH", data[26:30])
            return width & 0x3FFF, height & 0x3FFF
        if chunk == b"VP8L" and len(data) >= 25:
            bits = int.from_bytes(data[21:25], "little")
            return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if data[:2] == JPEG_START:
        for marker, at, _ in _jpeg_segments(data):
            if marker in _JPEG_SOF:
                if at + 9 > len(data):
                    return None
                height, width = struct.unpack(">HH", data[at + 5:at + 9])
                return width, height
    return None


def _jpeg_segments(data: bytes) -> Iterator[tuple[int, int, int]]:
    """(marker, offset of its 0xFF, length) of each segment of a JPEG's header whose marker and length lie in
    ``data``, in order, until the first byte that does not start a segment."""
    at = 2
    while at + 4 <= len(data) and data[at] == 0xFF:
        marker, length = data[at + 1], struct.unpack(">H", data[at + 2:at + 4])[0]
        yield marker, at, length
        at += 2 + length


def max_image_pixels() -> int:
    """The pixel limit in force: CENTERNET_MAX_IMAGE_PIXELS when set, else :data:`MAX_IMAGE_PIXELS`."""
    return int(os.environ.get("CENTERNET_MAX_IMAGE_PIXELS", MAX_IMAGE_PIXELS))


#: bytes read for the header: most files declare their size in the first few KB; a JPEG puts it after its APP
#: segments (EXIF thumbnails: up to 64 KB each), so a JPEG without it there is read up to HEADER_BYTES
FIRST_BYTES, HEADER_BYTES = 2**14, 2**18


class ImageTooLarge(DataError):
    """An image whose header declares more pixels than :func:`max_image_pixels`."""


def _checked_size(path: Path) -> tuple[int, int] | None:
    """The size the file's header declares (None: no readable header), once within :func:`max_image_pixels`."""
    return _checked_header(path)[0]


def _checked_header(path: str | Path) -> tuple[tuple[int, int] | None, bytes]:
    """(:func:`_checked_size`, the first bytes of the file: enough to hold a JPEG's segments up to its size)."""
    if not os.path.isfile(path):
        raise DataError(f"image not found: {path}")
    with open(path, "rb") as f:
        head = f.read(FIRST_BYTES)
        size = header_size(head)
        if size is None and head[:2] == JPEG_START and len(head) == FIRST_BYTES:
            head += f.read(HEADER_BYTES - FIRST_BYTES)
            size = header_size(head)
    if size is not None and size[0] * size[1] > max_image_pixels():
        raise ImageTooLarge(f"{path}: declares {size[0]} x {size[1]} pixels, over the limit of {max_image_pixels():,} "
                        "(CENTERNET_MAX_IMAGE_PIXELS raises it)")
    return size, head


# EXIF orientations (TIFF tag 0x0112) 5-8 turn the image by a quarter: the decoded image is height x width
_ORIENTATION_TAG, _TURNED = 0x0112, {5, 6, 7, 8}


def _tiff_orientation(tiff: bytes) -> int | None:
    """The orientation an EXIF (TIFF) block states in its first directory: 1 (upright) when it states none;
    None when the block cannot be read."""
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if order is None or len(tiff) < 8:
        return None
    at = struct.unpack(order + "I", tiff[4:8])[0]
    if at + 2 > len(tiff):
        return None
    count = struct.unpack(order + "H", tiff[at:at + 2])[0]
    for entry in range(at + 2, min(at + 2 + 12 * count, len(tiff) - 11), 12):
        tag, kind = struct.unpack(order + "HH", tiff[entry:entry + 4])
        if tag == _ORIENTATION_TAG:
            value = struct.unpack(order + "H", tiff[entry + 8:entry + 10])[0] if kind == 3 else 0
            return value if 1 <= value <= 8 else None
    return 1


def _jpeg_orientation(head: bytes) -> int | None:
    """The EXIF orientation of a JPEG from its segments before the frame header (1 without EXIF; None: an EXIF
    block or segment list that cannot be read)."""
    for marker, at, length in _jpeg_segments(head):
        if marker in _JPEG_SOF:
            return 1
        if marker == 0xE1 and head[at + 4:at + 10] == b"Exif\x00\x00":
            if at + 2 + length > len(head):
                return None
            return _tiff_orientation(head[at + 10:at + 2 + length])
    return None


def stated_size(path: str | Path) -> tuple[int, int] | None:
    """(width, height) of the image :func:`read_image` returns, from the file's header alone: a JPEG's frame
    size turned as its EXIF orientation turns it, a PNG's without an EXIF chunk; None where only a decode can
    tell (other formats, a header or EXIF block that cannot be read). Raises :class:`DataError` where
    :func:`read_image` would before decoding (missing, over the pixel limit)."""
    size, head = _checked_header(os.fspath(path))
    if size is None:
        return None
    if head[:2] == JPEG_START:
        orientation = _jpeg_orientation(head)
        if orientation is None:
            return None
        return (size[1], size[0]) if orientation in _TURNED else size
    if head[:8] == PNG_START and _png_without_exif(head):
        return size
    return None


def _png_without_exif(head: bytes) -> bool:
    """Whether a PNG's chunks before its image data, all within ``head``, hold no EXIF chunk (which OpenCV
    applies, or not, depending on its version)."""
    at = len(PNG_START)
    while at + 8 <= len(head):
        length, kind = struct.unpack(">I", head[at:at + 4])[0], head[at + 4:at + 8]
        if kind == b"IDAT":
            return True
        if kind == b"eXIf":
            return False
        at += 12 + length  # length, type, data, CRC
    return False


def _decode(path: Path, flags: int) -> np.ndarray | None:
    """OpenCV's decode of the file; a name that is not valid UTF-8 (which OpenCV's own file reading can crash
    on) goes through the file's bytes instead."""
    try:
        os.fsdecode(path).encode("utf-8")
    except UnicodeEncodeError:
        return cv2.imdecode(np.fromfile(path, np.uint8), flags)
    return cv2.imread(str(path), flags)  # reads what a byte decode would refuse, e.g. a truncated JPEG


def read_image(path: str | Path) -> np.ndarray:
    """Read an image as uint8 BGR [H, W, 3]; raises :class:`DataError` if missing, unreadable or over the pixel
    limit (checked from the header, before decoding)."""
    path = Path(path)
    _checked_size(path)
    image = _decode(path, cv2.IMREAD_COLOR)
    if image is None:
        raise DataError(f"image could not be decoded (corrupt or not an image): {path}")
    return image


#: the scale of the check's JPEG decode (libjpeg decodes every coefficient, and skips most of the pixel work)
REDUCED = 8


def decoded_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of the image :func:`read_image` returns (EXIF orientation applied), and a
    :class:`DataError` where it would raise one (missing, over the pixel limit, undecodable).

    A JPEG whose header states its size is decoded at 1/8 scale, about 1.3 times as fast: libjpeg still decodes
    every coefficient of the file, so a corrupt file fails as in a full decode, and the header's size, turned
    as the small image is, is the full one. Anything else, and any doubt (a small image that fits the header
    size both upright and turned, or neither; a failed small decode), gets the full decode. No ``Path`` is
    made of ``path``: pathlib interns every file name it parses, and the check of a large set would fill the
    interpreter's table of them, which forked DataLoader workers then copy as they add names of their own."""
    path = os.fspath(path)
    size, head = _checked_header(path)
    if size is not None and head[:2] == JPEG_START:
        small = _decode(path, cv2.IMREAD_REDUCED_GRAYSCALE_8)
        if small is not None:
            width, height = size
            upright = small.shape[:2] == (-(-height // REDUCED), -(-width // REDUCED))
            turned = small.shape[:2] == (-(-width // REDUCED), -(-height // REDUCED))
            if upright and (not turned or width == height):
                return width, height
            if turned and not upright:
                return height, width
    height, width = read_image(path).shape[:2]
    return width, height


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of an image: from its header where the format has one, else by decoding."""
    path = Path(path)
    size = _checked_size(path)
    if size is not None:
        return size
    image = _decode(path, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise DataError(f"image could not be decoded (corrupt or not an image): {path}")
    return image.shape[1], image.shape[0]


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
