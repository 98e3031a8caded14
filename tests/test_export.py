"""ONNX export: standard ops only, onnxruntime matches PyTorch (maps and detections), metadata is enough."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from centernet.app.builders import eval_settings, task_from_config
from centernet.cli import main
from centernet.config import ExperimentConfig
from centernet.data import read_image
from centernet.engine.checkpoint import save_checkpoint
from centernet.engine.predictor import Predictor
from centernet.export.onnx import OnnxRunner, export_onnx, onnx_predictor, op_types, read_metadata

pytest.importorskip("onnxruntime")
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TINY_ARCH = "resdcn_18_tiny"  # ResNet-18 at 1/8 width + the DCN (grid_sample) up-sampling neck


def tiny_setup(num_classes: int = 3):
    cfg = ExperimentConfig()
    cfg.model.arch = TINY_ARCH
    cfg.data.input_size = (128, 128)
    cfg.task.num_classes = num_classes
    cfg.task.class_names = [f"c{i}" for i in range(num_classes)]
    task = task_from_config(cfg)
    torch.manual_seed(0)
    from centernet.app.builders import model_from_config

    model = model_from_config(cfg, task)
    with torch.no_grad():  # make the deformable offsets and the heads non-trivial (distinct scores)
        for name, p in model.named_parameters():
            if "conv_offset_mask" in name or name.startswith("heads"):
                p.normal_(0, 0.05)
    return cfg, model.eval(), task


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    cfg, model, task = tiny_setup()
    root = tmp_path_factory.mktemp("onnx")
    maps_path = export_onnx(model, task, cfg, root / "tiny.onnx", dynamic=True)
    dec_path = export_onnx(model, task, cfg, root / "tiny_decode.onnx", decode=True, dynamic=True)
    return cfg, model, task, maps_path, dec_path


def test_graph_uses_standard_onnx_ops_only(exported):
    *_, maps_path, dec_path = exported
    for path in (maps_path, dec_path):
        ops = op_types(path)
        assert {domain for domain, _ in ops} <= {"", "ai.onnx"}, ops
        assert ("", "GridSample") not in ops  # the DCN is in the graph, as a standard op
    assert ("", "TopK") in op_types(dec_path)


@pytest.mark.parametrize("size", [(128, 128), (160, 96)])
def test_maps_match_pytorch_at_two_sizes(exported, size):
    cfg, model, task, maps_path, _ = exported
    runner = OnnxRunner(maps_path)
    w, h = size
    images = torch.randn(2, 3, h, w)
    with torch.no_grad():
        ref = task.activate(model(images)[-1])
    out = runner(images)
    assert set(out) == set(ref)
    for name in ref:
        assert out[name].shape == ref[name].shape == (2, ref[name].shape[1], h // 4, w // 4)
        torch.testing.assert_close(out[name], ref[name], atol=1e-4, rtol=1e-4)


def test_decode_in_graph_matches_pytorch(exported):
    cfg, model, task, _, dec_path = exported
    images = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        ref = task.decode(task.activate(model(images)[-1]))
    out = OnnxRunner(dec_path)(images)["detections"]
    assert out.shape == ref.shape == (1, task.K, 6)
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)


def test_metadata_holds_the_config(exported):
    cfg, *_, maps_path, dec_path = exported
    assert OnnxRunner(maps_path).config.to_dict() == cfg.to_dict()
    assert read_metadata(dec_path)["centernet_outputs"] == "detections"
    _, model, task, *_ = exported
    fixed = OnnxRunner(export_onnx(model, task, cfg, maps_path.parent / "fixed.onnx"))  # 128x128 only
    assert fixed(torch.zeros(2, 3, 128, 128))["hm"].shape == (2, 3, 32, 32)  # the batch stays dynamic
    with pytest.raises(ValueError, match="takes 128x128"):
        fixed(torch.zeros(1, 3, 96, 96))


def _real_image() -> np.ndarray:
    folder = SHARED_DATA / "coco_mini" / "val2017"
    if not folder.is_dir():
        pytest.skip(f"real data not present at {folder}")
    return read_image(sorted(folder.glob("*.jpg"))[0])


def test_detections_on_a_real_image_agree(exported):
    cfg, model, task, maps_path, dec_path = exported
    image = _real_image()
    settings = eval_settings(cfg)
    ref = Predictor(model, task, settings, cfg.task.class_names)(image).rows
    onnx_pred = onnx_predictor(maps_path)(image)
    decoded = onnx_predictor(dec_path)(image)
    assert onnx_pred.heat is not None and decoded.heat is None
    for rows in (onnx_pred.rows, decoded.rows):
        assert rows.shape == ref.shape
        np.testing.assert_allclose(rows[:20], ref[:20], atol=2e-3, rtol=1e-4)  # image pixels
    # flip and multi-scale run around the onnxruntime runner too, with dynamic sizes
    flip = eval_settings(cfg, flip=True, scales=(0.75, 1.0))
    ref_tta = Predictor(model, task, flip, cfg.task.class_names)(image).rows
    onnx_tta = onnx_predictor(maps_path, flip=True, scales=(0.75, 1.0))(image).rows
    np.testing.assert_allclose(onnx_tta[:20], ref_tta[:20], atol=2e-3, rtol=1e-4)


def test_cli_export_and_predict_with_onnxruntime(tmp_path, exported, capsys):
    cfg, model, task, *_ = exported
    ckpt = tmp_path / "tiny.pth"
    save_checkpoint(ckpt, cfg, model)
    out = tmp_path / "cli.onnx"
    assert main(["export", str(ckpt), "--out", str(out), "--opset", "17"]) == 0
    assert "wrote" in capsys.readouterr().out
    image_dir = tmp_path / "images"
    image_dir.mkdir()
    import cv2

    cv2.imwrite(str(image_dir / "a.png"), np.full((100, 140, 3), 127, np.uint8))
    assert main(["predict", str(out), str(image_dir), "--backend", "onnxruntime", "--out",
                 str(tmp_path / "pred")]) == 0
    assert "onnxruntime" in capsys.readouterr().out
    assert (tmp_path / "pred" / "a_pred.jpg").is_file()
