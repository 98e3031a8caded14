"""Reduced precision is granted only where it pays: refused on CPUs without AMX, with a one-line reason."""
from __future__ import annotations

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
