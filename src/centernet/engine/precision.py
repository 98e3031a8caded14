"""Reduced precision for predict / eval: allowed only where the hardware makes it pay.

* CUDA: fp16 always, bf16 where the GPU supports it (``torch.cuda.is_bf16_supported``).
* CPU: bf16 / fp16 only with AMX tiles (``amx_bf16`` / ``amx_fp16``, e.g. Xeon Sapphire Rapids). Without
  them autocast is slower than fp32: on AVX512-BF16 (no AMX) 1.2-5x (resdcn_18, dla_34, dla_tiny
  measured here), on AVX2 about 6x and more. The CPU lever there is int8 in onnxruntime
  (``centernet.export.quantize``).
"""
from __future__ import annotations

import contextlib
from typing import ContextManager

import torch

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
CPU_UNITS = {torch.bfloat16: "amx_bf16", torch.float16: "amx_fp16"}  # the CPU feature that makes each pay


def cpu_features() -> dict[str, bool]:
    """The CPU's instruction-set features as torch detects them at run time ({} where torch cannot tell)."""
    get = getattr(torch.cpu, "get_capabilities", None)
    if get is not None:
        return {k: v for k, v in get().items() if isinstance(v, bool)}
    probes = {"amx_bf16": "_is_amx_tile_supported", "amx_fp16": "_is_amx_fp16_supported",
              "avx512_bf16": "_is_avx512_bf16_supported"}
    return {name: bool(getattr(torch.cpu, fn)()) for name, fn in probes.items() if hasattr(torch.cpu, fn)}


def _cpu_summary(features: dict[str, bool]) -> str:
    """e.g. 'AVX512, avx512_bf16, no AMX' for the one-line refusal."""
    parts = [torch.backends.cpu.get_cpu_capability()]
    if features.get("avx512_bf16"):
        parts.append("avx512_bf16")
    parts.append("no AMX")
    return ", ".join(parts)


def resolve_precision(name: str, device: str | torch.device) -> torch.dtype:
    """The compute dtype for ``name`` ("fp32", "bf16", "fp16") on ``device``; ValueError (one line, with
    the reason) where reduced precision is unsupported or would run slower than fp32."""
    if name not in PRECISIONS:
        raise ValueError(f"unknown precision {name!r}; choose from {', '.join(PRECISIONS)}")
    dtype = PRECISIONS[name]
    device = torch.device(device)
    if dtype == torch.float32:
        return dtype
    if device.type == "cuda":
        if dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
            raise ValueError(f"bf16 is not supported by this GPU ({torch.cuda.get_device_name(device)}); "
                             "use fp16 or fp32")
        return dtype
    if device.type == "cpu":
        features = cpu_features()
        if features.get(CPU_UNITS[dtype]):
            return dtype
        raise ValueError(f"{name} on this CPU ({_cpu_summary(features)}) runs slower than fp32 (autocast without "
                         f"{CPU_UNITS[dtype]} units); use fp32, or int8 via `centernet export --int8`")
    raise ValueError(f"{name} is not supported on device {device.type!r}; use fp32")


def check_fp32_runner(name: str) -> None:
    """A runner (e.g. an onnxruntime session) computes in the precision it was exported in: refuse others."""
    if name != "fp32":
        raise ValueError(f"--precision {name} applies to PyTorch checkpoints; an exported model runs in the "
                         "precision it was exported in (int8: `centernet export --int8`)")


def autocast_context(dtype: torch.dtype, device: str | torch.device) -> ContextManager:
    """``torch.autocast`` to ``dtype`` on ``device``'s type, or a no-op for fp32."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)
