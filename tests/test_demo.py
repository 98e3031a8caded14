"""`centernet demo --task X`: every task's synthetic set, trained for one epoch, evaluated and drawn."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from centernet.cli import main
from centernet.app.demo import DEMOS, default_out_dir, run_demo

TASKS = ("ctdet", "multi_pose", "ddd", "cornernet")


def test_every_task_has_a_demo_and_its_help_names_them(capsys):
    assert DEMOS.names() == sorted(TASKS)
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    text = capsys.readouterr().out
    assert all(task in text for task in TASKS) and "--num-train" in text
    assert default_out_dir() == Path("runs/demo") and default_out_dir("ddd") == Path("runs/demo_ddd")


def test_demo_refuses_unknown_tasks_and_empty_sets(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["demo", "--task", "nope"])
    assert "invalid choice: 'nope'" in capsys.readouterr().err
    with pytest.raises(KeyError, match="unknown demo task 'nope'; known: cornernet, ctdet, ddd, multi_pose"):
        run_demo(tmp_path, task="nope")
    assert main(["demo", "--num-val", "0", "--out", str(tmp_path)]) == 2
    assert "at least 1 training and 1 validation image" in capsys.readouterr().err


@pytest.mark.slow  # 13-30 s each on 2 CPU cores: one training step, evaluation of an untrained model
@pytest.mark.parametrize("task", TASKS)
def test_demo_of_each_task_trains_evaluates_and_draws(task, tmp_path, capsys):
    out = tmp_path / task
    code = main(["demo", "--task", task, "--epochs", "1", "--num-train", "8", "--num-val", "4", "--device", "cpu",
                 "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    summary = json.loads(printed[printed.rindex("{\n"):])
    assert Path(summary["picture"]) == out / "detections.png" and (out / "detections.png").stat().st_size > 0
    assert Path(summary["checkpoint"]).is_file() and 0.0 <= summary["AP50"] <= 1.0
    if task == "ddd":
        assert "kitti_3d_moderate" in summary  # its scorer's headline comes first
