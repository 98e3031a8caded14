"""Inputs people use: http(s) image URLs (through the project's download code, offline in one line) and
cameras by index, in `centernet predict` and the facade."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np
import pytest

from centernet.cli import main
from centernet.engine import inputs
from test_bad_inputs import Env, _picture

PHOTO = cv2.imencode(".jpg", _picture())[1].tobytes()


class _Images(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        body = PHOTO if self.path.startswith("/photos/") else b"no"
        self.send_response(200 if body is PHOTO else 404)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture()
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Images)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> Env:
    return Env(tmp_path_factory.mktemp("web"))


def test_predict_on_urls_equals_predict_on_the_file(env: Env, server: str, tmp_path: Path) -> None:
    local = tmp_path / "a.jpg"
    local.write_bytes(PHOTO)
    urls = [f"{server}/photos/a.jpg", f"{server}/photos/other/a.jpg?size=big"]  # two URLs, one file name
    assert main(["predict", str(env.checkpoint), *urls, "--out", str(tmp_path / "web"), "--score", "0"]) == 0
    assert main(["predict", str(env.checkpoint), str(local), "--out", str(tmp_path / "file"), "--score", "0"]) == 0
    web = json.loads((tmp_path / "web" / "detections.json").read_text())
    file = json.loads((tmp_path / "file" / "detections.json").read_text())
    assert len(web) == 2 * len(file) > 0
    assert sorted(r["score"] for r in web[: len(file)]) == pytest.approx(sorted(r["score"] for r in file))
    assert len(list((tmp_path / "web").glob("*_pred.jpg"))) == 2


def test_facade_predicts_on_a_url(env: Env, server: str) -> None:
    from centernet import CenterNet

    model = CenterNet(str(env.checkpoint), device="cpu", progress=False)
    [from_url] = model.predict(f"{server}/photos/a.jpg", score=0.0)
    [from_array] = model.predict(cv2.imdecode(np.frombuffer(PHOTO, np.uint8), cv2.IMREAD_COLOR), score=0.0)
    np.testing.assert_allclose(from_url.rows, from_array.rows, atol=1e-4)
    with pytest.raises(ValueError, match="for cameras use model.save_predictions"):
        model.predict(0)


def test_unreachable_url_is_one_line(env: Env, server: str, tmp_path: Path, capsys) -> None:
    capsys.readouterr()
    assert main(["predict", str(env.checkpoint), f"{server}/missing.jpg", "--out", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: could not download missing.jpg") and "HTTP 404" in err and err.count("\n") == 1
    assert main(["predict", str(env.checkpoint), "http://127.0.0.1:9/x.jpg", "--out", str(tmp_path / "q")]) == 2
    err = capsys.readouterr().err
    assert "no connection" in err and err.count("\n") == 1


class _Camera:
    """cv2.VideoCapture of a camera that gives three frames, then stops."""

    def __init__(self, source) -> None:
        self.source, self.left = source, 3

    def isOpened(self) -> bool:  # noqa: N802 (OpenCV's name)
        return self.source == 0

    def get(self, prop) -> float:
        return 0.0

    def read(self):
        self.left -= 1
        return (self.left >= 0), (_picture() if self.left >= 0 else None)

    def release(self) -> None:
        pass


def test_predict_on_a_camera_index(env: Env, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(inputs.cv2, "VideoCapture", _Camera)
    monkeypatch.chdir(tmp_path)
    assert main(["predict", str(env.checkpoint), "0", "--out", str(tmp_path / "cam"), "--score", "0"]) == 0
    assert (tmp_path / "cam" / "camera0_pred.mp4").is_file()
    names = {r["file_name"] for r in json.loads((tmp_path / "cam" / "detections.json").read_text())}
    assert names <= {f"camera0_{i:06d}" for i in range(3)} and names
    assert main(["predict", str(env.checkpoint), "1", "--out", str(tmp_path / "cam1")]) == 2  # no camera 1
