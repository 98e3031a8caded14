"""Inference runs in channels-last memory where the architecture is faster so (measured by
benchmarks/bench_models.py), with the same detections as the plain layout; export still traces the plain one."""
from __future__ import annotations

import copy

import pytest
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


def test_small_models_train_channels_last_as_they_would_plain(tmp_path) -> None:
    """dla_tiny trains faster in channels-last memory (bench_train.py --channels-last); the layout changes the
    order of float sums, not what is computed: the same loss and gradients on a batch, and a trained run's
    weights load into a plain model with the same maps."""
    from centernet.app.builders import open_source
    from centernet.config import DataConfig, ModelConfig, TaskConfig, TrainConfig
    from centernet.data import make_synthetic_dataset
    from centernet.data.pipeline import collate
    from centernet.engine.trainer import Trainer

    assert prefers_channels_last("dla_tiny_conv", training=True) and prefers_channels_last("dla_tiny", training=True)
    assert not prefers_channels_last("res_18", training=True) and not prefers_channels_last("dla_34", training=True)
    shapes = make_synthetic_dataset(tmp_path / "shapes", num_train=8, num_val=1, image_size=(64, 64))
    cfg = ExperimentConfig(model=ModelConfig(arch="dla_tiny_conv"),
                           data=DataConfig(input_size=(64, 64), num_workers=0, random_crop=False),
                           task=TaskConfig(num_classes=3),
                           train=TrainConfig(epochs=1, batch_size=4, lr=1e-3, lr_steps=(), val_interval=0, seed=3,
                                             out_dir=str(tmp_path / "run"), device="cpu", reports=False, flops=False))
    torch.manual_seed(3)
    task = task_from_config(cfg)
    trainer = Trainer(cfg, model_from_config(cfg, task), task, open_source(str(shapes["train_ann"])), progress=False)
    assert is_channels_last(trainer.model)
    batch = collate([trainer.dataset[i] for i in range(4)])
    batch["input"] = batch["input"].double()
    losses, grads = [], []  # in float64 (the task's loss sums in float32): float32 sums in another order drift
    # apart through train-mode batch norm
    weights = None
    for layout in (torch.channels_last, torch.contiguous_format):
        model = copy.deepcopy(trainer.model).double().to(memory_format=layout)
        assert is_channels_last(model) == (layout == torch.channels_last)
        maps = model(batch["input"].contiguous(memory_format=layout))[-1]
        weights = weights or {k: torch.randn_like(v) for k, v in maps.items()}
        loss = sum((maps[k] * weights[k]).sum() for k in maps)
        loss.backward()
        losses.append(loss.detach())
        grads.append([p.grad for p in model.parameters()])
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-10, atol=1e-12)
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9)
    trainer.fit()  # the inputs follow the weights' layout
    loaded = model_from_config(cfg, task)
    loaded.load_state_dict(torch.load(tmp_path / "run" / "last.pth", weights_only=True)["model"])
    assert not is_channels_last(loaded)
    images = torch.randn(1, 3, 64, 64)
    trainer.model.eval(), loaded.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(images)[-1]["hm"], trainer.model(images)[-1]["hm"])
