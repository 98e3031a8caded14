"""int8 export: a QDQ model calibrated on test-prepared images, metadata kept, maps close to fp32."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from centernet.data import make_synthetic_dataset, open_dataset, read_image
from centernet.engine.checkpoint import save_checkpoint

from centernet.export.onnx import OnnxRunner, export_checkpoint, onnx_predictor, op_types, read_metadata
from centernet.export.quantize import (META_QUANTIZATION, CalibrationReader, calibration_images, quantize_onnx,
                                       _quantization_tools)
from test_export import tiny_setup

pytest.importorskip("onnxruntime.quantization")


@pytest.fixture(scope="module")
def quantized(tmp_path_factory):
    root = tmp_path_factory.mktemp("int8")
    cfg, model, task = tiny_setup()
    save_checkpoint(root / "tiny.pth", cfg, model)
    # 128x128, fixed; the DCNs' gather form, whose sampling stays float (DeformConv: test_onnx_deformconv.py)
    fp32 = export_checkpoint(root / "tiny.pth", root / "tiny.onnx", dcn_op="gather")
    data = make_synthetic_dataset(root / "data", num_train=6, num_val=3, image_size=(160, 120))
    int8 = quantize_onnx(fp32, root / "tiny_int8.onnx", data["train_images"], num_images=4)
    return fp32, int8, data


def test_graph_is_qdq_and_keeps_the_metadata(quantized):
    fp32, int8, _ = quantized
    ops = {op for _, op in op_types(int8)}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops and "Gather" in ops  # the DCN sampling stays float
    before, after = read_metadata(fp32), read_metadata(int8)
    assert {k: after[k] for k in before} == before
    summary = json.loads(after[META_QUANTIZATION])
    assert summary["calibration_images"] == 4 and summary["exclude"] == ["heads"]
    assert OnnxRunner(int8).config.to_dict() == OnnxRunner(fp32).config.to_dict()


def test_float_and_int8_parts(quantized):
    import onnx

    _, int8, _ = quantized
    graph = onnx.load(str(int8)).graph
    producer = {out: node.op_type for node in graph.node for out in node.output}
    convs = {node.name: node for node in graph.node if node.op_type == "Conv"}
    weight_from = {name: producer.get(node.input[1], "initializer") for name, node in convs.items()}
    assert weight_from["/model/backbone/conv1/Conv"] == "DequantizeLinear"  # int8 weights
    heads = [name for name in convs if name.startswith("/model/heads.0/") and ".2/" in name]
    assert len(heads) == 3 and all(weight_from[name] == "initializer" for name in heads)  # float: "heads"
    sampling = [node for node in graph.node if node.op_type == "Gather" and node.name.startswith("/model/neck")]
    assert sampling and all(producer.get(node.input[0]) != "DequantizeLinear" for node in sampling)  # float rows


def test_maps_and_detections_close_to_fp32(quantized):
    fp32, int8, data = quantized
    paths = sorted(data["val_images"].iterdir())
    reader = CalibrationReader(paths, read_metadata(fp32)["centernet_config"], (128, 128))
    images = torch.from_numpy(np.concatenate([reader.prepare(p) for p in paths]))  # [3, 3, 128, 128]
    ref, out = OnnxRunner(fp32)(images), OnnxRunner(int8)(images)
    assert float((ref["hm"] - out["hm"]).abs().max()) < 0.1
    assert float((ref["wh"] - out["wh"]).abs().max()) < 0.1 * float(ref["wh"].abs().max()) + 0.05
    image = read_image(paths[0])
    rows_fp32, rows_int8 = onnx_predictor(fp32)(image).rows, onnx_predictor(int8)(image).rows
    assert rows_int8.shape == rows_fp32.shape
    np.testing.assert_allclose(rows_int8[:5, 4], rows_fp32[:5, 4], atol=0.1)  # the top scores


def test_calibration_images_from_a_source_and_a_folder(quantized, tmp_path):
    *_, data = quantized
    source = open_dataset(data["train_ann"])
    picked = calibration_images(source, 3)
    assert [p.name for p in picked] == [source.samples[i].path.name for i in (0, 2, 5)]  # spread evenly
    assert calibration_images(data["train_images"], 100) == sorted(data["train_images"].iterdir())
    with pytest.raises(FileNotFoundError, match="calibration folder not found"):
        calibration_images(tmp_path / "nope", 4)
    with pytest.raises(ValueError, match="holds no images"):
        calibration_images(tmp_path, 4)


def test_bad_inputs_fail_with_one_line(quantized, tmp_path):
    fp32, int8, data = quantized
    with pytest.raises(ValueError, match="unknown calibration method 'kl'"):
        quantize_onnx(fp32, tmp_path / "x.onnx", data["train_images"], method="kl")
    with pytest.raises(ValueError, match="matches no node"):
        quantize_onnx(fp32, tmp_path / "x.onnx", data["train_images"], num_images=1, exclude=["/nothing/*"])
    import onnx

    plain = onnx.load(str(fp32))
    del plain.metadata_props[:]
    onnx.save(plain, str(tmp_path / "plain.onnx"))
    with pytest.raises(ValueError, match="not exported by centernet"):
        quantize_onnx(tmp_path / "plain.onnx", tmp_path / "x.onnx", data["train_images"])


def test_missing_quantization_tools_say_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime.quantization", None)
    with pytest.raises(ImportError, match=r"needs onnxruntime's quantization tools .*pip install"):
        _quantization_tools()


def test_cli_export_int8(quantized, tmp_path, capsys):
    """`centernet export --int8 --calibrate DATA` writes the fp32 model and its int8 twin; without
    --calibrate it is one clear error."""
    from centernet.cli import main

    fp32, _, data = quantized
    checkpoint = fp32.with_suffix(".pth")
    assert main(["export", str(checkpoint), "--out", str(tmp_path / "m.onnx"), "--int8"]) == 2
    assert "--int8 needs --calibrate" in capsys.readouterr().err
    assert main(["export", str(checkpoint), "--out", str(tmp_path / "m.onnx"), "--int8",
                 "--calibrate", str(data["train_images"]), "--calib-images", "2"]) == 0
    ops = {op for _, op in op_types(tmp_path / "m_int8.onnx")}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert main(["export", str(checkpoint), "--out", str(tmp_path / "n.onnx"), "--int8",
                 "--calibrate", str(data["train_ann"]), "--calib-images", "2"]) == 0  # a data set works too
    assert (tmp_path / "n_int8.onnx").is_file()
