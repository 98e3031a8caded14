"""Strings from users' files reach the terminal escaped (class names, file names, messages), and arrays given to
the facade are taken by their value range or refused in one line, never silently clipped."""
from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

from centernet.cli import main
from centernet.data.io import printable
from centernet.engine.errors import cli_warnings
from test_bad_inputs import Env, _picture

HOSTILE = "cat\x1b[2J\x1b[H\r\nerror: forged\u202e"  # clears the screen, then forges a line
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\x9b\u202e]")  # every control character but newline and tab


def test_printable_escapes_every_control_character() -> None:
    assert printable(HOSTILE) == "cat\\x1b[2J\\x1b[H\\r\\nerror: forged\\u202e"
    assert printable("3 images:\n  a.png\n  b.png", keep_newlines=True) == "3 images:\n  a.png\n  b.png"  # a listing
    assert printable("a\nerror: b", keep_newlines=True) == "a\\nerror: b"  # no other line breaks
    assert printable("caf\u00e9 \u732b") == "caf\u00e9 \u732b"  # printable text stays as it is
    assert printable(b"x\xffy".decode("utf-8", "surrogateescape")) == "x\\udcffy"  # a non-UTF-8 file name


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> tuple[Env, Path]:
    """A data set whose class names and an image's file name hold terminal escapes, and a model trained on it."""
    root = tmp_path_factory.mktemp("hostile")
    env = Env(root)
    ann = json.loads(env.ann.read_text())
    ann["categories"][0]["name"] = HOSTILE
    env.ann.write_text(json.dumps(ann))
    assert main(env.train(out=str(root / "run"))) == 0
    photo = root / f"photo{HOSTILE.replace(chr(10), '').replace('/', '')}.png"
    cv2.imwrite(str(photo), _picture())
    return env, photo


def _shown(capsys) -> str:
    out = capsys.readouterr()
    return out.out + out.err


def test_names_from_files_are_printed_escaped(hostile, tmp_path: Path, monkeypatch, capsys) -> None:
    env, photo = hostile
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    checkpoint = env.root / "run" / "last.pth"
    assert main(["predict", str(checkpoint), str(photo), "--score", "0", "--out", str(tmp_path / "p")]) == 0
    assert main(["train", "--resume", str(checkpoint), "--epochs", "2", "--workers", "0", "--device", "cpu"]) == 0
    shown = _shown(capsys)
    assert "\\x1b[2J" in shown  # the file name was shown, escaped
    assert not CONTROL.search(shown), repr(CONTROL.search(shown))
    assert not any(line.startswith("error: forged") for line in shown.splitlines())


def test_messages_naming_hostile_files_are_one_escaped_line(hostile, tmp_path: Path, monkeypatch, capsys) -> None:
    env, photo = hostile
    monkeypatch.chdir(tmp_path)
    missing = tmp_path / f"nope{HOSTILE.replace('/', '')}.json"
    capsys.readouterr()
    assert main(env.train(ann=missing)) == 2  # an error naming the file
    broken = tmp_path / f"broken{HOSTILE.replace('/', '')}.png"
    broken.write_bytes(b"not an image")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["predict", str(env.root / "run" / "last.pth"), str(photo), str(broken),
                     "--out", str(tmp_path / "p")]) == 0  # a warning naming the unreadable file
    with cli_warnings():  # as the command line shows warnings (pytest records them instead)
        shown = _shown(capsys) + "".join(warnings.formatwarning(w.message, w.category, w.filename, w.lineno)
                                         for w in caught)
    errors = [line for line in shown.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "data set not found" in errors[0]
    assert "warning: skipped 1 of 2 files" in shown and "broken" in shown
    assert not CONTROL.search(shown), repr(CONTROL.search(shown))


@pytest.fixture(scope="module")
def model(hostile):
    from centernet import CenterNet

    env, _ = hostile
    return CenterNet(str(env.checkpoint), device="cpu", progress=False)


def _same(a, b) -> None:
    assert len(a.rows) == len(b.rows)
    np.testing.assert_allclose(a.rows, b.rows, atol=1e-3)


def test_facade_takes_float_and_uint16_arrays_by_their_range(model) -> None:
    image = _picture()
    [base] = model.predict(image, score=0.0)
    _same(model.predict(image.astype(np.float32) / 255.0, score=0.0)[0], base)  # floats in [0, 1]
    _same(model.predict(image.astype(np.float64), score=0.0)[0], base)  # floats in [0, 255]
    _same(model.predict(image.astype(np.uint16) * 257, score=0.0)[0], base)  # 16 bits: 255 * 257 = 65535
    assert model.predict(image.astype(np.float32) / 255.0, score=0.0)[0].image.dtype == np.uint8


@pytest.mark.parametrize("array, says", [
    (np.full((64, 64, 3), -0.5, np.float32), "must hold values in [0, 1] (floats) or [0, 255], got -0.5 .. -0.5"),
    (np.full((64, 64, 3), np.nan, np.float32), "got nan .. nan"),
    (np.full((64, 64, 3), 1000, np.int32), "got 1000 .. 1000"),
    (np.zeros((64, 64, 3), bool), "must be uint8, uint16, another integer type or float, got bool"),
    (np.zeros((0, 64, 3), np.float32), "must not be empty"),
])
def test_facade_refuses_arrays_it_cannot_read_in_one_line(model, array, says) -> None:
    with pytest.raises(ValueError) as caught:
        model.predict(array)
    assert says in str(caught.value) and "\n" not in str(caught.value)
