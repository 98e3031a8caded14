"""DCNs in ONNX: one standard DeformConv node each (the default) or the traced gather form (``dcn_op``).

Both forms give the eager outputs in onnxruntime on every architecture with DCNs (resdcn_18 and dla_34, as their
tiny variants; hourglass / CornerNet have none), the metadata and the opset say which form a file holds, the
default falls back to the gather form where the installed onnxruntime (older than 1.25) or onnx (no opset 19)
cannot take DeformConv, the predictor runs on both, and int8 quantisation keeps the DeformConv float. Tests that
run a DeformConv skip on an onnxruntime without the kernel.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from centernet.app.builders import eval_settings, model_from_config, task_from_config
from centernet.config import ExperimentConfig
from centernet.engine.checkpoint import save_checkpoint
from centernet.engine.predictor import Predictor
from centernet.export.onnx import (DEFORMCONV_OPSET, META_DCN_OP, OnnxRunner, dcns_written_as, export_onnx,
                                   onnx_predictor, op_types, read_metadata, resolve_dcn_op, runtime_lacks_deformconv)
from centernet.models.layers.deform_conv import ModulatedDeformConv2d

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
needs_kernel = pytest.mark.skipif(runtime_lacks_deformconv() is not None,
                                  reason=f"{runtime_lacks_deformconv()}: DeformConv cannot run here")
DCN_ARCHS = ("resdcn_18_tiny", "dla_tiny")  # resdcn_18's and dla_34's structures, small
FORMS = [pytest.param("deformconv", marks=needs_kernel), "gather"]


def build(arch: str, size: int = 128, num_classes: int = 3):
    cfg = ExperimentConfig()
    cfg.model.arch = arch
    cfg.data.input_size = (size, size)
    cfg.task.num_classes = num_classes
    cfg.task.class_names = [f"c{i}" for i in range(num_classes)]
    task = task_from_config(cfg)
    torch.manual_seed(0)
    model = model_from_config(cfg, task)
    with torch.no_grad():  # offsets of a few pixels (fractional, some samples off the map), masks far from 0.5
        for name, p in model.named_parameters():
            if "conv_offset_mask" in name:
                p.normal_(0, 2.0 if name.endswith("bias") else 0.05)
            elif name.startswith("heads"):
                p.normal_(0, 0.05)
        for m in model.modules():  # BatchNorm statistics of real batches: features of unit scale at every level
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.momentum = None  # (at initialisation DLA's deep levels are 1e-4 small: a DCN would hardly matter)
        model.train()(torch.randn(4, 3, size, size))
    return cfg, model.eval(), task


@pytest.fixture(scope="module")
def models():
    return {arch: build(arch) for arch in (*DCN_ARCHS, "dla_tiny_conv")}


@pytest.fixture(scope="module")
def exports(models, tmp_path_factory):
    """(arch, dcn_op) -> an exported file with a dynamic input size, written on first use."""
    root, files = tmp_path_factory.mktemp("dcn_onnx"), {}

    def get(arch: str, dcn_op: str | None):
        if (arch, dcn_op) not in files:
            cfg, model, task = models[arch]
            files[arch, dcn_op] = export_onnx(model, task, cfg, root / f"{arch}_{dcn_op}.onnx", dynamic=True,
                                              dcn_op=dcn_op)
        return files[arch, dcn_op]

    return get


def default_opset(path) -> int:
    return next(o.version for o in onnx.load(str(path)).opset_import if o.domain in ("", "ai.onnx"))


def count(path, op: str) -> int:
    return sum(node.op_type == op for node in onnx.load(str(path)).graph.node)


@pytest.mark.parametrize("dcn_op", FORMS)
@pytest.mark.parametrize("stride, padding, dilation, groups, bias", [(1, 1, 1, 1, True), (2, 1, 1, 2, False),
                                                                     (1, 2, 2, 1, True)])
def test_one_layer_of_any_geometry_equals_eager(tmp_path, dcn_op, stride, padding, dilation, groups, bias):
    """The (dy, dx) order, offset groups, stride, padding, dilation and a missing bias, layer by layer: offsets of
    a few pixels, so that a swapped axis or group would be far off."""
    torch.manual_seed(0)
    layer = ModulatedDeformConv2d(8, 6, 3, stride, padding, dilation, groups, bias).eval()
    with torch.no_grad():
        layer.conv_offset_mask.weight.normal_(0, 0.3)
        layer.conv_offset_mask.bias.normal_(0, 2.0)
    x = torch.randn(2, 8, 11, 13)
    path = tmp_path / "layer.onnx"
    with torch.no_grad(), dcns_written_as(dcn_op):
        torch.onnx.export(layer, (x,), str(path), input_names=["x"], output_names=["y"], dynamo=False,
                          opset_version=DEFORMCONV_OPSET if dcn_op == "deformconv" else 17)
        ref = layer(x)
    assert count(path, "DeformConv") == (dcn_op == "deformconv")
    out = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(["y"], {"x": x.numpy()})[0]
    torch.testing.assert_close(torch.from_numpy(out), ref.contiguous(), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("dcn_op", FORMS)
@pytest.mark.parametrize("arch", DCN_ARCHS)
def test_onnxruntime_equals_eager(models, exports, arch, dcn_op):
    cfg, model, task = models[arch]
    path = exports(arch, dcn_op)
    images = torch.randn(2, 3, 96, 128)  # another size than the traced 128x128
    with torch.no_grad():
        ref = task.activate(model(images)[-1])
    out = OnnxRunner(path)(images)
    assert set(out) == set(ref)
    for name in ref:
        torch.testing.assert_close(out[name], ref[name], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("arch", DCN_ARCHS)
def test_metadata_and_opset_record_the_form(models, exports, arch):
    dcns = sum(isinstance(m, ModulatedDeformConv2d) for m in models[arch][1].modules())
    assert dcns > 0
    deform, gather = exports(arch, "deformconv"), exports(arch, "gather")  # writing needs no kernel
    assert read_metadata(deform)[META_DCN_OP] == "deformconv" and read_metadata(gather)[META_DCN_OP] == "gather"
    assert count(deform, "DeformConv") == dcns and count(gather, "DeformConv") == 0
    assert default_opset(deform) == DEFORMCONV_OPSET  # raised from the default 17
    assert default_opset(gather) == 17
    assert {domain for domain, _ in op_types(deform)} <= {"", "ai.onnx"}  # a standard operator
    onnx.checker.check_model(onnx.load(str(deform)), full_check=True)  # shapes infer through DeformConv


def test_a_model_without_dcns_records_none(exports, capsys):
    path = exports("dla_tiny_conv", None)
    assert read_metadata(path)[META_DCN_OP] == "none" and default_opset(path) == 17
    assert capsys.readouterr().out == ""


def test_default_falls_back_to_gather_where_deformconv_cannot_run(monkeypatch, capsys, models, tmp_path):
    assert resolve_dcn_op("gather") == "gather"
    with pytest.raises(ValueError, match="unknown dcn_op"):
        resolve_dcn_op("grid_sample")
    monkeypatch.setattr(ort, "__version__", "1.24.4")
    assert resolve_dcn_op() == "gather"
    assert capsys.readouterr().out.strip().splitlines() == [
        "exporting the DCNs as gathers, not DeformConv: onnxruntime 1.24.4 has no DeformConv kernel (1.25 or newer "
        "runs it); --dcn-op deformconv writes it anyway"]
    assert resolve_dcn_op("deformconv") == "deformconv"  # asked for: written (for another runtime)
    cfg, model, task = models["resdcn_18_tiny"]
    path = export_onnx(model, task, cfg, tmp_path / "old_runtime.onnx")
    assert read_metadata(path)[META_DCN_OP] == "gather" and default_opset(path) == 17
    assert "exporting the DCNs as gathers" in capsys.readouterr().out
    monkeypatch.setattr(ort, "__version__", "1.25.0")
    assert resolve_dcn_op() == "deformconv" and capsys.readouterr().out == ""
    monkeypatch.setattr(onnx.defs, "onnx_opset_version", lambda: 18)  # an onnx without DeformConv
    assert resolve_dcn_op() == "gather"
    assert "has no opset 19" in capsys.readouterr().out
    with pytest.raises(ValueError, match="cannot write DeformConv"):
        resolve_dcn_op("deformconv")


@pytest.mark.parametrize("dcn_op", FORMS)
def test_predictor_runs_on_both_forms(models, exports, dcn_op):
    cfg, model, task = models["resdcn_18_tiny"]
    image = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    ref = Predictor(model, task, eval_settings(cfg), cfg.task.class_names)(image).rows
    predictor = onnx_predictor(exports("resdcn_18_tiny", dcn_op))
    assert predictor.runner.dcn_op == dcn_op
    rows = predictor(image).rows
    assert rows.shape == ref.shape
    np.testing.assert_allclose(rows[:20], ref[:20], atol=2e-3, rtol=1e-4)  # image pixels


def test_runner_says_what_to_do_where_the_kernel_is_missing(exports, monkeypatch):
    path = exports("resdcn_18_tiny", "deformconv")

    def refuse(*args, **kwargs):
        raise RuntimeError("[ONNXRuntimeError] : 9 : NOT_IMPLEMENTED : Could not find an implementation for "
                           "DeformConv(19) node with name '/model/neck/DeformConv'")

    monkeypatch.setattr(ort, "InferenceSession", refuse)
    with pytest.raises(ValueError, match=r"DeformConv.*onnxruntime>=1\.25, or export with --dcn-op gather"):
        OnnxRunner(path)


def test_cli_and_facade_take_the_dcn_op(models, tmp_path, capsys):
    from centernet import CenterNet
    from centernet.cli import main

    cfg, model, task = models["resdcn_18_tiny"]
    checkpoint = tmp_path / "tiny.pth"
    save_checkpoint(checkpoint, cfg, model)
    assert main(["export", str(checkpoint), "--out", str(tmp_path / "g.onnx"), "--dcn-op", "gather"]) == 0
    assert read_metadata(tmp_path / "g.onnx")[META_DCN_OP] == "gather"
    assert main(["export", str(checkpoint), "--out", str(tmp_path / "d.onnx")]) == 0
    expected = "gather" if runtime_lacks_deformconv() else "deformconv"
    assert read_metadata(tmp_path / "d.onnx")[META_DCN_OP] == expected
    with pytest.raises(SystemExit):
        main(["export", str(checkpoint), "--dcn-op", "im2col"])
    assert "invalid choice" in capsys.readouterr().err
    path = CenterNet(str(checkpoint), device="cpu", progress=False).export(out=tmp_path / "f.onnx", dcn_op="gather")
    assert read_metadata(path)[META_DCN_OP] == "gather"


@needs_kernel
def test_int8_quantises_around_a_float_deformconv(exports, tmp_path):
    pytest.importorskip("onnxruntime.quantization")
    from centernet.data import make_synthetic_dataset
    from centernet.export.quantize import quantize_onnx

    fp32 = exports("resdcn_18_tiny", "deformconv")
    data = make_synthetic_dataset(tmp_path / "data", num_train=4, num_val=1, image_size=(160, 120))
    int8 = quantize_onnx(fp32, tmp_path / "int8.onnx", data["train_images"], num_images=4)
    graph = onnx.load(str(int8)).graph
    producer = {out: node.op_type for node in graph.node for out in node.output}
    deform = [node for node in graph.node if node.op_type == "DeformConv"]
    assert len(deform) == 3 and all(producer.get(node.input[1], "initializer") == "initializer" for node in deform)
    convs = [node for node in graph.node if node.op_type == "Conv"]
    assert sum(producer.get(node.input[1]) == "DequantizeLinear" for node in convs) > len(convs) // 2
    assert read_metadata(int8)[META_DCN_OP] == "deformconv"
    images = torch.randn(1, 3, 128, 128)
    ref, out = OnnxRunner(fp32)(images), OnnxRunner(int8)(images)
    assert float((ref["hm"] - out["hm"]).abs().max()) < 0.1
