"""The catalogue of bad inputs (docs/bad_inputs.md): each goes through the CLI as a user would type it and
gets its documented outcome: it runs, it runs with a counted warning naming the files, or it stops with
one clear message naming the file and the problem (exit code 2, no traceback)."""
from __future__ import annotations

import json
import pickle
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import pytest
import torch

from centernet.cli import main
from centernet.data import make_synthetic_dataset

DOCS = Path(__file__).resolve().parents[1] / "docs" / "bad_inputs.md"
RUNS, WARNS, FAILS = "runs", "runs with a counted warning", "error, exit code 2"


class Env:
    """A small synthetic COCO set, a trained checkpoint, and makers of damaged copies (all under ``root``)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = make_synthetic_dataset(root / "data", num_train=8, num_val=2, image_size=(64, 64))
        self.ann = Path(self.data["train_ann"])
        self.val = str(self.data["val_ann"])
        assert main(self.train(out=str(root / "good"))) == 0
        self.checkpoint = root / "good" / "last.pth"

    def train(self, *extra: str, ann: str | Path | None = None, out: str | None = None) -> list[str]:
        """A one-epoch, two-step CPU training command of a tiny model at 64x64."""
        argv = ["train", "--preset", "ctdet_cpu_small", "--arch", "resdcn_18_tiny", "--train", str(ann or self.ann),
                "--epochs", "1", "--batch-size", "4", "--workers", "0", "--device", "cpu",
                "--set", "data.input_size=[64,64]", "train.max_steps_per_epoch=2", "train.flops=false"]
        return argv + (["--out", out] if out else []) + list(extra)

    def coco_copy(self, name: str, mutate: Callable[[Path, dict], None]) -> Path:
        """A copy of the training set after ``mutate(image_dir, annotations)``; returns its json."""
        folder = self.root / name
        if not folder.exists():
            shutil.copytree(self.root / "data", folder)
            ann_file = folder / "annotations" / self.ann.name
            content = json.loads(ann_file.read_text())
            mutate(folder / Path(self.data["train_images"]).name, content)
            ann_file.write_text(json.dumps(content))
        return folder / "annotations" / self.ann.name

    def yolo_set(self, name: str, labels: dict[str, str], classes: str | None = None) -> Path:
        """A YOLO folder (images/ + labels/) with 64x64 images and the given label texts."""
        folder = self.root / name
        (folder / "images").mkdir(parents=True, exist_ok=True)
        (folder / "labels").mkdir(exist_ok=True)
        for stem, text in labels.items():
            cv2.imwrite(str(folder / "images" / f"{stem}.png"), _picture())
            (folder / "labels" / f"{stem}.txt").write_text(text)
        if classes is not None:
            (folder / "labels" / "classes.txt").write_text(classes)
        return folder


def _picture() -> np.ndarray:
    image = np.full((64, 64, 3), 90, np.uint8)
    cv2.rectangle(image, (10, 12), (40, 50), (20, 200, 240), -1)
    return image


def _evil_reduce(marker: Path):
    class Payload:
        def __reduce__(self):
            return (shutil.copy, (__file__, str(marker)))  # would create the marker file
    return Payload()


# ------------------------------------------------------------------------------------------ damaged inputs
def _missing_images(d: Path, a: dict) -> None:
    for entry in a["images"][:2]:
        (d / entry["file_name"]).unlink()


def _garbage_image(d: Path, a: dict) -> None:
    (d / a["images"][1]["file_name"]).write_bytes(b"\xff\xd8 not really a jpeg")


def _resized_image(d: Path, a: dict) -> None:
    path = d / a["images"][1]["file_name"]
    cv2.imwrite(str(path), cv2.resize(cv2.imread(str(path)), (80, 72)))


def _truncated_jpeg(d: Path, a: dict) -> None:
    path = d / a["images"][1]["file_name"]
    encoded = cv2.imencode(".jpg", cv2.imread(str(path)))[1].tobytes()
    path.unlink()
    a["images"][1]["file_name"] = "cut.jpg"
    (d / "cut.jpg").write_bytes(encoded[: int(len(encoded) * 0.7)])


def _header_only_jpeg(d: Path, a: dict) -> None:
    """A JPEG of the annotated size cut after its frame header and closed: its header and end marker are
    sound, its image data is missing."""
    path = d / a["images"][1]["file_name"]
    data, at = cv2.imencode(".jpg", cv2.imread(str(path)))[1].tobytes(), 2
    while data[at + 1] != 0xC0:
        at += 2 + int.from_bytes(data[at + 2:at + 4], "big")
    path.unlink()
    a["images"][1]["file_name"] = "noscan.jpg"
    (d / "noscan.jpg").write_bytes(data[:at + 2 + int.from_bytes(data[at + 2:at + 4], "big")] + b"\xff\xd9")


def _bad_boxes(d: Path, a: dict) -> None:
    a["annotations"][0]["bbox"] = [10, 10, 0, 5]  # zero width
    a["annotations"][1]["bbox"] = [50, 50, 40, 40]  # sticks out of the 64x64 image


def _unknown_category(d: Path, a: dict) -> None:
    a["annotations"][0]["category_id"] = 99


def _write(path: Path, content: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def _checkpoint_variant(env: Env, name: str, change: Callable[[dict], None]) -> Path:
    payload = torch.load(env.checkpoint, weights_only=True)
    change(payload)
    torch.save(payload, env.root / name)
    return env.root / name


def _other_arch(payload: dict) -> None:
    from centernet.app.builders import model_from_config, task_from_config
    from centernet.config import ExperimentConfig

    cfg = ExperimentConfig.from_dict(payload["config"])
    cfg.model.arch = "dla_tiny"
    payload["model"] = model_from_config(cfg, task_from_config(cfg)).state_dict()


def _corrupt_middle(path: Path) -> Path:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 64] = bytes(64)
    return _write(path.with_name("corrupt.pth"), bytes(data))


# ------------------------------------------------------------------------------------------ the catalogue
@dataclass
class Case:
    id: str
    what: str
    outcome: str
    argv: Callable[[Env, Path], list[str]]  # (env, case folder) -> command line
    says: Callable[[Env, Path], list[str]] = lambda env, tmp: []  # text the error / warning must contain
    check: Callable[[Env, Path], None] | None = None  # further assertions after the command
    tags: list[str] = field(default_factory=list)


def _yolo_far(env: Env, tmp: Path) -> Path:
    return env.yolo_set("yolo_far", {"a": "0 0.5 0.5 0.2 0.2\n", "b": "0 0.5 1.7 0.2 0.2\n"})


def _predict_folder(env: Env, tmp: Path) -> Path:
    folder = tmp / "pictures"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.jpg"), _picture())
    cv2.imwrite(str(folder / "a.png"), _picture()[:, ::-1])
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 nope")
    return folder


def _check_predict_folder(env: Env, tmp: Path) -> None:
    assert sorted(p.name for p in (tmp / "pred").glob("*_pred.jpg")) == ["a_jpg_pred.jpg", "a_png_pred.jpg"]
    results = json.loads((tmp / "pred" / "detections.json").read_text())
    assert {r["file_name"] for r in results} == {"a.jpg", "a.png"}
    for r in results:  # clipped to the 64x64 image
        x, y, w, h = r["bbox"]
        assert 0 <= x and 0 <= y and x + w <= 64 + 1e-3 and y + h <= 64 + 1e-3


def _check_resumed(env: Env, tmp: Path) -> None:
    run = tmp / "r"
    config = json.loads((run / "config.json").read_text())
    assert config["train"]["epochs"] == 2 and config["train"]["lr"] == 0.0005
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2] and records[1]["lr"] == 0.0005


def _check_numbered(env: Env, tmp: Path) -> None:
    assert main(env.train()) == 0
    assert (tmp / "runs" / "train" / "last.pth").is_file() and (tmp / "runs" / "train2" / "last.pth").is_file()


def _check_diverged(env: Env, tmp: Path) -> None:
    assert not (tmp / "nan" / "last.pth").exists()


def _prepare_run(env: Env, tmp: Path, name: str = "r") -> str:
    assert main(env.train(out=str(tmp / name))) == 0
    return str(tmp / name)


def _evil_file(env: Env, tmp: Path) -> Path:
    path = tmp / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump(_evil_reduce(tmp / "MARKER"), f)
    return path


def _no_marker(env: Env, tmp: Path) -> None:
    assert not (tmp / "MARKER").exists()


CASES = [
    # -- data sets and images --------------------------------------------------------------------------
    Case("D1", "--train path that does not exist", FAILS,
         lambda e, t: e.train(ann=t / "nope.json"), lambda e, t: ["data set not found", "nope.json"]),
    Case("D2", "COCO json that is not json", FAILS,
         lambda e, t: e.train("--images", str(t), ann=_write(t / "bad.json", "{not json")),
         lambda e, t: ["bad.json", "not valid json"]),
    Case("D3", "COCO json without 'annotations'", FAILS,
         lambda e, t: e.train("--images", str(t), ann=_write(t / "x.json", '{"images": [], "categories": []}')),
         lambda e, t: ["x.json", "missing or non-list key(s) ['annotations']"]),
    Case("D4", "annotation with an unknown category id", FAILS,
         lambda e, t: e.train(ann=e.coco_copy("cat", _unknown_category)),
         lambda e, t: ["instances_train.json", "unknown category id 99"]),
    Case("D5", "two image files missing", FAILS,
         lambda e, t: e.train(ann=e.coco_copy("missing", _missing_images)),
         lambda e, t: ["2 of 8 training images cannot be used", "000001.png: not found", "000002.png: not found"]),
    Case("D6", "an image file that does not decode", FAILS,
         lambda e, t: e.train(ann=e.coco_copy("garbage", _garbage_image)),
         lambda e, t: ["000002.png: cannot be decoded"]),
    Case("D7", "an image whose size differs from the annotation's width/height", FAILS,
         lambda e, t: e.train(ann=e.coco_copy("resized", _resized_image)),
         lambda e, t: ["000002.png: the image is 80x72 but its annotation says 64x64"]),
    Case("D7e", "the same image-size mismatch given to eval --oracle", FAILS,
         lambda e, t: ["eval", "--oracle", "--data", str(e.coco_copy("resized", _resized_image)), "--workers", "0"],
         lambda e, t: ["evaluation images cannot be used", "000002.png: the image is 80x72"]),
    Case("D8", "a truncated JPEG (decodes with a libjpeg warning)", WARNS,
         lambda e, t: e.train(ann=e.coco_copy("truncated", _truncated_jpeg), out=str(t / "r")),
         lambda e, t: ["1 of 8 training images are damaged but usable", "cut.jpg: truncated"]),
    Case("D9", "an undecodable image read in a DataLoader worker (checks off, --workers 1)", FAILS,
         lambda e, t: e.train("--workers", "1", "--set", "data.verify=false",
                              ann=e.coco_copy("garbage", _garbage_image), out=str(t / "r")),
         lambda e, t: ["image could not be decoded", "000002.png"]),
    Case("D9h", "an image with a sound header and end marker whose data does not decode, checked by headers "
                "(`data.verify=headers`, as `true` checks sets of over 10,000 images)", FAILS,
         lambda e, t: e.train("--workers", "1", "--set", "data.verify=headers",
                              ann=e.coco_copy("noscan", _header_only_jpeg), out=str(t / "r")),
         lambda e, t: ["image could not be decoded", "noscan.jpg"]),
    Case("D10", "boxes of zero size or sticking out of the image", WARNS,
         lambda e, t: e.train(ann=e.coco_copy("boxes", _bad_boxes), out=str(t / "r")),
         lambda e, t: ["skipped 1 degenerate boxes", "clipped 1 boxes"]),
    Case("D11", "YOLO labels slightly outside [0, 1]", WARNS,
         lambda e, t: e.train(ann=e.yolo_set("yolo_near", {"a": "0 0.5 0.5 0.2 0.2\n", "b": "0 1.01 0.5 0.3 0.2\n",
                                                            "c": "0 0.5 -0.004 0.2 0.2\n"}), out=str(t / "r")),
         lambda e, t: ["clipped 2 label lines in 2 files", "b.txt", "c.txt"]),
    Case("D12", "YOLO label far outside [0, 1]", FAILS,
         lambda e, t: e.train(ann=_yolo_far(e, t)), lambda e, t: ["b.txt line 1", "must be normalised"]),
    Case("D13", "YOLO class index beyond classes.txt", FAILS,
         lambda e, t: e.train(ann=e.yolo_set("yolo_cls", {"a": "3 0.5 0.5 0.2 0.2\n"}, classes="x\ny\n")),
         lambda e, t: ["a.txt line 1", "class index 3 out of range for 2 classes"]),
    Case("D14", "malformed VOC xml", FAILS,
         lambda e, t: e.train(ann=_voc_broken(t)), lambda e, t: ["bad.xml", "malformed VOC xml"]),
    Case("D15", "--train file of an unknown format", FAILS,
         lambda e, t: e.train(ann=_write(t / "list.txt", "a.jpg\n")), lambda e, t: ["list.txt", "cannot guess"]),
    # -- checkpoints ------------------------------------------------------------------------------------
    Case("C1", "a pickle whose payload runs code (eval)", FAILS,
         lambda e, t: ["eval", str(_evil_file(e, t)), "--data", e.val, "--workers", "0"],
         lambda e, t: ["refused", "evil.pth"], _no_marker),
    Case("C2", "a real checkpoint with a payload hidden in its history (predict)", FAILS,
         lambda e, t: ["predict", str(_checkpoint_variant(e, "hidden.pth", lambda p: p["history"].append(
             {"x": _evil_reduce(t / "MARKER")}))), str(e.data["val_images"]), "--out", str(t / "pred")],
         lambda e, t: ["refused", "hidden.pth", "would run code"], _no_marker),
    Case("C3", "a truncated checkpoint", FAILS,
         lambda e, t: ["eval", str(_write(t / "cut.pth", e.checkpoint.read_bytes()[:5000])), "--data", e.val],
         lambda e, t: ["not a complete checkpoint", "cut.pth"]),
    Case("C4", "a checkpoint with corrupt bytes inside", FAILS,
         lambda e, t: ["export", str(_corrupt_middle(_write(t / "copy.pth", e.checkpoint.read_bytes()))),
                       "--out", str(t / "m.onnx")],
         lambda e, t: ["not a complete checkpoint", "corrupt.pth"]),
    Case("C5", "a text file given as checkpoint", FAILS,
         lambda e, t: ["analyze", str(_write(t / "notes.pth", "hello\n")), "--data", e.val],
         lambda e, t: ["not a complete checkpoint", "notes.pth"]),
    Case("C6", "a checkpoint path that does not exist", FAILS,
         lambda e, t: ["eval", str(t / "nope.pth"), "--data", e.val],
         lambda e, t: ["checkpoint not found", "nope.pth"]),
    Case("C7", "an original CenterNet file given to eval", FAILS,
         lambda e, t: ["eval", str(_original_file(e, t)), "--data", e.val],
         lambda e, t: ["original.pth", "not a centernet checkpoint", "load_official_checkpoint"]),
    Case("C8", "weights of another architecture than the checkpoint's config", FAILS,
         lambda e, t: ["eval", str(_checkpoint_variant(e, "other.pth", _other_arch)), "--data", e.val],
         lambda e, t: ["other.pth", "do not fit", "missing from the file", "unexpected in the file"]),
    Case("C9", "eval on data with another number of classes", FAILS,
         lambda e, t: ["eval", str(e.checkpoint), "--data", str(e.yolo_set("yolo1", {"a": "0 0.5 0.5 0.2 0.2\n"}))],
         lambda e, t: ["has 1 classes, the model predicts 3"]),
    Case("C10", "a file that is not ONNX given to predict as .onnx", FAILS,
         lambda e, t: ["predict", str(_write(t / "model.onnx", b"garbage")), str(e.data["val_images"]),
                       "--out", str(t / "pred")],
         lambda e, t: ["model.onnx"]),
    Case("C11", "--resume from a weights-only checkpoint", FAILS,
         lambda e, t: ["train", "--resume", str(_weights_only(e, t)), "--workers", "0"],
         lambda e, t: ["weights.pth cannot be resumed", "no optimizer"]),
    # -- command line and run folders ---------------------------------------------------------------------
    Case("A1", "--out of a folder that holds a run", FAILS,
         lambda e, t: e.train(out=_prepare_run(e, t)), lambda e, t: ["already holds a run", "--exist-ok"]),
    Case("A2", "--out of a folder that holds a run, with --exist-ok", RUNS,
         lambda e, t: e.train("--exist-ok", out=_prepare_run(e, t))),
    Case("A3", "no --out, twice", RUNS, lambda e, t: e.train(), check=_check_numbered),
    Case("A4", "--resume with --epochs and --lr (both apply)", RUNS,
         lambda e, t: ["train", "--resume", f"{_prepare_run(e, t)}/last.pth", "--epochs", "2", "--lr", "5e-4",
                       "--workers", "0", "--device", "cpu"], check=_check_resumed),
    Case("A5", "--resume with another --arch", FAILS,
         lambda e, t: ["train", "--resume", f"{_prepare_run(e, t)}/last.pth", "--arch", "dla_tiny"],
         lambda e, t: ["cannot change model.arch 'resdcn_18_tiny' -> 'dla_tiny'"]),
    Case("A6", "--resume with another --out", FAILS,
         lambda e, t: ["train", "--resume", f"{_prepare_run(e, t)}/last.pth", "--out", str(t / "elsewhere")],
         lambda e, t: ["continues in the checkpoint's own folder"]),
    Case("A7", "--set of an unknown field", FAILS,
         lambda e, t: e.train("--set", "train.nope=1"), lambda e, t: ["unknown config field 'train.nope'"]),
    Case("A8", "--set with a value of the wrong type", FAILS,
         lambda e, t: e.train("--set", "train.epochs=ten"), lambda e, t: ["train.epochs must be int", "'ten'"]),
    Case("A9", "--batch-size 0", FAILS,
         lambda e, t: e.train("--batch-size", "0"), lambda e, t: ["train.batch_size must be at least 1"]),
    Case("A10", "an input size the network cannot take", FAILS,
         lambda e, t: e.train("--set", "data.input_size=[65,65]"), lambda e, t: ["output maps whose sides are multiples of 8"]),
    Case("A11", "an unknown --device", FAILS,
         lambda e, t: e.train("--device", "gpu"), lambda e, t: ["unknown device 'gpu'"]),
    Case("A12", "a learning rate that makes the loss NaN", FAILS,
         lambda e, t: e.train("--batch-size", "1", "--set", "train.lr=1e30", "train.max_bad_steps=2",
                              "train.max_steps_per_epoch=8", out=str(t / "nan")),
         lambda e, t: ["training diverged: 2 steps in a row", "No checkpoint was written"], _check_diverged),
    Case("A13", "--config file that is not json", FAILS,
         lambda e, t: e.train("--config", str(_write(t / "config.json", "{oops"))),
         lambda e, t: ["config.json: not a usable config file"]),
    Case("A14", "--resume with the run's own --config (as the README shows)", RUNS,
         lambda e, t: ["train", "--config", f"{_prepare_run(e, t)}/config.json", "--resume", f"{t}/r/last.pth",
                       "--epochs", "2", "--workers", "0", "--device", "cpu"]),
    # -- predict ----------------------------------------------------------------------------------------------
    Case("P1", "predict on a folder with an unreadable file and a.jpg + a.png", WARNS,
         lambda e, t: ["predict", str(e.checkpoint), str(_predict_folder(e, t)), "--out", str(t / "pred"),
                       "--score", "0"],
         lambda e, t: ["skipped 1 of 3 files", "broken.jpg"], _check_predict_folder),
    Case("P2", "predict on a single unreadable image", FAILS,
         lambda e, t: ["predict", str(e.checkpoint), str(_write(t / "x.png", b"nope")), "--out", str(t / "pred")],
         lambda e, t: ["could not be decoded", "x.png"]),
    Case("P3", "predict on an input that does not exist", FAILS,
         lambda e, t: ["predict", str(e.checkpoint), str(t / "none.jpg"), "--out", str(t / "pred")],
         lambda e, t: ["input not found", "none.jpg"]),
]


def _voc_broken(tmp: Path) -> Path:
    _write(tmp / "voc" / "annotations" / "bad.xml", "<annotation><filename>x.jpg</filename")
    (tmp / "voc" / "images").mkdir()
    cv2.imwrite(str(tmp / "voc" / "images" / "x.jpg"), _picture())
    return tmp / "voc"


def _original_file(env: Env, tmp: Path) -> Path:
    torch.save({"epoch": 3, "state_dict": {"hm.weight": torch.zeros(3)}}, tmp / "original.pth")
    return tmp / "original.pth"


def _weights_only(env: Env, tmp: Path) -> Path:
    from centernet.app.builders import load_checkpoint
    from centernet.engine.checkpoint import save_checkpoint

    cfg, model, _ = load_checkpoint(env.checkpoint)
    save_checkpoint(tmp / "weights.pth", cfg, model)
    return tmp / "weights.pth"


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> Env:
    return Env(tmp_path_factory.mktemp("bad_inputs"))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_catalogue(case: Case, env: Env, tmp_path: Path, monkeypatch, capsys) -> None:
    run_case(case, env, tmp_path, monkeypatch, capsys)


def run_case(case: Case, env: Env, tmp_path: Path, monkeypatch, capsys) -> None:
    """Run ``case`` through the CLI in ``tmp_path`` and assert its documented outcome."""
    monkeypatch.chdir(tmp_path)
    argv = case.argv(env, tmp_path)
    capsys.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse
            code = exc.code
    err = capsys.readouterr().err
    warned = "\n".join(str(w.message) for w in caught if issubclass(w.category, UserWarning))
    assert "Traceback" not in err
    if case.outcome == FAILS:
        assert code == 2, f"{case.id}: exit {code}, stderr {err!r}"
        assert err.startswith("error: "), err
        shown = err
    else:
        assert code == 0, f"{case.id}: exit {code}, stderr {err!r}"
        shown = warned
        assert bool(warned) == (case.outcome == WARNS), warned
    for text in case.says(env, tmp_path):
        assert text in shown, f"{case.id}: {text!r} not in {shown!r}"
    if case.check is not None:
        case.check(env, tmp_path)


def test_the_catalogue_is_documented() -> None:
    """docs/bad_inputs.md has one row per case with the outcome asserted above."""
    assert len(CASES) >= 25
    assert_documented(CASES)


def assert_documented(cases: list[Case]) -> None:
    rows = {line.split("|")[1].strip(): line for line in DOCS.read_text().splitlines() if line.startswith("| ")}
    for case in cases:
        assert case.id in rows, f"{case.id} missing from {DOCS}"
        assert f"| {case.outcome} |" in rows[case.id], f"{case.id}: docs say {rows[case.id]!r}, test: {case.outcome!r}"
