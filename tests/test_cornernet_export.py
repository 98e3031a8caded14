"""CornerNet outside PyTorch and from the original's files: ONNX export (corner pooling and the pair decoding
with standard ops) equal to eager, the CLI's eval / predict / export / analyze on a CornerNet checkpoint, and
original CornerNet state dicts loaded strictly."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import centernet
from centernet.app.builders import open_source, set_classes, task_from_config
from centernet.cli import main
from centernet.data import make_synthetic_dataset
from centernet.engine.checkpoint import save_checkpoint
from centernet.engine.evaluator import EvalSettings, evaluate
from centernet.export.onnx import OnnxRunner, export_onnx, onnx_predictor, op_types
from centernet.models import build_model
from centernet.presets import get_preset
from centernet.tasks import build_task
from centernet.tasks.cornernet import cornernet_heads
from centernet.weights.fit import CheckpointMismatchError
from centernet.weights.official import load_official_checkpoint, to_official_state_dict
from centernet.weights.official_cornernet import to_cornernet_official
from helpers.detections import assert_same_detections

pytest.importorskip("onnxruntime")
SIZE = 64


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("cn_export")
    data = make_synthetic_dataset(root / "data", num_train=4, num_val=3, image_size=(SIZE, SIZE))
    cfg = get_preset("cornernet_cpu_small")
    cfg.data.input_size = (SIZE, SIZE)
    cfg.task.options = {"num_dets": 200}
    set_classes(cfg, open_source(str(data["train_ann"])))
    task = task_from_config(cfg)
    torch.manual_seed(0)
    model = build_model(cfg.model.arch, task.heads())
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith("heads") and name.endswith("2.weight"):  # spread scores: no near ties
                p.normal_(0, 5.0 if "heat" in name else 0.5)
    model.eval()
    save_checkpoint(root / "cn.pth", cfg, model)
    maps_path = export_onnx(model, task, cfg, root / "cn.onnx", dynamic=True)
    dec_path = export_onnx(model, task, cfg, root / "cn_decode.onnx", decode=True)
    return root, data, cfg, task, model, maps_path, dec_path


def test_export_uses_standard_ops_and_matches_eager(setup) -> None:
    _, _, _, task, model, maps_path, dec_path = setup
    for path in (maps_path, dec_path):
        assert {domain for domain, _ in op_types(path)} <= {"", "ai.onnx"}
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        maps = task.activate(model(x)[-1])
        rows = task.decode(maps)
    onnx_maps = OnnxRunner(maps_path)(x)
    assert set(onnx_maps) == set(maps)
    for name, value in maps.items():
        torch.testing.assert_close(onnx_maps[name], value, atol=1e-4, rtol=1e-4)
    big = torch.randn(1, 3, 2 * SIZE, SIZE)  # dynamic size: the doubling corner pool covers longer maps too
    with torch.no_grad():
        torch.testing.assert_close(OnnxRunner(maps_path)(big)["tl_heat"], task.activate(model(big)[-1])["tl_heat"],
                                   atol=1e-4, rtol=1e-4)
    onnx_rows = OnnxRunner(dec_path)(x)["detections"]
    assert onnx_rows.shape == rows.shape == (2, 200, 6)
    valid = rows[..., 4] > 0
    torch.testing.assert_close(onnx_rows[..., 4], rows[..., 4], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(onnx_rows[valid][:, :4], rows[valid][:, :4], atol=1e-3, rtol=1e-4)


def test_onnx_evaluation_equals_eager(setup) -> None:
    _, data, _, task, model, maps_path, dec_path = setup
    val = open_source(str(data["val_ann"]))
    settings = EvalSettings(input_size=(SIZE, SIZE), flip=True)
    eager = evaluate(model, task, val, settings, progress=False).results
    for path in (maps_path, dec_path):
        results = evaluate(OnnxRunner(path), task, val, settings, progress=False).results
        assert len(results) == len(eager)
        assert assert_same_detections(eager, results, score_tol=1e-3, box_tol=0.05, top=30) > 0
    pred = onnx_predictor(dec_path)(np.zeros((SIZE, SIZE, 3), np.uint8))
    assert pred.rows.shape[1] == 6 and len(pred.rows) <= task.K


def test_cli_eval_predict_export_analyze(setup, tmp_path, capsys) -> None:
    root, data, *_ = setup
    ckpt, val = str(root / "cn.pth"), str(data["val_ann"])
    assert main(["eval", ckpt, "--data", val, "--workers", "0", "--flip", "--json", str(tmp_path / "m.json")]) == 0
    assert "AP" in json.loads((tmp_path / "m.json").read_text())
    assert main(["export", ckpt, "--out", str(tmp_path / "d.onnx"), "--decode"]) == 0
    assert main(["predict", str(tmp_path / "d.onnx"), str(data["val_images"]), "--out", str(tmp_path / "p"),
                 "--score", "0"]) == 0
    assert len(list((tmp_path / "p").glob("*_pred.jpg"))) == 3
    capsys.readouterr()
    assert main(["analyze", ckpt, "--data", val, "--workers", "0"]) == 0
    table = capsys.readouterr().out
    assert "heatmaps + offsets + embeddings" in table and "heatmaps + offsets" in table


def test_oracle_eval_from_the_cli(setup, capsys, tmp_path) -> None:
    _, data, *_ = setup
    capsys.readouterr()
    # the oracle takes its geometry from the task's oracle preset (511x511, tested at full resolution)
    assert main(["eval", "--oracle", "--task", "cornernet", "--data", str(data["val_ann"]), "--workers", "0",
                 "--json", str(tmp_path / "m.json")]) == 0
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["AP"] > 0.95


# -- the original's checkpoints ---------------------------------------------------------------------------------
def test_an_official_cornernet_state_dict_loads_strictly(setup) -> None:
    *_, task, model, _, _ = setup
    official = {k: v + 1 if v.is_floating_point() else v for k, v in to_cornernet_official(model.state_dict()).items()}
    assert all(k.startswith("module.") for k in official) and any(k.startswith("module.tl_cnvs.") for k in official)
    target = build_model("hourglass_tiny", task.heads())
    report = load_official_checkpoint(target, official)
    assert report.ok and len(report.loaded) == len(official)
    for key, value in model.state_dict().items():
        expected = value + 1 if value.is_floating_point() else value
        assert torch.equal(target.state_dict()[key], expected), key
    assert to_official_state_dict(target).keys() == official.keys()

    wrong = build_model("hourglass_tiny", build_task("cornernet", 5).heads())  # 5 classes instead of 3
    with pytest.raises(CheckpointMismatchError, match="mis-shaped: .*tl_heats"):
        load_official_checkpoint(wrong, official)
    centernet_layout = build_model("hourglass_tiny", {"hm": 3, "wh": 2, "reg": 2})
    with pytest.raises(CheckpointMismatchError, match="unexpected in the file.*tl_cnvs"):
        load_official_checkpoint(centernet_layout, official)


@pytest.mark.slow
def test_the_full_cornernet_takes_the_original_names() -> None:
    """A real ``cornernet`` model (201M parameters) takes a state dict under the original's names, each tensor
    a distinct constant (expanded, so no second copy of the weights)."""
    model = centernet.build_model("cornernet", cornernet_heads(80))
    names = to_cornernet_official(model.state_dict())
    assert len(names) == 1128  # the original CornerNet's tensor count
    official = {name: torch.tensor(float(i % 1000), dtype=v.dtype).expand(v.shape) if v.is_floating_point() else v
                for i, (name, v) in enumerate(names.items())}
    report = load_official_checkpoint(model, official)
    assert report.ok and len(report.loaded) == 1128
    for i, (key, value) in enumerate(model.state_dict().items()):
        if value.is_floating_point():
            assert value.min() == value.max() == float(i % 1000), key
