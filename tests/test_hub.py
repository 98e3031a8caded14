"""Downloads and the weights registry, against a local HTTP server on 127.0.0.1 (no internet needed)."""
from __future__ import annotations

import hashlib
import socket
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from centernet.weights import download as hub
from centernet.weights.catalogue import (COCO_CLASSES, VOC_CLASSES, WeightsInfo, imagenet_weights, known_weights,
                                         weights_info)

PAYLOAD = bytes(range(256)) * 4096 + b"tail"  # 1 MiB + 4 bytes: several read chunks' worth
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    requests: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        type(self).requests.append(self.path)
        if self.path == "/good.pth":
            self._head(200, "application/octet-stream", len(PAYLOAD))
            self.wfile.write(PAYLOAD)
        elif self.path == "/drop.pth":  # announces the whole file, sends a third, hangs up
            self._head(200, "application/octet-stream", len(PAYLOAD))
            self.wfile.write(PAYLOAD[: len(PAYLOAD) // 3])
            self.wfile.flush()
            self.close_connection = True
        elif self.path == "/page.pth":
            body = b"<html>please confirm</html>"
            self._head(200, "text/html; charset=utf-8", len(body))
            self.wfile.write(body)
        else:
            self._head(404, "text/plain", 0)

    def _head(self, code: int, ctype: str, length: int) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(length))
        self.end_headers()

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass


@pytest.fixture()
def server():
    _Handler.requests = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture()
def cache(tmp_path, monkeypatch) -> Path:
    """The hub cache under tmp_path: the real ~/.cache/torch is never touched."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch" / "hub" / "checkpoints"


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_cache_dir_follows_torch_home(cache):
    assert hub.cache_dir() == cache


def test_good_download_checks_hash(server, cache):
    path = hub.download(f"{server}/good.pth", sha256=DIGEST, progress=False)
    assert path == cache / "good.pth"
    assert path.read_bytes() == PAYLOAD
    assert _files(cache) == ["good.pth"]  # no temp file left
    prefixed = hub.download(f"{server}/good.pth", cache / "other-x.pth", sha256=DIGEST[:8], progress=False)
    assert prefixed.read_bytes() == PAYLOAD


def test_wrong_hash_is_refused_and_removed(server, cache):
    wrong = "0" * 64 if not DIGEST.startswith("0") else "1" * 64
    with pytest.raises(hub.DownloadError) as err:
        hub.download(f"{server}/good.pth", sha256=wrong, progress=False)
    message = str(err.value)
    assert "\n" not in message and "sha256" in message and str(cache / "good.pth") in message
    assert _files(cache) == []


def test_wrong_size_is_refused(server, cache):
    with pytest.raises(hub.DownloadError, match="bytes, expected"):
        hub.download(f"{server}/good.pth", size=len(PAYLOAD) + 1, progress=False)
    assert _files(cache) == []


def test_interrupted_download_leaves_no_file(server, cache):
    with pytest.raises(hub.DownloadError) as err:
        hub.download(f"{server}/drop.pth", sha256=DIGEST, progress=False)
    assert "\n" not in str(err.value) and "drop.pth" in str(err.value)
    assert _files(cache) == []


def test_web_page_instead_of_file(server, cache):
    with pytest.raises(hub.DownloadError, match="web page"):
        hub.download(f"{server}/page.pth", progress=False)
    assert _files(cache) == []


def test_http_error_is_one_line(server, cache):
    with pytest.raises(hub.DownloadError, match="HTTP 404"):
        hub.download(f"{server}/missing.pth", progress=False)


def test_offline_is_one_clear_line(cache):
    with socket.socket() as s:  # a port nobody listens on: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/resnet18-f37072fd.pth"
    with pytest.raises(hub.DownloadError) as err:
        hub.download(url, progress=False, hint="train without (--pretrained none)")
    message = str(err.value)
    assert message.startswith(f"could not download resnet18-f37072fd.pth from {url} (no connection")
    assert f"put the file at {cache / 'resnet18-f37072fd.pth'} or train without (--pretrained none)" in message
    assert "\n" not in message
    assert _files(cache) == []


def _fake_entry(monkeypatch, url: str | None, sha256: str | None) -> None:
    info = WeightsInfo(name="tiny_zoo", file="tiny_zoo.pth", url=url, kind="detector", arch="dla_tiny",
                       sha256=sha256)
    monkeypatch.setattr(hub, "is_known", lambda name: name == "tiny_zoo")
    monkeypatch.setattr(hub, "weights_info", lambda name: info)


def test_known_name_downloads_once_then_uses_cache(server, cache, monkeypatch):
    _fake_entry(monkeypatch, f"{server}/good.pth", DIGEST)
    first = hub.resolve_weights("tiny_zoo", progress=False)
    second = hub.resolve_weights("tiny_zoo", progress=False)
    assert first == second == cache / "tiny_zoo.pth"
    assert _Handler.requests == ["/good.pth"]


def test_file_placed_by_hand_is_used_without_network(cache, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("network used")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    _fake_entry(monkeypatch, "https://example.invalid/tiny_zoo.pth", DIGEST)
    cache.mkdir(parents=True)
    (cache / "tiny_zoo.pth").write_bytes(PAYLOAD)
    assert hub.resolve_weights("tiny_zoo") == cache / "tiny_zoo.pth"
    (cache / "tiny_zoo.pth").write_bytes(PAYLOAD[:-1])  # a wrong file by hand: refused, not deleted
    with pytest.raises(hub.DownloadError, match="tiny_zoo.pth: .*replace or delete"):
        hub.resolve_weights("tiny_zoo")
    assert (cache / "tiny_zoo.pth").exists()


def test_resolve_pretrained(server, cache, monkeypatch):
    assert hub.resolve_pretrained(None, "res_18") is None and hub.resolve_pretrained("none", "res_18") is None
    with pytest.raises(ValueError, match="no ImageNet weights are known for 'hourglass'.*--pretrained none"):
        hub.resolve_pretrained("imagenet", "hourglass")
    monkeypatch.setattr(hub, "imagenet_weights", lambda arch: "tiny_zoo" if arch == "res_18" else None)
    _fake_entry(monkeypatch, f"{server}/drop.pth", DIGEST)
    with pytest.raises(hub.DownloadError, match=r"put the file at .*tiny_zoo.pth or .*\(--pretrained none\)$"):
        hub.resolve_pretrained("imagenet", "res_18", progress=False)
    _fake_entry(monkeypatch, f"{server}/good.pth", DIGEST)
    assert hub.resolve_pretrained("imagenet", "res_18", progress=False) == cache / "tiny_zoo.pth"


def test_existing_path_passes_through(tmp_path, cache):
    own = tmp_path / "mine.pth"
    own.write_bytes(b"x")
    assert hub.resolve_weights(own) == own
    with pytest.raises(FileNotFoundError, match="not a known weights name"):
        hub.resolve_weights(tmp_path / "absent.pth")


def test_entry_without_url_says_where_to_put_it(cache):
    with pytest.raises(hub.DownloadError, match=f"put the file at {cache / 'exdet_coco_dla.pth'}"):
        hub.resolve_weights("exdet_coco_dla")


def test_registry():
    names = known_weights()
    for name in ("ctdet_coco_dla_2x", "ctdet_coco_resdcn18", "ctdet_coco_resdcn101", "ctdet_coco_hg",
                 "multi_pose_dla_3x", "multi_pose_hg_3x", "ddd_3dop", "ddd_sub", "ctdet_pascal_dla_512"):
        assert name in names
    dla = weights_info("ctdet_coco_dla_2x")
    assert (dla.arch, dla.task, dla.heads, dla.size) == ("dla_34", "ctdet", {"hm": 80, "wh": 2, "reg": 2},
                                                           80_911_783)
    assert dla.class_names == COCO_CLASSES and len(COCO_CLASSES) == 80 and len(set(COCO_CLASSES)) == 80
    assert weights_info("ctdet_pascal_dla_384").class_names == VOC_CLASSES and len(VOC_CLASSES) == 20
    pose = weights_info("multi_pose_dla_3x")
    assert pose.heads["hps"] == 2 * pose.heads["hm_hp"] == 34 and pose.class_names == ("person",)
    for name in names:  # a file name's 8-hex tag is its sha256 prefix; full digests are 64 hex
        info = weights_info(name)
        assert info.sha256 is None or len(info.sha256) in (8, 64)
        if info.kind == "backbone":
            assert info.url.endswith("/" + info.file) and info.file.endswith(f"-{info.sha256}.pth")
    assert imagenet_weights("resdcn_18") == imagenet_weights("res_18") == "resnet18_imagenet"
    assert imagenet_weights("dla_34") == "dla34_imagenet"
    assert imagenet_weights("hourglass") is None and imagenet_weights("resdcn_18_half") is None
    with pytest.raises(KeyError, match="known:"):
        weights_info("nope")


def test_registry_heads_build_the_named_architecture():
    """Every supported zoo entry's arch and heads build a model (shapes only: no download)."""
    from centernet import build_model

    info = weights_info("ctdet_coco_resdcn18")
    model = build_model(info.arch, info.heads)
    n_params = sum(p.numel() for p in model.parameters())
    assert abs(n_params / 1e6 - 14.44) < 0.01  # SPEC 8's count for resdcn_18 with 80 classes


def test_docs_list_every_known_name():
    text = (Path(__file__).resolve().parents[1] / "docs" / "weights.md").read_text()
    missing = [n for n in known_weights() if f"`{n}`" not in text and f"[{n}]" not in text and f"| {n} " not in text]
    assert not missing, f"docs/weights.md lacks {missing}"
