"""A frozen copy of the training pipeline as of commit eadacfd (before the speed work of issue 12).

The equivalence test and ``benchmarks/bench_data.py`` compare :class:`centernet.data.pipeline.TrainDataset`
against :func:`frozen_item`: same random draws, same outputs. Do not "fix" or speed up this file; it is
the reference. Only the parts the speed work touched are copied (colour, normalisation, kernels, encoders,
``__getitem__``); the geometry helpers it calls (the affine warp among them) are imported unchanged.
"""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from centernet.data.io import read_image
from centernet.data.pipeline import TrainDataset, flip_sample, warp_sample
from centernet.data.sample import Sample
from centernet.data.transforms import EIG_VAL, EIG_VEC, sample_augment, warp_affine
from centernet.ops.heatmap import object_radius
from centernet.ops.transforms import get_affine_transform
from centernet.tasks.pose import NUM_JOINTS, MultiPoseTask, _checked_keypoints


def color_aug(rng: np.random.RandomState, image: np.ndarray, var: float = 0.4, light_std: float = 0.1) -> None:
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    gray_mean = gray.mean()

    def brightness(img: np.ndarray) -> None:
        img *= 1 + rng.uniform(-var, var)

    def contrast(img: np.ndarray) -> None:
        alpha = 1 + rng.uniform(-var, var)
        img *= alpha
        img += (1 - alpha) * gray_mean

    def saturation(img: np.ndarray) -> None:
        alpha = 1 + rng.uniform(-var, var)
        img *= alpha
        img += (1 - alpha) * gray[:, :, None]

    ops = [brightness, contrast, saturation]
    rng.shuffle(ops)
    for op in ops:
        op(image)
    alpha = rng.normal(scale=light_std, size=(3,)).astype(np.float32)
    image += EIG_VEC @ (EIG_VAL * alpha)


def normalize(image: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    return ((image - mean) / std).transpose(2, 0, 1).astype(np.float32)


def gaussian_kernel(radius: int) -> np.ndarray:
    diameter = 2 * radius + 1
    sigma = diameter / 6
    ax = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-(ax[None, :] ** 2 + ax[:, None] ** 2) / (2 * sigma * sigma))
    kernel[kernel < np.finfo(kernel.dtype).eps * kernel.max()] = 0
    return kernel


def draw_gaussian(heatmap: np.ndarray, center, radius: int, k: float = 1.0) -> np.ndarray:
    radius = int(radius)
    kernel = gaussian_kernel(radius)
    x, y = int(center[0]), int(center[1])
    height, width = heatmap.shape[:2]
    left, right = min(x, radius), min(width - x, radius + 1)
    top, bottom = min(y, radius), min(height - y, radius + 1)
    if left + right <= 0 or top + bottom <= 0:
        return heatmap
    region = heatmap[y - top : y + bottom, x - left : x + right]
    patch = kernel[radius - top : radius + bottom, radius - left : radius + right] * k
    np.maximum(region, patch.astype(heatmap.dtype), out=region)
    return heatmap


def encode_centers(sample: Sample, out_w: int, out_h: int, num_classes: int, max_objects: int,
                   radius_variant: str = "centernet", min_overlap: float = 0.7) -> dict[str, np.ndarray]:
    hm = np.zeros((num_classes, out_h, out_w), dtype=np.float32)
    wh = np.zeros((max_objects, 2), dtype=np.float32)
    reg = np.zeros((max_objects, 2), dtype=np.float32)
    ind = np.zeros(max_objects, dtype=np.int64)
    mask = np.zeros(max_objects, dtype=np.float32)
    boxes = sample.boxes[:max_objects].copy()
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, out_w - 1)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, out_h - 1)
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    keep = (w > 0) & (h > 0) & ~sample.ignore[:max_objects]
    radii = object_radius(h, w, min_overlap, radius_variant)
    centers = np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], axis=1)
    centers_int = centers.astype(np.int32)
    for k in np.flatnonzero(keep):
        draw_gaussian(hm[sample.labels[k]], centers_int[k], radii[k])
    wh[: len(boxes)] = np.stack([w, h], axis=1)
    reg[: len(boxes)] = centers - centers_int
    ind[: len(boxes)] = centers_int[:, 1] * out_w + centers_int[:, 0]
    mask[: len(boxes)] = keep
    return {"hm": hm, "wh": wh, "reg": reg, "ind": ind, "reg_mask": mask,
            "radius": np.pad(radii, (0, max_objects - len(radii)))}


def pose_encode(task: MultiPoseTask, sample: Sample, out_w: int, out_h: int) -> dict[str, np.ndarray]:
    kps = _checked_keypoints(sample)
    targets = encode_centers(sample, out_w, out_h, task.num_classes, task.max_objects,
                             task.radius_variant, task.min_overlap)
    m, n = task.max_objects, min(len(sample), task.max_objects)
    kept = targets["reg_mask"][:n] > 0
    centers = np.stack([targets["ind"][:n] % out_w, targets["ind"][:n] // out_w], axis=1)
    pts = kps[:n, :, :2]
    x, y = pts[..., 0], pts[..., 1]
    with np.errstate(invalid="ignore"):
        inside = (x >= 0) & (x < out_w) & (y >= 0) & (y < out_h)
        valid = (kps[:n, :, 2] > 0) & inside & kept[:, None]
    pts = np.where(valid[..., None], pts, 0).astype(np.float32)
    pts_int = pts.astype(np.int64)
    hps = np.zeros((m, NUM_JOINTS, 2), dtype=np.float32)
    hps[:n] = np.where(valid[..., None], pts - centers[:, None, :], 0)
    hps_mask = np.zeros((m, NUM_JOINTS, 2), dtype=np.float32)
    hps_mask[:n] = valid[..., None]
    hp_offset = np.zeros((m, NUM_JOINTS, 2), dtype=np.float32)
    hp_offset[:n] = pts - pts_int
    hp_ind = np.zeros((m, NUM_JOINTS), dtype=np.int64)
    hp_ind[:n] = np.where(valid, pts_int[..., 1] * out_w + pts_int[..., 0], 0)
    hp_mask = np.zeros((m, NUM_JOINTS), dtype=np.float32)
    hp_mask[:n] = valid
    hm_hp = np.zeros((NUM_JOINTS, out_h, out_w), dtype=np.float32)
    for person, joint in zip(*np.nonzero(valid)):
        draw_gaussian(hm_hp[joint], pts_int[person, joint], targets["radius"][person])
    if task.empty_person == "original":
        labelled = (kps[:n, :, 2] > 0).any(axis=1)
        targets["reg_mask"][:n] *= labelled
    return {**targets, "hps": hps.reshape(m, 2 * NUM_JOINTS), "hps_mask": hps_mask.reshape(m, 2 * NUM_JOINTS),
            "hm_hp": hm_hp, "hp_offset": hp_offset.reshape(m * NUM_JOINTS, 2),
            "hp_ind": hp_ind.reshape(-1), "hp_mask": hp_mask.reshape(-1)}


def encode(task, sample: Sample, out_w: int, out_h: int) -> dict[str, np.ndarray]:
    """The frozen encoder of ``task`` (ctdet or multi_pose)."""
    if isinstance(task, MultiPoseTask):
        return pose_encode(task, sample, out_w, out_h)
    if task.name == "ctdet":
        return encode_centers(sample, out_w, out_h, task.num_classes, task.max_objects,
                              task.radius_variant, task.min_overlap)
    raise ValueError(f"no frozen encoder for task {task.name!r}")


def frozen_item(ds: TrainDataset, index: int) -> dict[str, np.ndarray]:
    """``ds[index]`` as the pre-issue-12 ``TrainDataset.__getitem__`` computed it."""
    sample = ds.source[index]
    image = read_image(sample.path)
    if image.shape[:2] != (sample.height, sample.width):
        sample = dataclasses.replace(sample, height=image.shape[0], width=image.shape[1])
    inp_w, inp_h = ds.input_size
    out_w, out_h = inp_w // ds.down_ratio, inp_h // ds.down_ratio
    rng = np.random.RandomState((ds.seed * 1_000_003 + ds.epoch * 7919 + index) % 2**32)
    if ds.augment:
        aug = sample_augment(rng, sample.width, sample.height, ds.random_crop,
                             ds.scale_jitter, ds.shift_jitter, ds.flip_prob)
        center, scale = aug.center, aug.scale
        if aug.flipped:
            image = image[:, ::-1]
            sample = flip_sample(sample, ds.task.flip_pairs)
    else:
        center = np.array([sample.width / 2.0, sample.height / 2.0], dtype=np.float32)
        scale = float(max(sample.width, sample.height))
    trans_in = get_affine_transform(center, scale, 0, (inp_w, inp_h))
    # the warp is a geometry helper (imported): OpenCV's own warpAffine differs between OpenCV 4 and 5
    warped = warp_affine(np.ascontiguousarray(image), trans_in, (inp_w, inp_h))
    warped = warped.astype(np.float32) / 255.0
    if ds.augment and ds.color:
        color_aug(rng, warped)
    trans_out = get_affine_transform(center, scale, 0, (out_w, out_h))
    targets = encode(ds.task, warp_sample(sample, trans_out, out_w, out_h), out_w, out_h)
    return {"input": normalize(warped, ds.mean, ds.std), **targets,
            "image_id": np.int64(sample.image_id),
            "trans_inv": get_affine_transform(center, scale, 0, (out_w, out_h), inv=True).astype(np.float32)}
