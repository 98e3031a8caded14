"""Weights: every file of tensors the package reads, from its name to the tensors in a model.

* :mod:`.catalogue`: the known files by name (ImageNet backbones, the original model zoo), torch-free
* :mod:`.download`: download into the torch hub cache, with size and sha256 checked
* :mod:`.read`: the safe reader of every file (``weights_only=True``), our checkpoints, any layout's tensors
* :mod:`.official`, :mod:`.official_cornernet`: the original CenterNet and CornerNet layouts against ours
* :mod:`.fit`: which saved tensors fit a model, and a report of the rest (every loader's one rule)
* :mod:`.pretrained`: zoo configurations, ImageNet backbones and the initial weights of a fine-tune

Layer: above models and tasks, below engine and builders (``tests/test_layering.py``). The catalogue's
names are importable from here as before this module became a package (``centernet.weights.weights_info``).
"""
from __future__ import annotations

from .catalogue import (CATEGORY_IDS, CLASS_NAMES, COCO_CAT_IDS, COCO_CLASSES, IMAGENET_MEAN, IMAGENET_STD,
                        KITTI_CLASSES, PERSON_CLASSES, VOC_CLASSES, WeightsInfo, imagenet_weights, is_known,
                        known_weights, weights_info)

__all__ = ["CATEGORY_IDS", "CLASS_NAMES", "COCO_CAT_IDS", "COCO_CLASSES", "IMAGENET_MEAN", "IMAGENET_STD",
           "KITTI_CLASSES", "PERSON_CLASSES", "VOC_CLASSES", "WeightsInfo", "imagenet_weights", "is_known",
           "known_weights", "weights_info"]
