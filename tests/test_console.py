"""Training console: start-up summary (parameters, FLOPs), the epoch table, progress lines."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from torch import nn

from centernet import build_model
from centernet.data.sample import Sample
from centernet.engine.console import (EpochTable, ProgressLines, count_flops, count_parameters, data_summary,
                                      format_duration, startup_summary)


class _Source:
    class_names = ["cat", "dog"]

    def __init__(self) -> None:
        boxes = np.array([[0, 0, 5, 5], [1, 1, 4, 4], [2, 2, 9, 9]], np.float32)
        self.samples = [Sample(1, Path("a.jpg"), 10, 10, boxes, [0, 1, 1], ignore=[False, False, True]),
                        Sample(2, Path("b.jpg"), 10, 10, np.zeros((0, 4)), [])]


def test_flops_of_a_convolution_and_an_architecture():
    conv = nn.Conv2d(3, 8, 3, padding=1)
    assert count_flops(conv, (16, 16)) == 2 * (8 * 16 * 16) * (3 * 3 * 3)  # a multiply-add is 2 FLOPs
    model = build_model("resdcn_18_tiny", {"hm": 2, "wh": 2, "reg": 2})
    model.train()
    small, large = count_flops(model, (64, 64)), count_flops(model, (128, 128))
    assert model.training  # the mode is restored
    assert large == 4 * small > 0  # fully convolutional: FLOPs grow with the pixel count


def test_startup_summary(tmp_path):
    model = build_model("resdcn_18_tiny", {"hm": 2, "wh": 2, "reg": 2})
    text = startup_summary(model, (64, 96), "cpu", out_dir=tmp_path / "run", train=_Source(), val=_Source(),
                           threads=3)
    lines = text.splitlines()
    assert lines[0].split(None, 1) == ["data", "train: 2 images, 2 objects, 2 classes"]  # crowd not counted
    assert lines[1].startswith("data    val:")
    millions = count_parameters(model) / 1e6
    gflops = count_flops(model, (64, 96)) / 1e9
    assert lines[2] == f"model   resdcn_18_tiny: {millions:.2f}M parameters, {gflops:.3g} GFLOPs at 64x96"
    assert lines[3] == "device  cpu, 3 CPU threads"
    assert lines[4] == f"run     {(tmp_path / 'run').resolve()}"
    assert data_summary(_Source().samples[:1]) == "1 image, 2 objects, 0 classes"


def test_epoch_table_is_aligned_with_eta():
    table = EpochTable(total_epochs=5)
    first = table.lines({"epoch": 1, "lr": 1.25e-4, "loss": 3.21, "hm_loss": 2.5, "wh_loss": 0.61,
                         "images_per_s": 40.0}, seconds=10.0).splitlines()
    second = table.lines({"epoch": 2, "lr": 1.25e-4, "loss": 2.0, "hm_loss": 1.5, "wh_loss": 0.5,
                          "val_AP": 0.1234, "val_AP50": 0.3}, seconds=20.0).splitlines()
    assert len(first) == 2 and len(second) == 1  # the header once
    header, row1, row2 = first[0], first[1], second[0]
    assert header.split() == ["epoch", "lr", "loss", "hm", "wh", "AP", "AP50", "time", "ETA"]
    assert len(header) == len(row1) == len(row2)
    assert row1.split() == ["1/5", "1.25e-04", "3.2100", "2.5000", "0.6100", "-", "-", "10s", "40s"]
    assert row2.split()[-4:] == ["0.123", "0.300", "20s", "45s"]  # ETA: mean 15 s x 3 epochs left
    for name in ("AP", "time"):  # every value ends under its header
        end = header.index(name) + len(name)
        assert row2[:end].split()[-1] and row2[end:end + 1] in ("", " ")


def test_format_duration():
    assert [format_duration(s) for s in (5, 185, 7620, 3 * 86400 + 4 * 3600, float("inf"))] == \
        ["5s", "3m05s", "2h07m", "3d04h", "-"]


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_progress_lines_without_a_terminal():
    stream, clock = io.StringIO(), _Clock()
    progress = ProgressLines(total_steps=10, epoch=2, total_epochs=7, every=4, stream=stream, clock=clock)
    assert progress.enabled  # StringIO is not a terminal
    printed = []
    for step in range(1, 11):
        clock.now = step * 0.5
        if progress.update(step, {"loss": float(step)}) is not None:
            printed.append(step)
    assert printed == [4, 8, 10]
    lines = stream.getvalue().splitlines()
    assert lines[0] == "epoch 2/7  step  4/10 ( 40%)  loss 2.5000  2.00 it/s  ETA 3s"
    assert lines[-1].startswith("epoch 2/7  step 10/10 (100%)  loss 5.5000")


def test_progress_lines_quiet_on_a_terminal():
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Tty()
    progress = ProgressLines(total_steps=3, epoch=1, total_epochs=1, stream=stream)
    assert not progress.enabled
    assert all(progress.update(s, {"loss": 1.0}) is None for s in (1, 2, 3)) and stream.getvalue() == ""
    assert ProgressLines(total_steps=95, epoch=1, total_epochs=1, stream=io.StringIO()).every == 10
