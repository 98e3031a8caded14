"""The catalogue continued (docs/bad_inputs.md, rows W and F): nothing a user made is overwritten unless they
asked (a command writes only what it creates, or what the same command wrote before; a run folder is locked
while a process trains in it; resuming from another checkpoint than the run's own last.pth branches into a new
folder), and every failure is one line."""
from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import pytest

from centernet.cli import main
from test_bad_inputs import FAILS, RUNS, Case, Env, _picture, _prepare_run, _write, assert_documented, run_case


def _unchanged(path_of):
    """A check that the file ``path_of(env, tmp)`` still has the bytes it had when the command line was built."""
    before: dict[str, bytes] = {}

    def remember(env: Env, tmp: Path) -> Path:
        path = path_of(env, tmp)
        before[str(path)] = path.read_bytes()
        return path

    def check(env: Env, tmp: Path) -> None:
        for name, data in before.items():
            assert Path(name).read_bytes() == data, f"{name} was changed"
    return remember, check


_ckpt_copy, _ckpt_unchanged = _unchanged(lambda e, t: _write(t / "model.pth", e.checkpoint.read_bytes()))
_label, _label_unchanged = _unchanged(lambda e, t: _write(t / "label_2" / "000000.txt", "Car 0 0 0 1 2 3 4\n"))
_photo, _photo_unchanged = _unchanged(lambda e, t: _photos(t) / "a_pred.jpg")


def _photos(tmp: Path) -> Path:
    folder = tmp / "photos"
    if not folder.is_dir():
        folder.mkdir()
        cv2.imwrite(str(folder / "a.jpg"), _picture())
        cv2.imwrite(str(folder / "a_pred.jpg"), _picture()[::-1])  # a photo named like a drawing
    return folder


def _two_cameras(tmp: Path) -> list[str]:
    for cam, flip in (("cam1", False), ("cam2", True)):
        (tmp / cam).mkdir()
        cv2.imwrite(str(tmp / cam / "a.png"), _picture()[:, ::-1] if flip else _picture())
    return [str(tmp / "cam1" / "a.png"), str(tmp / "cam2" / "a.png")]


def _check_two_cameras(env: Env, tmp: Path) -> None:
    drawings = sorted(p.name for p in (tmp / "pred").glob("*.jpg"))
    assert len(drawings) == 2, drawings
    names = {r["file_name"] for r in json.loads((tmp / "pred" / "detections.json").read_text())}
    assert names == {str(tmp / "cam1" / "a.png"), str(tmp / "cam2" / "a.png")}


def _predict_twice(env: Env, tmp: Path) -> list[str]:
    argv = ["predict", str(env.checkpoint), str(_photos(tmp) / "a.jpg"), "--out", str(tmp / "pred")]
    assert main(argv) == 0
    return argv


def _locked_run(env: Env, tmp: Path) -> str:
    folder = tmp / "busy"
    folder.mkdir()
    (folder / "train.lock").write_text(json.dumps({"pid": os.getpid(), "host": os.uname().nodename,
                                                   "since": "2026-01-01 10:00"}))
    return str(folder)


def _stale_lock(env: Env, tmp: Path) -> str:
    folder = tmp / "stale"
    folder.mkdir()
    (folder / "train.lock").write_text(json.dumps({"pid": 2 ** 22 + 12345, "host": os.uname().nodename}))
    return str(folder)


def _check_unlocked(env: Env, tmp: Path) -> None:
    assert (tmp / "stale" / "last.pth").is_file() and not (tmp / "stale" / "train.lock").exists()


_run_last: dict[str, bytes] = {}


def _resume_best(env: Env, tmp: Path) -> list[str]:
    run = Path(_prepare_run(env, tmp))
    (run / "best.pth").write_bytes((run / "last.pth").read_bytes())  # a best.pth as old as last.pth
    _run_last[str(tmp)] = (run / "last.pth").read_bytes() + (run / "log.jsonl").read_bytes()
    return ["train", "--resume", str(run / "best.pth"), "--epochs", "2", "--workers", "0", "--device", "cpu"]


def _check_branched(env: Env, tmp: Path) -> None:
    run, branch = tmp / "r", tmp / "r_resumed"
    assert (run / "last.pth").read_bytes() + (run / "log.jsonl").read_bytes() == _run_last[str(tmp)]
    records = [json.loads(line) for line in (branch / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]


def _empty_coco(env: Env, tmp: Path) -> Path:
    return _write(tmp / "empty.json", json.dumps({"images": [], "annotations": [],
                                                  "categories": [{"id": 1, "name": "a"}]}))


def _nothing_claimed(env: Env, tmp: Path) -> None:
    assert not (tmp / "runs").exists()


CASES = [
    # -- what commands write --------------------------------------------------------------------------------
    Case("W1", "eval --json onto a checkpoint", FAILS,
         lambda e, t: ["eval", str(e.checkpoint), "--data", e.val, "--workers", "0", "--json", str(_ckpt_copy(e, t))],
         lambda e, t: ["model.pth exists and is not an earlier output of centernet eval"], _ckpt_unchanged),
    Case("W2", "eval --results-dir onto a folder of label files", FAILS,
         lambda e, t: ["eval", str(e.checkpoint), "--data", e.val, "--workers", "0", "--results-dir",
                       str(_label(e, t).parent)],
         lambda e, t: ["label_2 holds files that centernet eval did not write (000000.txt)"], _label_unchanged),
    Case("W3", "predict --out equal to the input folder", FAILS,
         lambda e, t: ["predict", str(e.checkpoint), str(_photo(e, t).parent), "--out", str(t / "photos")],
         lambda e, t: ["holds the input"], _photo_unchanged),
    Case("W4", "predict twice into the same --out (its own outputs)", RUNS, _predict_twice),
    Case("W5", "predict on two inputs with the same name in two folders", RUNS,
         lambda e, t: ["predict", str(e.checkpoint), *_two_cameras(t), "--out", str(t / "pred"), "--score", "0"],
         check=_check_two_cameras),
    Case("W6", "export --out onto the checkpoint", FAILS,
         lambda e, t: ["export", str(_ckpt_copy(e, t)), "--out", str(t / "model.pth")],
         lambda e, t: ["is the checkpoint being exported"], _ckpt_unchanged),
    Case("W7", "analyze --json onto an image", FAILS,
         lambda e, t: ["analyze", str(e.checkpoint), "--data", e.val, "--workers", "0", "--json",
                       str(_photo(e, t))],
         lambda e, t: ["a_pred.jpg exists and is not an earlier output of centernet analyze"], _photo_unchanged),
    Case("W8", "train into a folder where another process trains", FAILS,
         lambda e, t: e.train(out=_locked_run(e, t)), lambda e, t: ["busy is in use: a training (process"]),
    Case("W9", "train into a folder whose lock was left by a process that is gone", RUNS,
         lambda e, t: e.train("--exist-ok", out=_stale_lock(e, t)), check=_check_unlocked),
    Case("W10", "--resume from best.pth (not the run's own last.pth)", RUNS, _resume_best, check=_check_branched),
    # -- failures are one line ----------------------------------------------------------------------------------
    Case("F1", "--scales nan", FAILS,
         lambda e, t: ["eval", str(e.checkpoint), "--data", e.val, "--scales", "nan"],
         lambda e, t: ["--scales: scales must be numbers in (0, 4], got 'nan'"]),
    Case("F2", "an empty training set", FAILS,
         lambda e, t: e.train("--images", str(t), ann=_empty_coco(e, t)),
         lambda e, t: ["no training images in", "empty.json"],
         _nothing_claimed),
    Case("F3", "an export size the network cannot take", FAILS,
         lambda e, t: ["export", str(e.checkpoint), "--out", str(t / "m.onnx"), "--size", "100,100"],
         lambda e, t: ["--size [100, 100] must be positive and give output maps"]),
    Case("F4", "an unknown command", FAILS, lambda e, t: ["nosuch"], lambda e, t: ["invalid choice: 'nosuch'"]),
]


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> Env:
    return Env(tmp_path_factory.mktemp("bad_outputs"))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_catalogue(case: Case, env: Env, tmp_path: Path, monkeypatch, capsys) -> None:
    run_case(case, env, tmp_path, monkeypatch, capsys)
    err = capsys.readouterr().err
    if case.outcome == FAILS:
        assert err.count("\n") <= 1, err  # one line


def test_the_catalogue_is_documented() -> None:
    assert_documented(CASES)


def test_full_disk_while_saving(env: Env, tmp_path: Path, monkeypatch, capsys) -> None:
    """A checkpoint that cannot be written (here torch.save fails as on a full disk) is one line naming the
    file, and the earlier checkpoint stays whole."""
    import torch

    from centernet.engine import checkpoint

    run = Path(_prepare_run(env, tmp_path))
    before = (run / "last.pth").read_bytes()

    def full_disk(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 64 vs 0\n"
                           "PytorchStreamWriter failed writing file data/0: file write failed")

    monkeypatch.setattr(torch, "save", full_disk)
    assert checkpoint.torch.save is full_disk
    code = main(["train", "--resume", str(run / "last.pth"), "--epochs", "2", "--workers", "0", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: could not write") and err.count("\n") == 1, err
    assert "last.pth" in err and "unchanged" in err
    assert (run / "last.pth").read_bytes() == before
    assert not list(run.glob(".*.tmp")) and not (run / "train.lock").exists()
