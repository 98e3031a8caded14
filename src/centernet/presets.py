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
from .weights.catalogue import IMAGENET_MEAN, IMAGENET_STD, imagenet_weights

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


def _cpu_small() -> ExperimentConfig:
    """The small CPU presets' common ground: dla_tiny at 128x128, 16 epochs of Adam 1e-3, no crop jitter."""
    return ExperimentConfig(
        model=ModelConfig(arch="dla_tiny"),
        data=DataConfig(input_size=(128, 128), random_crop=False, scale_jitter=0.2, shift_jitter=0.05,
                        color_aug=False, num_workers=1),
        task=TaskConfig(name="ctdet", num_classes=3),
        train=TrainConfig(epochs=16, batch_size=16, lr=1e-3, lr_steps=(12, 15), val_interval=8, seed=0),
    )


@PRESETS.register("ctdet_cpu_small")
def ctdet_cpu_small() -> ExperimentConfig:
    """The demo's recipe, 2.5-3 minutes on a 2-core CPU (the synthetic shapes by default): dla_tiny with plain
    convs in its neck (dla_tiny_conv; at these widths the 16 DCNs were two thirds of a training step), Adam 2e-3
    (with 1e-3 its AP50 sat at the demo's 0.9 instead of above it)."""
    cfg = _cpu_small()
    cfg.model.arch, cfg.train.lr = "dla_tiny_conv", 2e-3
    return cfg


@PRESETS.register("ctdet_cpu_photos")
def ctdet_cpu_photos() -> ExperimentConfig:
    """A few hundred photos of one's own, from scratch on a CPU (about 20 CPU-minutes for 128 photos): the
    demo's model at 256x256 for 120 epochs, a cosine schedule after 2 warm-up epochs, an average of the weights
    (EMA 0.99: about 100 steps), TTFNet's GIoU box regression and a 4-image mosaic for half the images. Measured
    against ctdet_cpu_small at the same size and length on random 128 / 32 splits of raccoon_voc:
    docs/performance.md (small data from scratch)."""
    cfg = ctdet_cpu_small()
    cfg.data.input_size = (256, 256)
    cfg.data.mosaic = 0.5
    cfg.task.options = {"size_loss": "giou"}
    t = cfg.train
    t.epochs, t.lr_steps, t.schedule, t.warmup_epochs, t.ema = 120, (), "cosine", 2.0, 0.99
    return cfg


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
    cfg = _cpu_small()
    cfg.task = TaskConfig(name="multi_pose", num_classes=1, class_names=["person"], cat_ids=[1])
    cfg.data.max_objects = 32
    return cfg


# CornerNet (SPEC 7): 511x511 crops (128x128 output maps), batch 49, Adam 2.5e-4, 500k iterations with the lr
# divided by 10 after 450k (the original's config/CornerNet.json). As epochs of COCO train2017 (118,287 images,
# the same images as the original's trainval35k): 500,000 x 49 / 118,287 = 207.1 -> 207 epochs, the drop at
# 450,000 x 49 / 118,287 = 186.4 -> epoch 186. Tested like the original (its test/coco.py): the whole image
# padded to n | 127 (keep_res with the CornerNet task's layout: 480 -> 511, a 128 output map), always with the
# flip test (data.test_flip; `eval --no-flip` turns it off), soft-NMS from the task.
@PRESETS.register("cornernet_hg104_coco")
def cornernet_hg104_coco() -> ExperimentConfig:
    cfg = _coco("cornernet", 49, 2.5e-4, 207, (186,), task="cornernet")
    cfg.data.input_size = (511, 511)
    cfg.data.test_keep_res = True
    cfg.data.test_flip = True
    return cfg


@PRESETS.register("cornernet_cpu_small")
def cornernet_cpu_small() -> ExperimentConfig:
    """CornerNet from scratch on the synthetic shapes on a 2-core CPU: the small hourglass (hourglass_tiny,
    1.0M parameters with 3 classes) at 128x128, otherwise the small presets' settings (16 epochs, Adam 1e-3)."""
    cfg = _cpu_small()
    cfg.model.arch = "hourglass_tiny"
    cfg.task = TaskConfig(name="cornernet", num_classes=3)
    cfg.train.out_dir = "runs/demo_cornernet"
    return cfg


# Monocular 3D on KITTI (SPEC 6), as the original's experiments/ddd_3dop.sh and ddd_sub.sh: DLA-34 at 384x1280,
# batch 16, 70 epochs, lr 1.25e-4 (the original's default, not rescaled to the batch) dropped at 45 and 60;
# scale / shift augmentation only (no flip, no colour: the original comments them out); ImageNet mean / std
# applied to BGR images and the class order Pedestrian, Car, Cyclist, as the original's weights expect; 50
# objects per image. Data: the split's ImageSets files, e.g. --train KITTI/ImageSets/train.txt --val
# KITTI/ImageSets/val.txt (3DOP: Chen et al.'s split; SubCNN: Xiang et al.'s).
def _ddd(split: str) -> ExperimentConfig:
    return ExperimentConfig(
        model=ModelConfig(arch="dla_34"),
        data=DataConfig(input_size=(1280, 384), mean=IMAGENET_MEAN, std=IMAGENET_STD, random_crop=False,
                        scale_jitter=0.4, shift_jitter=0.1, flip_prob=0.0, color_aug=False, max_objects=50),
        task=TaskConfig(name="ddd", num_classes=3, class_names=["Pedestrian", "Car", "Cyclist"]),
        train=TrainConfig(epochs=70, batch_size=16, lr=1.25e-4, lr_steps=(45, 60), out_dir=f"runs/ddd_{split}"),
    )


PRESETS.register("ddd_dla34_3dop")(lambda: _ddd("3dop"))
PRESETS.register("ddd_dla34_subcnn")(lambda: _ddd("subcnn"))


@PRESETS.register("ddd_cpu_small")
def ddd_cpu_small() -> ExperimentConfig:
    """Minutes on a 2-core CPU: the synthetic 3D boxes (centernet.data.synthetic_kitti, 320x96, e.g. 512
    frames at depths 5-30 m) on the smallest arch, no augmentation. The depth loss weighs 0.1 here: at full
    weight its gradients (about z per object through 1 / sigmoid) keep this small net from a heatmap."""
    cfg = _ddd("cpu_small")
    cfg.model.arch = "resdcn_18_tiny"
    cfg.data.input_size = (320, 96)
    cfg.data.scale_jitter, cfg.data.shift_jitter = 0.0, 0.0
    cfg.data.num_workers = 1
    cfg.task.weights = {"dep": 0.1}
    cfg.train = TrainConfig(epochs=30, batch_size=16, lr=5e-3, lr_steps=(24, 28), val_interval=10, seed=0,
                            out_dir="runs/demo_ddd")
    return cfg


def get_preset(name: str) -> ExperimentConfig:
    return PRESETS.get(name)()
