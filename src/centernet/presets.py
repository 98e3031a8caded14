"""Named paper configurations (SPEC 9), each a function returning a fresh ExperimentConfig.

Learning rates follow the original: 1.25e-4 per 32 images at the original batch size. The paper presets
start their backbone from ImageNet weights (``model.pretrained="imagenet"``, downloaded into the torch hub
cache on first use) as the paper did, except Hourglass (the original started it from ExtremeNet, which has
no ImageNet file); the CPU presets train from scratch and stay offline.
"""
from __future__ import annotations

from typing import Callable

from .config import DataConfig, ExperimentConfig, ModelConfig, TaskConfig, TrainConfig
from .registry import Registry
from .weights import imagenet_weights

PRESETS: Registry[Callable[[], ExperimentConfig]] = Registry("preset")


def _coco(arch: str, batch: int, lr: float, epochs: int = 140, steps: tuple[int, ...] = (90, 120),
          task: str = "ctdet", num_classes: int = 80) -> ExperimentConfig:
    return ExperimentConfig(
        model=ModelConfig(arch=arch, pretrained="imagenet" if imagenet_weights(arch) else None),
        data=DataConfig(input_size=(512, 512)),  # keep_res padding follows the backbone (127 for Hourglass)
        task=TaskConfig(name=task, num_classes=num_classes),
        train=TrainConfig(epochs=epochs, batch_size=batch, lr=lr, lr_steps=steps),
    )


def _voc(arch: str) -> ExperimentConfig:
    cfg = _coco(arch, 32, 1.25e-4, 70, (45, 60), num_classes=20)
    cfg.data.input_size = (384, 384)
    return cfg


PRESETS.register("ctdet_res18_coco")(lambda: _coco("res_18", 114, 5e-4))
PRESETS.register("ctdet_resdcn18_coco")(lambda: _coco("resdcn_18", 114, 5e-4))
PRESETS.register("ctdet_resdcn101_coco")(lambda: _coco("resdcn_101", 96, 3.75e-4))
PRESETS.register("ctdet_dla34_coco_1x")(lambda: _coco("dla_34", 128, 5e-4))
PRESETS.register("ctdet_dla34_coco_2x")(lambda: _coco("dla_34", 128, 5e-4, 230, (180, 210)))
# Hourglass: fine-tuned (from ExtremeNet in the paper) for 50 epochs, lr dropped at 40.
PRESETS.register("ctdet_hourglass_coco")(lambda: _coco("hourglass", 24, 2.5e-4, 50, (40,)))
PRESETS.register("ctdet_resdcn18_voc")(lambda: _voc("resdcn_18"))
PRESETS.register("ctdet_resdcn101_voc")(lambda: _voc("resdcn_101"))
PRESETS.register("ctdet_dla34_voc")(lambda: _voc("dla_34"))


@PRESETS.register("ctdet_cpu_small")
def ctdet_cpu_small() -> ExperimentConfig:
    """A few minutes on a 2-core CPU: small inputs, no crop jitter, the synthetic shapes by default."""
    return ExperimentConfig(
        model=ModelConfig(arch="dla_tiny"),
        data=DataConfig(input_size=(128, 128), random_crop=False, scale_jitter=0.2, shift_jitter=0.05,
                        color_aug=False, num_workers=1),
        task=TaskConfig(name="ctdet", num_classes=3),
        train=TrainConfig(epochs=16, batch_size=16, lr=1e-3, lr_steps=(12, 15), val_interval=8, seed=0),
    )


# Multi-person pose (COCO person keypoints, one class). The original fine-tunes from the ctdet COCO models
# (ctdet_coco_dla_2x.pth, ctdet_coco_hg.pth; load them into a pose model with strict=False, the pose heads stay
# fresh) and keeps at most 32 people per image. Its dla_3x script misspells "--lr_step" (drops at 270, 300).
def _pose(arch: str, batch: int, lr: float, epochs: int, steps: tuple[int, ...]) -> ExperimentConfig:
    cfg = _coco(arch, batch, lr, epochs, steps, task="multi_pose", num_classes=1)
    cfg.data.max_objects = 32
    cfg.task.class_names = ["person"]
    cfg.task.cat_ids = [1]
    return cfg


PRESETS.register("multi_pose_dla34_coco_1x")(lambda: _pose("dla_34", 128, 5e-4, 140, (90, 120)))
PRESETS.register("multi_pose_dla34_coco_3x")(lambda: _pose("dla_34", 128, 5e-4, 320, (270, 300)))
PRESETS.register("multi_pose_hourglass_coco_1x")(
    lambda: _pose("hourglass", 24, 2.5e-4, 50, (40,)))
PRESETS.register("multi_pose_hourglass_coco_3x")(
    lambda: _pose("hourglass", 24, 2.5e-4, 150, (130,)))


@PRESETS.register("multi_pose_cpu_small")
def multi_pose_cpu_small() -> ExperimentConfig:
    """A few minutes on a 2-core CPU: the synthetic stick figures (centernet.data.synthetic_pose) at 128 px."""
    cfg = ctdet_cpu_small()
    cfg.task = TaskConfig(name="multi_pose", num_classes=1, class_names=["person"], cat_ids=[1])
    cfg.data.max_objects = 32
    return cfg


def get_preset(name: str) -> ExperimentConfig:
    return PRESETS.get(name)()
