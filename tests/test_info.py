"""`centernet info MODEL`: what a checkpoint, an exported model, a zoo name or a preset is, without running it."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from centernet.cli import main
from test_bad_inputs import Env


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> Env:
    return Env(tmp_path_factory.mktemp("info"))


def _info(capsys, *argv: str) -> dict[str, str]:
    capsys.readouterr()
    assert main(["info", *argv]) == 0
    lines = capsys.readouterr().out.splitlines()
    return {line.split()[0]: line.split(None, 1)[1] for line in lines}


def test_info_of_a_checkpoint_and_its_onnx_export(env: Env, tmp_path: Path, capsys) -> None:
    shown = _info(capsys, str(env.checkpoint))
    assert "epoch 1 of 1" in shown["model"] and str(env.checkpoint) in shown["model"]
    params = re.search(r"resdcn_18_tiny: ([\d.]+)M parameters, ([\d.]+) GFLOPs at 64x64", shown["network"])
    assert params, shown["network"]
    assert shown["task"] == "ctdet; heads hm 3, wh 2, reg 2"
    assert shown["classes"].startswith("3: ") and "1 epochs, batch 4" in shown["train"]
    assert "instances_train.json" in shown["data"]
    onnx = tmp_path / "m.onnx"
    pytest.importorskip("onnx")
    assert main(["export", str(env.checkpoint), "--out", str(onnx)]) == 0
    exported = _info(capsys, str(onnx), "--size", "128,128")
    assert "ONNX model" in exported["model"] and "opset" in exported["model"]
    assert f"resdcn_18_tiny: {params.group(1)}M parameters" in exported["network"]  # the same network
    assert "at 128x128" in exported["network"] and exported["classes"] == shown["classes"]


def test_info_of_a_zoo_name_and_a_preset_downloads_nothing(capsys, monkeypatch) -> None:
    import centernet.weights.download as download

    monkeypatch.setattr(download, "_fetch", lambda *a, **k: pytest.fail("info must not download"))
    zoo = _info(capsys, "ctdet_coco_resdcn18")
    assert "model-zoo entry" in zoo["model"] and "resdcn_18" in zoo["network"]
    assert zoo["classes"].startswith("80: person, bicycle") and "and 70 more" in zoo["classes"]
    assert "train" not in zoo  # the original authors' training is not described by our defaults
    preset = _info(capsys, "ctdet_cpu_small", "--size", "256,256")
    assert "preset" in preset["model"] and "GFLOPs at 256x256" in preset["network"]


def test_info_of_something_else_is_one_line(capsys, tmp_path: Path) -> None:
    assert main(["info", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "not a model-zoo name or preset" in err and err.count("\n") == 1
