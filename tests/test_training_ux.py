"""Visible, repeatable training through the CLI: the start-up summary, the epoch table, progress lines
without a terminal, the run reports after every epoch and evaluation, early stopping, resuming from the
checkpoint alone, flags with help text, and a --help that never loads torch."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
import types
from pathlib import Path

import pytest

from centernet.cli import build_parser, main
from centernet.data import make_synthetic_dataset
from centernet.presets import get_preset

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return make_synthetic_dataset(tmp_path_factory.mktemp("ux"), num_train=16, num_val=4, image_size=(64, 64))


def _train(data, out, *extra: str) -> list[str]:
    """A tiny CPU run at 64 px (no FLOP count: it costs seconds on first use)."""
    return ["train", "--preset", "ctdet_cpu_small", "--arch", "resdcn_18_tiny", "--train", str(data["train_ann"]),
            "--val", str(data["val_ann"]), "--batch-size", "4", "--out", str(out), "--workers", "0",
            "--device", "cpu", "--set", "data.input_size=[64,64]", "train.flops=false", *extra]


class _Writer:
    """A stand-in for torch.utils.tensorboard.SummaryWriter that records what it is given."""

    calls: list = []

    def __init__(self, log_dir):
        type(self).calls.append(("dir", log_dir))

    def add_scalar(self, tag, value, step):
        type(self).calls.append((tag, step))

    def add_image(self, tag, image, step, dataformats):
        type(self).calls.append((tag, step))

    def flush(self):
        pass

    def close(self):
        type(self).calls.append("closed")


def test_summary_table_progress_and_reports(shapes, tmp_path, capsys, monkeypatch):
    _Writer.calls = []
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=_Writer))
    out = tmp_path / "run"
    assert main(_train(shapes, out, "--epochs", "2", "--val-interval", "1", "--log-every", "2", "--seed", "3")) == 0
    printed = capsys.readouterr().out.splitlines()
    assert "data    train: 16 images, " in printed[0] and printed[1].startswith("data    val: 4 images")
    assert printed[2].startswith("model   resdcn_18_tiny: 0.") and "GFLOPs" not in printed[2]
    assert printed[3].startswith("device  cpu") and printed[4] == f"run     {out.resolve()}"
    assert printed[5].startswith("train   ctdet, input 64x64, batch 4")
    # the preset's steps [12, 15] of 16 epochs, stretched to 2, fall on the last epoch: no decay within the run
    assert "epochs 1..2, lr x0.1 after epochs none" in printed[5]
    progress = [line for line in printed if line.startswith("epoch 1/2  step")]
    assert [line.split()[3] for line in progress] == ["2/4", "4/4"]  # every 2 of 4 steps (stdout is no terminal)
    header = next(line for line in printed if line.split()[:3] == ["epoch", "lr", "loss"])
    assert header.split() == ["epoch", "lr", "loss", "hm", "wh", "reg", "AP", "AP50", "time", "ETA"]
    rows = [line.split() for line in printed if line.strip().startswith(("1/2", "2/2"))]
    lr = f"{get_preset('ctdet_cpu_small').train.lr:.2e}"
    assert [r[0] for r in rows] == ["1/2", "2/2"] and rows[0][1] == lr and rows[1][-1] == "0s"
    assert {"results.csv", "results.png", "pr_curves.png", "per_class_ap.txt", "confusion_matrix.png",
            "val_mosaic.jpg"} <= {p.name for p in out.iterdir()}
    with open(out / "results.csv") as f:
        table = list(csv.DictReader(f))
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [int(r["epoch"]) for r in table] == [1, 2] and float(table[1]["val_AP"]) == pytest.approx(log[1]["val_AP"])
    assert {"hm", "wh", "reg", "loss"} <= set(table[0])
    ap_table = (out / "per_class_ap.txt").read_text().splitlines()
    assert ap_table[0].split()[:3] == ["class", "objects", "AP"] and ap_table[-1].startswith("mean")
    assert ("dir", str(out.resolve())) in _Writer.calls and ("train/loss", 1) in _Writer.calls
    assert ("val/AP", 2) in _Writer.calls and ("val/mosaic", 2) in _Writer.calls and _Writer.calls[-1] == "closed"
    config = json.loads((out / "config.json").read_text())
    assert config["train"]["seed"] == 3 and Path(config["data"]["train"]).is_absolute()
    assert Path(config["train"]["out_dir"]) == out.resolve()


def test_patience_stops_early_and_a_broken_report_only_warns(shapes, tmp_path, capsys, monkeypatch, recwarn):
    from centernet.engine import reports

    def broken(*args, **kwargs):
        raise RuntimeError("no plotting today")

    monkeypatch.setattr(reports, "plot_results", broken)
    out = tmp_path / "run"
    assert main(_train(shapes, out, "--epochs", "5", "--val-interval", "1", "--patience", "1", "--lr", "1e-12",
                       "--set", "train.max_steps_per_epoch=1")) == 0
    captured = capsys.readouterr()
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    scores = [r["val_AP"] for r in log]
    best_epoch = 1 + max(range(len(scores)), key=lambda i: (scores[i], -i))  # the first epoch of the best score
    assert len(log) < 5 and len(log) == best_epoch + 1  # stopped one epoch (the patience) after the best
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert summary["stopped_early"] and summary["best_epoch"] == best_epoch
    assert f"early stop after epoch {len(log)}" in captured.out
    warned = [w for w in recwarn if "results.csv / results.png not written" in str(w.message)]
    assert len(warned) == 1 and "no plotting today" in str(warned[0].message)  # once, and the run went on
    assert (out / "results.csv").is_file() and (out / "last.pth").is_file()


def test_resume_needs_only_the_checkpoint(shapes, tmp_path, monkeypatch):
    """Relative paths given in one folder are stored absolute: --resume alone continues from anywhere."""
    data_root = Path(shapes["train_ann"]).parents[1]
    monkeypatch.chdir(data_root)
    argv = _train({"train_ann": Path(shapes["train_ann"]).relative_to(data_root),
                   "val_ann": Path(shapes["val_ann"]).relative_to(data_root)}, tmp_path / "run", "--epochs", "1",
                  "--set", "train.max_steps_per_epoch=1", "train.reports=false")
    assert main(argv) == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["train", "--resume", str(tmp_path / "run" / "last.pth"), "--epochs", "2"]) == 0
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2] and "val_AP" in log[1]
    assert not (tmp_path / "run" / "results.csv").exists()  # train.reports=false kept by the resumed run


def test_patience_needs_validation(shapes, tmp_path, capsys):
    argv = _train(shapes, tmp_path / "run", "--epochs", "1", "--patience", "2", "--val-interval", "0")
    assert main(argv) == 2
    assert "train.patience 2 needs validation" in capsys.readouterr().err


def test_every_flag_has_help_and_shows_its_default():
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # noqa: SLF001 (argparse keeps them here)
    missing = [f"{name} {action.dest}" for name, sub in commands.items() for action in sub._actions
               if action.dest != "help" and not action.help]
    assert not missing
    text = commands["train"].format_help()
    assert "--patience" in text and "--seed" in text and "--val-interval" in text
    assert "(default: 2)" in text  # --workers: a default argparse knows is shown
    assert "(default: 0.3)" in commands["predict"].format_help()


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["train", "--epochs", "many"], ["predict"]])
def test_help_and_argument_errors_do_not_import_torch(argv):
    code = ("import sys\nfrom centernet.cli import main\ntry:\n    main(%r)\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules, file=sys.stderr)" % argv)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"})
    assert done.stderr.strip().splitlines()[-1] == "False", done.stderr


def test_epochs_stretch_the_preset_step_schedule_unless_steps_are_given() -> None:
    from centernet.app.runs import training_config

    base, _ = training_config("ctdet_cpu_small")
    assert (base.train.epochs, base.train.lr_steps) == (16, (12, 15))
    cfg, _ = training_config("ctdet_cpu_small", assignments=["train.epochs=12"])
    assert cfg.train.lr_steps == (9, 11)  # the same shares of the run: 12/16 and 15/16
    cfg, _ = training_config("ctdet_resdcn18_coco", assignments=["train.epochs=70"])
    assert cfg.train.lr_steps == (45, 60)  # the paper's [90, 120] of 140
    cfg, _ = training_config("ctdet_cpu_small", assignments=["train.epochs=12", "train.lr_steps=[5]"])
    assert cfg.train.lr_steps == (5,)  # explicit steps win
    cfg, _ = training_config("ctdet_cpu_small", assignments=["train.lr=1e-4"])
    assert cfg.train.lr_steps == (12, 15)  # the preset's length: its own steps


def test_ctrl_c_says_what_was_saved_and_how_to_continue(shapes, tmp_path, capsys, monkeypatch) -> None:
    """Ctrl-C in the second epoch: exit code 130, one line naming epoch 1's last.pth and the resume command."""
    from centernet.engine.trainer import Trainer

    real_epoch = Trainer.train_epoch

    def interrupted_in_epoch_2(self):
        if self.epoch == 1:
            raise KeyboardInterrupt
        return real_epoch(self)

    monkeypatch.setattr(Trainer, "train_epoch", interrupted_in_epoch_2)
    out = tmp_path / "run"
    assert main(_train(shapes, out, "--epochs", "3", "--val-interval", "0")) == 130
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1] == (f"interrupted in epoch 2; {out.resolve() / 'last.pth'} holds epoch 1: continue with "
                         f"centernet train --resume {out.resolve() / 'last.pth'}")
    monkeypatch.setattr(Trainer, "train_epoch", real_epoch)
    assert main(["train", "--resume", str(out / "last.pth")]) == 0  # and the command it names works
    assert [json.loads(line)["epoch"] for line in (out / "log.jsonl").read_text().splitlines()] == [1, 2, 3]


def test_ctrl_c_in_eval_is_one_line_and_exit_code_130(monkeypatch, capsys) -> None:
    from centernet.app import runs

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(runs, "oracle", interrupt)
    assert main(["eval", "--oracle", "--data", "whatever.json"]) == 130
    assert capsys.readouterr().err == "interrupted\n"
