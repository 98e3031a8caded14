"""From samples to network inputs and targets: the training and the test pipelines."""
from __future__ import annotations

import dataclasses
from typing import Callable, Protocol, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from ..config import COCO_MEAN, COCO_STD
from ..ops.transforms import affine_transform, get_affine_transform
from .io import read_image
from .mix import blend, check_mixable, merge_samples, mosaic, mosaic_crop
from .sample import DetectionSource, Sample
from .transforms import (
    AugmentParams, draw_color_jitter, gray_mean, output_side, prepare_test_image, sample_augment, to_input,
    warp_affine,
)


class TargetEncoder(Protocol):
    """What the training pipeline needs of a task (``centernet.tasks.base.Task`` is one)."""

    flip_pairs: Sequence[tuple[int, int]]
    can_flip: bool

    def flip_fields(self, sample: Sample) -> Sample: ...

    def sample_meta(self, sample: Sample) -> dict[str, np.ndarray]: ...

    def encode(self, sample: Sample, out_w: int, out_h: int) -> dict[str, np.ndarray]: ...


def flip_sample(sample: Sample, flip_pairs: Sequence[tuple[int, int]]) -> Sample:
    """Mirror the annotations of ``sample`` (x -> width - x - 1), swapping left/right keypoints."""
    width = sample.width
    boxes = sample.boxes.copy()
    boxes[:, [0, 2]] = width - sample.boxes[:, [2, 0]] - 1
    keypoints = sample.keypoints
    if keypoints is not None:
        keypoints = keypoints.copy()
        keypoints[..., 0] = width - keypoints[..., 0] - 1
        for a, b in flip_pairs:
            keypoints[:, [a, b]] = keypoints[:, [b, a]]
    return dataclasses.replace(sample, boxes=boxes, keypoints=keypoints)


def warp_sample(sample: Sample, trans: np.ndarray, out_w: int, out_h: int) -> Sample:
    """Map the geometry of ``sample`` through the 2x3 ``trans`` into an ``out_w x out_h`` map."""
    corners = affine_transform(sample.boxes.reshape(-1, 2), trans).reshape(-1, 4)
    keypoints = sample.keypoints
    if keypoints is not None:
        keypoints = keypoints.copy()
        keypoints[..., :2] = affine_transform(keypoints[..., :2], trans)
    return dataclasses.replace(sample, boxes=corners, keypoints=keypoints, width=out_w, height=out_h)


def clip_to_input(sample: Sample, input_size: tuple[int, int], output_size: tuple[int, int]) -> Sample:
    """Clip the boxes of ``sample`` (output-map pixels) to the input crop: [0, (n - 1) * out / n] per axis, the
    input's last pixel in map pixels (the original CornerNet's rule: 510 * 128 / 511 = 127.75 for its 511
    input). The CenterNet tasks then clip tighter, to the last map pixel (their original's), so for them this
    changes nothing."""
    (inp_w, inp_h), (out_w, out_h) = input_size, output_size
    boxes = sample.boxes.copy()
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, (inp_w - 1) * out_w / inp_w)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, (inp_h - 1) * out_h / inp_h)
    return dataclasses.replace(sample, boxes=boxes)


class TrainDataset(Dataset):
    """Augmented inputs and task targets: {"input": [3, H, W], <target name>: array, ..., "augmented": 0 or 1}.

    ``augment=False`` gives the deterministic test geometry (centre, no flip, no colour), which the
    oracle evaluation and the round-trip tests use. With ``augment``, each image is augmented with
    probability ``augment_prob`` (None: the task's ``augment_prob``, else 1) and otherwise gets that same
    deterministic geometry; ``augmented`` says which (the original ddd loss masks depth and size there).

    Small-data options (:mod:`.mix`), off by default, each a probability per augmented item: ``mosaic`` (the
    item's image and 3 random others on a 2x canvas, then the usual crop; the item's ``image_size`` and
    ``trans_inv`` then refer to that canvas) and ``mixup`` (blended 50 / 50 with another augmented item, the
    objects of both kept). :meth:`item` gives an item at another input size (multi-scale training).
    """

    def __init__(self, source: DetectionSource, task: TargetEncoder, input_size: tuple[int, int] = (512, 512),
                 down_ratio: int = 4, mean=COCO_MEAN, std=COCO_STD,
                 augment: bool = True, random_crop: bool = True, scale_jitter: float = 0.4,
                 shift_jitter: float = 0.1, flip_prob: float = 0.5, color: bool = True, seed: int = 0,
                 augment_prob: float | None = None, mosaic: float = 0.0, mixup: float = 0.0) -> None:
        self.source = source
        self.task = task
        self.input_size = tuple(input_size)
        self.down_ratio = down_ratio
        self.mean = np.array(mean, dtype=np.float32)
        self.std = np.array(std, dtype=np.float32)
        self.augment = augment
        self.random_crop, self.scale_jitter, self.shift_jitter = random_crop, scale_jitter, shift_jitter
        self.flip_prob = flip_prob
        self.color = color
        self.seed = seed
        self.epoch = 0
        self.augment_prob = float(getattr(task, "augment_prob", 1.0) if augment_prob is None else augment_prob)
        self.mosaic, self.mixup = float(mosaic), float(mixup)
        for name, p in (("augment_prob", self.augment_prob), ("mosaic", self.mosaic), ("mixup", self.mixup)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {p}")
        for name, p in (("data.mosaic", self.mosaic), ("data.mixup", self.mixup)):
            if p > 0 and augment:
                check_mixable(task, source, name)

    def set_epoch(self, epoch: int) -> None:
        """Change the random stream (the trainer calls it each epoch so workers do not repeat draws)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        return self.item(index)

    def _load(self, index: int) -> tuple[np.ndarray, Sample]:
        """The image [H, W, 3] uint8 of ``index`` and its sample (its size as read)."""
        sample = self.source[index]
        image = read_image(sample.path)
        if image.shape[:2] != (sample.height, sample.width):
            sample = dataclasses.replace(sample, height=image.shape[0], width=image.shape[1])
        return image, sample

    def _augment_params(self, rng: np.random.RandomState, sample: Sample) -> AugmentParams:
        return sample_augment(rng, sample.width, sample.height, self.random_crop,
                              self.scale_jitter, self.shift_jitter, self.flip_prob)

    def _place(self, image: np.ndarray, sample: Sample, aug: AugmentParams | None, input_size: tuple[int, int],
               output_size: tuple[int, int]) -> tuple[np.ndarray, Sample, Sample, np.ndarray, float]:
        """Flip (``aug.flipped``) and warp ``image`` to the input; -> (input image [h, w, 3] uint8, the sample
        (flipped) in image pixels, the sample in output-map pixels, centre, scale). ``aug=None``: the test
        geometry."""
        if aug is not None:
            center, scale = aug.center, aug.scale
            if aug.flipped and self.task.can_flip:
                image = cv2.flip(image, 1)
                sample = self.task.flip_fields(flip_sample(sample, self.task.flip_pairs))
        else:
            center = np.array([sample.width / 2.0, sample.height / 2.0], dtype=np.float32)
            scale = float(max(sample.width, sample.height))
        trans_in = get_affine_transform(center, scale, 0, input_size)
        warped = warp_affine(image, trans_in, input_size)  # uint8
        trans_out = get_affine_transform(center, scale, 0, output_size)
        in_map = clip_to_input(warp_sample(sample, trans_out, *output_size), input_size, output_size)
        return warped, sample, in_map, center, scale

    def item(self, index: int, input_size: tuple[int, int] | None = None) -> dict[str, np.ndarray]:
        """The item of ``index`` in this epoch's random stream, at ``input_size`` (w, h; None: the dataset's).
        Every draw comes from one RandomState of (seed, epoch, index), so the item depends on nothing else."""
        image, sample = self._load(index)
        inp_w, inp_h = self.input_size if input_size is None else (int(input_size[0]), int(input_size[1]))
        out_w, out_h = output_side(inp_w, self.down_ratio), output_side(inp_h, self.down_ratio)
        rng = np.random.RandomState((self.seed * 1_000_003 + self.epoch * 7919 + index) % 2**32)
        augment = self.augment and (self.augment_prob >= 1.0 or rng.random_sample() < self.augment_prob)
        aug = None
        if augment and self.mosaic > 0 and rng.random_sample() < self.mosaic:
            tile = max(inp_w, inp_h)
            others = [self._load(int(j)) for j in rng.randint(0, len(self), size=3)]
            image, sample = mosaic(rng, [(image, sample), *others], tile)
            aug = mosaic_crop(rng, tile, self.random_crop, self.scale_jitter, self.shift_jitter, self.flip_prob)
        elif augment:
            aug = self._augment_params(rng, sample)
        warped, sample, in_map, center, scale = self._place(image, sample, aug, (inp_w, inp_h), (out_w, out_h))
        if augment and self.mixup > 0 and rng.random_sample() < self.mixup:
            other_image, other = self._load(int(rng.randint(0, len(self))))
            other_warped, _, other_map, _, _ = self._place(other_image, other, self._augment_params(rng, other),
                                                           (inp_w, inp_h), (out_w, out_h))
            warped = blend(warped, other_warped)
            in_map = merge_samples(in_map, [other_map], out_w, out_h)
        jitter = draw_color_jitter(rng, gray_mean(warped)) if augment and self.color else None
        targets = self.task.encode(in_map, out_w, out_h)
        return {"input": to_input(warped, self.mean, self.std, jitter), **targets, **self.task.sample_meta(sample),
                "trans_inv": get_affine_transform(center, scale, 0, (out_w, out_h), inv=True).astype(np.float32),
                "augmented": np.float32(augment)}


class TestDataset(Dataset):
    """Test inputs of every image with the geometry to map predictions back and the image's metadata
    (``meta_fn(sample)``, by default :func:`sample_meta`)."""

    def __init__(self, source: DetectionSource, input_size: tuple[int, int] | None, down_ratio: int = 4,
                 mean=COCO_MEAN, std=COCO_STD, pad: int = 31,
                 scale_factor: float = 1.0, meta_fn: Callable[[Sample], dict[str, np.ndarray]] | None = None,
                 pad_style: str = "centernet") -> None:
        self.source = source
        self.pad_style = pad_style
        self.input_size = input_size
        self.down_ratio = down_ratio
        self.mean = np.array(mean, dtype=np.float32)
        self.std = np.array(std, dtype=np.float32)
        self.pad = pad
        self.scale_factor = scale_factor
        self.meta_fn = meta_fn or sample_meta

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        sample = self.source[index]
        prepared = prepare_test_image(read_image(sample.path), self.mean, self.std, self.input_size,
                                      self.pad, self.down_ratio, self.scale_factor, self.pad_style)
        return test_item(prepared, self.meta_fn(sample))


#: the per-image metadata fields a batch may carry (see :func:`sample_meta`)
META_KEYS = ("image_id", "image_size", "calib")


def sample_meta(sample: Sample) -> dict[str, np.ndarray]:
    """Per-image metadata that travels with a batch to the task's post-processing and results: ``image_id``,
    ``image_size`` (w, h) and, when the sample has one, the camera matrix ``calib`` [3, 4]."""
    meta = {"image_id": np.int64(sample.image_id),
            "image_size": np.array([sample.width, sample.height], dtype=np.float32)}
    if sample.calib is not None:
        meta["calib"] = np.asarray(sample.calib, dtype=np.float32).reshape(3, 4)
    return meta


def test_item(prepared, meta: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Tensors of a prepared test image: input, the inverse output transform (incl. test scale) and ``meta``."""
    trans_inv = prepared.trans_inv
    if trans_inv is None:
        trans_inv = get_affine_transform(prepared.center, prepared.scale, 0, prepared.output_size, inv=True)
    trans_inv = trans_inv / prepared.scale_factor
    return {"input": prepared.image, **meta, "trans_inv": trans_inv.astype(np.float32)}


def collate(items: list[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
    """Stack a list of dicts of arrays into a dict of tensors."""
    # contiguous: np.stack keeps the HWC memory order of transposed images, and torch 2.13's CPU conv backward
    # crashed (SIGSEGV) on such channels-last 3-channel batches of 3 images here
    return {key: torch.from_numpy(np.ascontiguousarray(np.stack([item[key] for item in items]))) for key in items[0]}
