"""Safe checkpoints, runs that never lose work, and guarded training steps."""
from __future__ import annotations

import json
import math
import os
import pickle
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from centernet.app.builders import load_checkpoint, model_from_config, open_source, task_from_config
from centernet.cli import main
from centernet.config import DataConfig, ExperimentConfig, ModelConfig, TaskConfig, TrainConfig
from centernet.data import make_synthetic_dataset
from centernet.data.io import truncated
from centernet.engine import checkpoint as ckpt
from centernet.engine.errors import TrainingDiverged
from centernet.ops.boxes import clip_boxes
from centernet.engine.rundir import append_log
from centernet.engine.trainer import Trainer
from centernet.weights.official import load_official_checkpoint
from centernet.weights.pretrained import load_pretrained_backbone

SRC = Path(__file__).resolve().parents[1] / "src"


class Payload:
    """Unpickling this would copy a file to ``marker``: proof that code from the file ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (shutil.copy, (__file__, str(self.marker)))


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> dict:
    return make_synthetic_dataset(tmp_path_factory.mktemp("safety"), num_train=8, num_val=2, image_size=(64, 64))


def train_argv(shapes: dict, out: Path, *extra: str, epochs: int = 1) -> list[str]:
    return ["train", "--preset", "ctdet_cpu_small", "--arch", "resdcn_18_tiny", "--train", str(shapes["train_ann"]),
            "--epochs", str(epochs), "--batch-size", "4", "--workers", "0", "--device", "cpu", "--out", str(out),
            "--set", "data.input_size=[64,64]", "train.max_steps_per_epoch=2", "train.flops=false",
            *extra]


@pytest.fixture(scope="module")
def trained(shapes, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("trained") / "run"
    assert main(train_argv(shapes, out)) == 0
    return out / "last.pth"


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["model"]


def assert_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


# ------------------------------------------------------------------------------------------ checkpoint loading
def test_payloads_never_run(shapes, trained, tmp_path, capsys):
    """A malicious pickle and a real checkpoint with a hidden payload, through every command that takes one."""
    marker = tmp_path / "MARKER"
    raw = tmp_path / "raw.pth"
    with open(raw, "wb") as f:
        pickle.dump(Payload(marker), f)
    payload = torch.load(trained, weights_only=True)
    payload["history"].append({"note": Payload(marker)})
    hidden = tmp_path / "hidden.pth"
    torch.save(payload, hidden)
    val = str(shapes["val_ann"])
    for path in (raw, hidden):
        commands = [["eval", str(path), "--data", val, "--workers", "0"],
                    ["analyze", str(path), "--data", val, "--workers", "0"],
                    ["predict", str(path), str(shapes["val_images"]), "--out", str(tmp_path / "pred")],
                    ["export", str(path), "--out", str(tmp_path / "m.onnx")],
                    ["train", "--resume", str(path), "--workers", "0"],
                    train_argv(shapes, tmp_path / "pre", "--pretrained", str(path), "--exist-ok")]
        for argv in commands:
            assert main(argv) == 2, argv
            err = capsys.readouterr().err
            assert err.startswith(f"error: refused {path}") and err.count("\n") == 1, (argv, err)
        for load in (lambda p: load_checkpoint(p), lambda p: load_official_checkpoint(torch.nn.Linear(1, 1), p),
                     lambda p: load_pretrained_backbone(torch.nn.Linear(1, 1), p)):
            with pytest.raises(ckpt.CheckpointFileError, match="refused"):
                load(path)
    assert not marker.exists()


def test_checkpoints_hold_plain_data_and_old_ones_load(trained, tmp_path):
    payload = torch.load(trained, weights_only=True)  # loads without any allow-listed global
    assert isinstance(payload["config"], dict) and isinstance(payload["history"][0]["loss"], float)
    assert all(isinstance(v, torch.Tensor) for v in payload["optimizer"]["state"][0].values())
    old = dict(payload, best=np.float64(0.25), history=[dict(payload["history"][0], val_AP=np.float64(0.25))])
    torch.save(old, tmp_path / "old.pth")  # as written before plain(): NumPy scalars from pycocotools
    assert ckpt.read_checkpoint(tmp_path / "old.pth")["history"][0]["val_AP"] == 0.25
    cfg, model, _ = load_checkpoint(tmp_path / "old.pth")
    assert cfg.model.arch == "resdcn_18_tiny" and not model.training
    with pytest.raises(TypeError, match="cannot store a Payload"):
        ckpt.plain({"history": [Payload(tmp_path / "x")]})


def test_writes_are_atomic_and_durable(trained, tmp_path, monkeypatch):
    cfg, model, _ = load_checkpoint(trained)
    path = tmp_path / "last.pth"
    ckpt.save_checkpoint(path, cfg, model, epoch=1)
    before = path.read_bytes()
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(ckpt.os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd)))
    monkeypatch.setattr(ckpt.os, "replace", lambda a, b: (events.append("replace"), real_replace(a, b)))
    ckpt.save_checkpoint(path, cfg, model, epoch=2)
    assert events == ["fsync", "replace", "fsync"]  # file data, rename, folder entry
    assert ckpt.read_checkpoint(path)["epoch"] == 2

    def dies_halfway(obj, f, *args, **kwargs):
        f.write(before[: len(before) // 2])
        raise OSError("disk full")

    monkeypatch.setattr(ckpt.torch, "save", dies_halfway)
    with pytest.raises(OSError, match="disk full"):
        ckpt.save_checkpoint(path, cfg, model, epoch=3)
    assert ckpt.read_checkpoint(path)["epoch"] == 2 and sorted(p.name for p in tmp_path.iterdir()) == ["last.pth"]


# ------------------------------------------------------------------------------------------ guarded steps
def small_trainer(shapes: dict, out: Path, max_bad_steps: int = 10, epochs: int = 1) -> Trainer:
    cfg = ExperimentConfig(
        model=ModelConfig(arch="resdcn_18_tiny"),
        data=DataConfig(input_size=(64, 64), num_workers=0, random_crop=False),
        task=TaskConfig(num_classes=3),
        train=TrainConfig(epochs=epochs, batch_size=2, lr=1e-3, lr_steps=(5,), val_interval=0, seed=3,
                          max_steps_per_epoch=3, max_bad_steps=max_bad_steps, out_dir=str(out), device="cpu"))
    task = task_from_config(cfg)
    torch.manual_seed(cfg.train.seed)
    return Trainer(cfg, model_from_config(cfg, task), task, open_source(str(shapes["train_ann"])), progress=False)


def poison(trainer: Trainer, bad_steps: set[int], where: str = "loss") -> None:
    """Make the loss (or one gradient) NaN on the given 0-based steps of every epoch."""
    state = {"i": 0, "bad": False}
    loss_fn = trainer.task.loss
    if where == "grad":
        next(trainer.model.parameters()).register_hook(lambda g: g * math.nan if state["bad"] else g)

    def loss(outputs, batch):
        total, terms = loss_fn(outputs, batch)
        state["bad"] = state["i"] % 3 in bad_steps
        state["i"] += 1
        return (total * math.nan if state["bad"] and where == "loss" else total), terms

    trainer.task.loss = loss


@pytest.mark.parametrize("where", ["loss", "grad"])
def test_non_finite_steps_change_nothing(shapes, tmp_path, where):
    trainer = small_trainer(shapes, tmp_path)
    start = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    poison(trainer, {0, 1, 2}, where)
    record = trainer.train_epoch()
    assert record["skipped_steps"] == 3 and trainer.step == 0
    assert_identical(start, trainer.model.state_dict())  # weights and batch-norm statistics
    assert trainer.optimizer.state_dict()["state"] == {}


def test_some_bad_steps_are_skipped_and_counted(shapes, tmp_path):
    trainer = small_trainer(shapes, tmp_path, epochs=2)
    poison(trainer, {1})
    summary = trainer.fit()
    assert [r["skipped_steps"] for r in summary["history"]] == [1, 1] and trainer.step == 4
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2] and ckpt.finite_state(trainer.model)


def test_divergence_stops_and_names_the_last_good_checkpoint(shapes, tmp_path):
    trainer = small_trainer(shapes, tmp_path, max_bad_steps=3, epochs=1)
    trainer.fit()
    trainer.cfg.train.epochs = 3
    poison(trainer, {0, 1, 2})
    last = (tmp_path / "last.pth").read_bytes()
    with pytest.raises(TrainingDiverged, match=r"3 steps in a row .* last good checkpoint is .*last.pth \(epoch 1\)"):
        trainer.fit()
    assert (tmp_path / "last.pth").read_bytes() == last


def test_non_finite_weights_are_never_saved(shapes, tmp_path):
    trainer = small_trainer(shapes, tmp_path)
    trainer.fit()
    saved = (tmp_path / "last.pth").read_bytes()
    with torch.no_grad():
        next(trainer.model.parameters()).view(-1)[0] = math.inf
    for name in ("last.pth", "best.pth"):
        with pytest.raises(TrainingDiverged, match=r"not finite .* last good checkpoint is .*last.pth \(epoch 1\)"):
            trainer.save(name)
    assert (tmp_path / "last.pth").read_bytes() == saved and not (tmp_path / "best.pth").exists()


def test_resume_applies_a_new_schedule(shapes, tmp_path):
    trainer = small_trainer(shapes, tmp_path, epochs=1)
    trainer.fit()
    resumed = small_trainer(shapes, tmp_path, epochs=4)
    resumed.cfg.train.lr, resumed.cfg.train.lr_steps, resumed.cfg.train.lr_factor = 2e-3, (2, 3), 0.5
    resumed.resume(tmp_path / "last.pth")
    rates = []
    for _ in range(3):
        rates.append(resumed.optimizer.param_groups[0]["lr"])
        resumed.optimizer.step()
        resumed.scheduler.step()
    assert rates == pytest.approx([2e-3, 1e-3, 5e-4])


# ------------------------------------------------------------------------------------------ repeatable runs
def test_seed_makes_cli_runs_bit_identical(shapes, tmp_path):
    for name, extra in (("a", []), ("b", []), ("c", ["train.seed=1"])):
        assert main(train_argv(shapes, tmp_path / name, *extra)) == 0
    a, b, c = (weights(tmp_path / name / "last.pth") for name in "abc")
    assert_identical(a, b)
    assert any(not torch.equal(a[name], c[name]) for name in a)  # the seed matters


KILLED_RUN = textwrap.dedent("""
    import os, signal, sys
    import torch
    torch.set_num_threads(int(sys.argv[1]))
    from centernet.engine import trainer
    mode, argv = sys.argv[2], sys.argv[3:]
    real_save, real_log = trainer.save_checkpoint, trainer.append_log

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    def save(path, *args, **kwargs):  # epoch 2's last.pth: killed while its temp file is half written
        if mode == "saving" and kwargs["epoch"] == 2:
            real_torch_save = torch.save
            def half(obj, f, *a, **k):
                real_torch_save(obj, f)
                f.truncate(f.tell() // 2)
                f.flush()
                die()
            torch.save = half
        return real_save(path, *args, **kwargs)

    def log(folder, record):  # epoch 2 logged, its checkpoint not yet written
        real_log(folder, record)
        if mode == "logged" and record["epoch"] == 2:
            die()

    trainer.save_checkpoint, trainer.append_log = save, log
    from centernet.cli import main
    main(argv)
""")


@pytest.mark.slow
def test_sigkill_then_resume_is_bit_identical(shapes, tmp_path):
    assert main(train_argv(shapes, tmp_path / "straight", epochs=2)) == 0
    straight = weights(tmp_path / "straight" / "last.pth")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]))
    for mode in ("saving", "logged"):
        out = tmp_path / mode
        argv = train_argv(shapes, out, epochs=2)
        proc = subprocess.run([sys.executable, "-c", KILLED_RUN, str(torch.get_num_threads()), mode, *argv],
                              env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == -9, proc.stderr  # SIGKILL
        assert torch.load(out / "last.pth", weights_only=True)["epoch"] == 1
        assert main(["train", "--resume", str(out / "last.pth"), "--workers", "0", "--device", "cpu"]) == 0
        assert_identical(straight, weights(out / "last.pth"))
        records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
        assert [r["epoch"] for r in records] == [1, 2]


# ------------------------------------------------------------------------------------------ small pieces
def test_logs_are_strict_json(tmp_path):
    append_log(tmp_path, {"epoch": 1, "loss": math.nan, "val_AP": -math.inf, "nested": [math.inf, 1.5]})
    text = (tmp_path / "log.jsonl").read_text()
    assert json.loads(text) == {"epoch": 1, "loss": None, "val_AP": None, "nested": [None, 1.5]}
    assert "NaN" not in text and "Infinity" not in text


def test_truncated_images_are_recognised(tmp_path):
    image = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    for ext in (".jpg", ".png"):
        data = cv2.imencode(ext, image)[1].tobytes()
        (tmp_path / f"whole{ext}").write_bytes(data + b"\0" * 16)  # padding after the end marker is fine
        (tmp_path / f"cut{ext}").write_bytes(data[: int(len(data) * 0.8)])
        assert not truncated(tmp_path / f"whole{ext}") and truncated(tmp_path / f"cut{ext}")


def test_yolo_labels_slightly_outside_are_clipped(tmp_path):
    from centernet.data import YoloDetection

    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "a.png"), np.zeros((50, 100, 3), np.uint8))
    (tmp_path / "labels" / "a.txt").write_text("0 1.02 0.5 0.2 0.4\n")
    with pytest.warns(UserWarning) as caught:  # and the reader's own count of clipped boxes
        ds = YoloDetection(tmp_path / "images")
    assert any("clipped 1 label lines in 1 files" in str(w.message) and "a.txt" in str(w.message) for w in caught)
    np.testing.assert_allclose(ds.samples[0].boxes, [[92, 15, 100, 35]], atol=1e-4)


def test_clip_boxes():
    rows = np.array([[-5.0, 3.0, 70.0, 90.0, 0.9, 1.0], [1.0, 2.0, 3.0, 4.0, 0.5, 0.0]], np.float32)
    clipped = clip_boxes(rows, 64, 48)
    np.testing.assert_array_equal(clipped[0], np.array([0, 3, 64, 48, 0.9, 1], np.float32))
    np.testing.assert_array_equal(clipped[1], rows[1])
