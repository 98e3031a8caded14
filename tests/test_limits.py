"""No input exhausts memory or time: sizes read from a file are checked before memory is spent on them.

Each bomb here is a small file that declares a large size; every refusal is one line and exit code 2."""
from __future__ import annotations

import json
import os
import struct
import time
import zipfile
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from centernet.cli import main
from centernet.config import ExperimentConfig
from centernet.data.io import DataError, header_size, image_size, read_image
from centernet.engine.checkpoint import save_checkpoint
from centernet.weights.read import CheckpointFileError, load_weights_file


def _png_declaring(path: Path, width: int, height: int) -> Path:
    """A few hundred bytes of PNG whose header declares ``width x height`` RGB pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


def _one_line_error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    return err


@pytest.mark.parametrize("ext, extra", [(".png", []), (".jpg", []), (".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]),
                                        (".bmp", []), (".webp", [])])
def test_image_sizes_come_from_the_header(ext: str, extra: list[int]) -> None:
    image = np.random.default_rng(0).integers(0, 255, (37, 53, 3)).astype(np.uint8)
    ok, encoded = cv2.imencode(ext, image, extra)
    assert ok and header_size(encoded.tobytes()) == (53, 37)


def test_an_image_declaring_too_many_pixels_is_refused_before_decoding(tmp_path, capsys, monkeypatch) -> None:
    bomb = _png_declaring(tmp_path / "bomb.png", 30000, 30000)  # 900M pixels: 2.7 GB decoded
    start = time.perf_counter()
    for read in (read_image, image_size):
        with pytest.raises(DataError, match=r"declares 30000 x 30000 pixels, over the limit of 178,956,970"):
            read(bomb)
    assert time.perf_counter() - start < 1.0
    err = _one_line_error(capsys, ["eval", "--oracle", "--data", str(_coco_with(tmp_path, bomb)),
                                   "--images", str(tmp_path)])
    assert "declares 30000 x 30000 pixels" in err
    monkeypatch.setenv("CENTERNET_MAX_IMAGE_PIXELS", str(10**9))  # the limit is settable
    assert image_size(bomb) == (30000, 30000)


def _coco_with(root: Path, image: Path) -> Path:
    ann = root / "ann.json"
    ann.write_text(json.dumps({
        "images": [{"id": 1, "file_name": image.name, "width": 64, "height": 48}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [4, 4, 20, 20], "area": 400, "iscrowd": 0}],
        "categories": [{"id": 1, "name": "thing"}]}))
    return ann


def test_a_file_name_that_is_not_utf8_is_read(tmp_path) -> None:
    image = np.full((12, 16, 3), 7, np.uint8)
    name = os.fsdecode(str(tmp_path).encode() + b"/caf\xe9.png")  # Latin-1 bytes: not UTF-8
    assert cv2.imwrite(str(tmp_path / "plain.png"), image)
    os.rename(tmp_path / "plain.png", name)
    assert read_image(name).shape == (12, 16, 3) and image_size(name) == (16, 12)


def test_a_checkpoint_that_inflates_far_beyond_its_size_is_refused_unread(tmp_path, capsys) -> None:
    bomb = tmp_path / "bomb.pth"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("archive/data.pkl", "w", force_zip64=True) as f:
            for _ in range(16):
                f.write(b"\0" * 2**24)  # 256 MB of zeros in about 256 KB
    start = time.perf_counter()
    with pytest.raises(CheckpointFileError, match="declare 268,435,456 bytes once inflated"):
        load_weights_file(bomb)
    assert time.perf_counter() - start < 1.0
    assert "bytes once inflated" in _one_line_error(capsys, ["eval", str(bomb), "--data", "x.json"])


def test_a_checkpoint_config_asking_for_absurd_sizes_is_refused(tmp_path, capsys) -> None:
    cfg = ExperimentConfig()
    cfg.model.arch = "resdcn_18_tiny"
    path = tmp_path / "huge.pth"
    save_checkpoint(path, cfg, torch.nn.Linear(1, 1))
    payload = torch.load(path, weights_only=True)
    payload["config"]["task"]["num_classes"] = 2_000_000_000
    torch.save(payload, path)
    err = _one_line_error(capsys, ["export", str(path), "--out", str(tmp_path / "m.onnx")])
    assert "task.num_classes must lie in [1, 100,000], got 2000000000" in err
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("assignment, field", [("data.down_ratio=0", "data.down_ratio"),
                                                ("data.input_size=[65536,65536]", "data.input_size")])
def test_config_sizes_out_of_range_are_one_line(assignment: str, field: str, tmp_path, capsys) -> None:
    err = _one_line_error(capsys, ["train", "--preset", "ctdet_cpu_small", "--train", "x.json", "--out",
                                   str(tmp_path / "run"), "--set", assignment])
    assert f"config field {field} must lie in" in err and not (tmp_path / "run").exists()


def test_json_nested_a_million_deep_is_one_line(tmp_path, capsys) -> None:
    deep = "[" * 1_000_000 + "]" * 1_000_000
    (tmp_path / "ann.json").write_text(deep)
    assert "nested too deeply" in _one_line_error(capsys, ["eval", "--oracle", "--data", str(tmp_path / "ann.json"),
                                                           "--images", str(tmp_path)])
    (tmp_path / "config.json").write_text(deep)
    assert "nested too deeply" in _one_line_error(capsys, ["train", "--config", str(tmp_path / "config.json"),
                                                           "--train", "x.json"])


def test_a_jpeg_declaring_its_size_after_a_large_exif_segment_is_still_checked(tmp_path) -> None:
    """The size of a JPEG follows its APP segments: one of 40 KB (an EXIF thumbnail) pushes it past the first
    read, and the check reads on."""
    ok, encoded = cv2.imencode(".jpg", np.zeros((16, 16, 3), np.uint8))
    data = bytearray(encoded.tobytes())
    sof = next(i for i in range(2, len(data) - 9) if data[i] == 0xFF and data[i + 1] == 0xC0)
    data[sof + 5:sof + 9] = struct.pack(">HH", 30000, 30000)  # height, width
    app1 = b"\xff\xe1" + struct.pack(">H", 40_002) + b"\0" * 40_000
    path = tmp_path / "exif.jpg"
    path.write_bytes(bytes(data[:2]) + app1 + bytes(data[2:]))
    with pytest.raises(DataError, match="declares 30000 x 30000 pixels"):
        read_image(path)
