"""Inference runs in channels-last memory where the architecture is faster so (measured by
benchmarks/bench_models.py), with the same detections as the plain layout; export still traces the plain one."""
from __future__ import annotations

import copy

import torch

from centernet.app import runs
from centernet.config import ExperimentConfig
from centernet.engine.checkpoint import save_checkpoint
from centernet.engine.inference import is_channels_last, model_runner
from centernet.models import prefers_channels_last
from centernet.app.builders import model_from_config, task_from_config


def _checkpoint(tmp_path, arch: str):
    cfg = ExperimentConfig()
    cfg.model.arch, cfg.data.input_size, cfg.task.num_classes = arch, (64, 64), 3
    torch.manual_seed(0)
    save_checkpoint(tmp_path / f"{arch}.pth", cfg, model_from_config(cfg, task_from_config(cfg)))
    return tmp_path / f"{arch}.pth"


def test_loaded_models_run_channels_last_with_the_same_maps(tmp_path) -> None:
    assert prefers_channels_last("resdcn_18") and prefers_channels_last("dla_34")
    assert not prefers_channels_last("mobilenet")
    loaded = runs.load_model(_checkpoint(tmp_path, "resdcn_18_tiny"))
    assert is_channels_last(loaded.model)
    plain = copy.deepcopy(loaded.model).to(memory_format=torch.contiguous_format)
    assert not is_channels_last(plain)
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        a = model_runner(loaded.model, loaded.task)(images)
        b = model_runner(plain, loaded.task)(images)
    for key in b:
        torch.testing.assert_close(a[key], b[key], atol=1e-4, rtol=1e-4)
