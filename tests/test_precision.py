"""Reduced precision is granted only where it pays: refused on CPUs without AMX, with a one-line reason."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from centernet.engine import precision
from centernet.engine.precision import autocast_context, resolve_precision


def test_fp32_is_always_granted_and_autocast_is_a_no_op():
    assert resolve_precision("fp32", "cpu") == torch.float32
    layer = torch.nn.Linear(4, 3)
    with autocast_context(torch.float32, "cpu"):
        assert layer(torch.randn(2, 4)).dtype == torch.float32


@pytest.mark.parametrize("name,unit", [("bf16", "amx_bf16"), ("fp16", "amx_fp16")])
def test_cpu_without_amx_is_refused_with_the_reason(monkeypatch, name, unit):
    monkeypatch.setattr(precision, "cpu_features", lambda: {"avx2": True, "avx512_bf16": True})
    with pytest.raises(ValueError, match=rf"^{name} on this CPU \(.*no AMX\) runs slower than fp32 .*{unit}.*"
                                         r"int8 via `centernet export --int8`$"):
        resolve_precision(name, "cpu")


def test_cpu_with_amx_is_granted(monkeypatch):
    monkeypatch.setattr(precision, "cpu_features", lambda: {"amx_bf16": True, "amx_fp16": False})
    assert resolve_precision("bf16", "cpu") == torch.bfloat16
    with pytest.raises(ValueError, match="amx_fp16"):
        resolve_precision("fp16", "cpu")


def test_this_cpu_matches_its_detected_features():
    has_amx = precision.cpu_features().get("amx_bf16", False)
    if has_amx:
        assert resolve_precision("bf16", "cpu") == torch.bfloat16
    else:
        with pytest.raises(ValueError, match="runs slower than fp32"):
            resolve_precision("bf16", "cpu")


def test_cuda_rules(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: "Old GPU")
    assert resolve_precision("fp16", "cuda") == torch.float16
    with pytest.raises(ValueError, match=r"bf16 is not supported by this GPU \(Old GPU\)"):
        resolve_precision("bf16", "cuda:0")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_precision("bf16", "cuda") == torch.bfloat16


def test_bad_names_and_devices():
    with pytest.raises(ValueError, match="unknown precision 'int4'; choose from fp32, bf16, fp16"):
        resolve_precision("int4", "cpu")
    with pytest.raises(ValueError, match="not supported on device 'meta'"):
        resolve_precision("bf16", "meta")


def test_autocast_context_computes_in_the_dtype():
    layer = torch.nn.Linear(4, 3)
    with autocast_context(torch.bfloat16, "cpu"):
        out = layer(torch.randn(2, 4))
    assert out.dtype == torch.bfloat16


# -- wired into predict / eval ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from centernet.app.builders import model_from_config, task_from_config
    from centernet.config import ExperimentConfig
    from centernet.data import make_synthetic_dataset
    from centernet.engine.checkpoint import save_checkpoint

    root = tmp_path_factory.mktemp("precision")
    data = make_synthetic_dataset(root / "data", num_train=2, num_val=2, image_size=(64, 64))
    cfg = ExperimentConfig()
    cfg.model.arch = "resdcn_18_tiny"
    cfg.data.input_size = (64, 64)
    cfg.task.num_classes = 3
    cfg.task.class_names = ["rectangle", "ellipse", "triangle"]
    torch.manual_seed(0)
    save_checkpoint(root / "tiny.pth", cfg, model_from_config(cfg, task_from_config(cfg)))
    return root / "tiny.pth", data


@pytest.mark.parametrize("command", ["predict", "eval"])
def test_cli_refuses_bf16_here_in_one_line(tiny, tmp_path, capsys, monkeypatch, command):
    from centernet.cli import main

    monkeypatch.setattr(precision, "cpu_features", lambda: {"avx512_bf16": True})  # no AMX
    ckpt, data = tiny
    args = [str(data["val_images"]), "--out", str(tmp_path / "p")] if command == "predict" else \
        ["--data", str(data["val_ann"])]
    assert main([command, str(ckpt), *args, "--device", "cpu", "--workers", "0", "--precision", "bf16"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: bf16 on this CPU (") and "runs slower than fp32" in err[0]
    assert not (tmp_path / "p").exists()  # refused before any work


def test_granted_bf16_runs_the_network_in_bf16_and_hands_fp32_maps_to_the_task(tiny, monkeypatch):
    from centernet.app import runs

    monkeypatch.setattr(precision, "cpu_features", lambda: {"amx_bf16": True})
    ckpt, data = tiny
    loaded = runs.load_model(str(ckpt), "cpu")
    seen = []
    loaded.model.register_forward_hook(lambda m, i, out: seen.append({k: v.dtype for k, v in out[-1].items()}))
    image = np.full((64, 64, 3), 127, np.uint8)
    image[16:48, 20:44] = 250
    low = runs.predictor(loaded, "cpu", precision="bf16")(image)
    full = runs.predictor(loaded, "cpu")(image)
    assert set(seen[0].values()) == {torch.bfloat16} and set(seen[1].values()) == {torch.float32}
    assert low.rows.dtype == full.rows.dtype and low.rows.shape == full.rows.shape
    top = full.rows[:, 4].argmax()
    assert abs(low.rows[:, 4].max() - full.rows[top, 4]) < 0.05  # bf16 keeps ~3 significant digits


def test_an_exported_runner_refuses_reduced_precision(tiny):
    from centernet.app import runs
    from centernet.engine.precision import check_fp32_runner

    check_fp32_runner("fp32")
    with pytest.raises(ValueError, match="exported model runs in the precision it was exported in"):
        check_fp32_runner("bf16")
    ckpt, _ = tiny
    loaded = runs.load_model(str(ckpt), "cpu")
    loaded.model, loaded.runner = None, lambda images: {}
    with pytest.raises(ValueError, match="--precision fp16 applies to PyTorch checkpoints"):
        runs.predictor(loaded, "cpu", precision="fp16")
