"""Predict on a folder of images and on a video, with PyTorch and with onnxruntime."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from centernet.app.builders import load_predictor, model_from_config, task_from_config
from centernet.cli import main
from centernet.config import ExperimentConfig
from centernet.engine.checkpoint import save_checkpoint
from centernet.engine.predictor import Predictor
from helpers.detections import assert_same_detections

TINY_ARCH = "resdcn_18_tiny"  # ResNet-18 at 1/8 width + the DCN (grid_sample) up-sampling neck


def _frame(i: int) -> np.ndarray:
    image = np.full((72, 96, 3), 40, np.uint8)
    cv2.rectangle(image, (8 + 4 * i, 10), (40 + 4 * i, 50), (30, 200, 240), -1)
    cv2.circle(image, (70, 30 + i), 12, (220, 60, 60), -1)
    return image


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("predict")
    cfg = ExperimentConfig()
    cfg.model.arch = TINY_ARCH
    cfg.data.input_size = (96, 96)
    cfg.task.num_classes = 2
    cfg.task.class_names = ["box", "disc"]
    task = task_from_config(cfg)
    torch.manual_seed(0)
    save_checkpoint(root / "tiny.pth", cfg, model_from_config(cfg, task))
    folder = root / "images"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"img{i}.png"), _frame(i))
    (folder / "notes.txt").write_text("not an image")
    video = root / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (96, 72))
    if not writer.isOpened():
        pytest.skip("OpenCV cannot write mp4v video here")
    for i in range(5):
        writer.write(_frame(i))
    writer.release()
    return {"root": root, "checkpoint": root / "tiny.pth", "folder": folder, "video": video}


def _detections(out: Path) -> list[dict]:
    return json.loads((out / "detections.json").read_text())


def test_predict_folder(inputs, capsys):
    out = inputs["root"] / "out_folder"
    assert main(["predict", str(inputs["checkpoint"]), str(inputs["folder"]), "--out", str(out), "--score", "0",
                 "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "3 images at" in printed and "images/s" in printed
    assert sorted(p.name for p in out.glob("*_pred.jpg")) == ["img0_pred.jpg", "img1_pred.jpg", "img2_pred.jpg"]
    results = _detections(out)
    assert {r["file_name"] for r in results} == {"img0.png", "img1.png", "img2.png"}
    assert len(results) == 3 * 100  # score 0: all K detections of every image


def test_predict_video_pytorch_and_onnxruntime(inputs):
    pytest.importorskip("onnxruntime")
    from centernet.export.onnx import export_checkpoint, onnx_predictor

    onnx_path = export_checkpoint(inputs["checkpoint"], inputs["root"] / "tiny.onnx", dynamic=True)
    summaries = {}
    for name, model in (("pytorch", str(inputs["checkpoint"])), ("onnxruntime", str(onnx_path))):
        predictor = onnx_predictor(model) if name == "onnxruntime" else load_predictor(model)
        out = inputs["root"] / f"out_video_{name}"
        summaries[name] = predictor.run(inputs["video"], out, score_thresh=0.0, progress=False)
        assert summaries[name]["images"] == 5 and summaries[name]["images_per_s"] > 0
        cap = cv2.VideoCapture(str(out / "clip_pred.mp4"))
        assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 5
        cap.release()
    torch_rows = _detections(inputs["root"] / "out_video_pytorch")
    onnx_rows = _detections(inputs["root"] / "out_video_onnxruntime")
    assert len(torch_rows) == len(onnx_rows) == 5 * 100
    assert assert_same_detections(torch_rows, onnx_rows, score_tol=1e-4, box_tol=0.05,
                                  key=("file_name", "category_id"), top=10) > 0


def test_predict_with_flip_and_scales(inputs):
    predictor = load_predictor(inputs["checkpoint"], flip=True, scales=(0.5, 1.0, 1.5))
    pred = predictor(_frame(0))
    assert 0 < len(pred.rows) <= 100 and pred.heat.shape[0] == 2
    assert np.all(np.diff(pred.rows[:, 4]) <= 0)  # merged rows come sorted by score


def test_outputs_never_mix_predict_numbers_its_folders_and_export_writes_beside_the_checkpoint(
        inputs, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        assert main(["predict", str(inputs["checkpoint"]), str(inputs["folder"]), "--quiet"]) == 0
    assert (tmp_path / "predictions" / "detections.json").is_file()
    assert (tmp_path / "predictions2" / "detections.json").is_file()  # the second run did not overwrite the first
    checkpoint = tmp_path / "run" / "best.pth"
    checkpoint.parent.mkdir()
    checkpoint.write_bytes(inputs["checkpoint"].read_bytes())
    assert main(["export", str(checkpoint)]) == 0
    assert (tmp_path / "run" / "best.onnx").is_file() and not (tmp_path / "model.onnx").exists()
    capsys.readouterr()
    before = checkpoint.read_bytes()
    for out in (checkpoint, tmp_path / "notes.txt"):
        out.write_bytes(before) if out == checkpoint else out.write_text("mine")
        assert main(["export", str(checkpoint), "--out", str(out)]) == 2
        assert capsys.readouterr().err.startswith(f"error: --out {out} ")
    assert checkpoint.read_bytes() == before and (tmp_path / "notes.txt").read_text() == "mine"
