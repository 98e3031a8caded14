"""A small synthetic shapes data set in COCO format, for tests and smoke training."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

SHAPES = ("rectangle", "ellipse", "triangle", "diamond", "cross")
# A new shape may cover at most this fraction of an earlier shape's still-visible pixels.
MAX_COVER = 0.4


def make_synthetic_dataset(out_dir: str | Path, num_train: int = 64, num_val: int = 16,
                           image_size: tuple[int, int] = (128, 128), num_classes: int = 3, seed: int = 0,
                           max_objects: int = 6, ext: str = ".png") -> dict[str, Path]:
    """Write images of filled shapes on a noisy textured background plus COCO jsons; return their paths.

    One class per shape kind (``SHAPES[:num_classes]``), 1..``max_objects`` objects per image, random
    colours; shapes may overlap, but a later one never hides more than 40% of an earlier one. Boxes
    are the exact tight boxes of each object's visible pixels (x2/y2 exclusive), ``area`` its visible
    pixel count. Layout: ``train/``, ``val/``, ``annotations/instances_{train,val}.json``. The output
    is a pure function of the arguments (same bytes for the same seed). Returned keys: ``root``,
    ``train_images``, ``val_images``, ``train_ann``, ``val_ann``.
    """
    if not 1 <= num_classes <= len(SHAPES):
        raise ValueError(f"num_classes must be 1..{len(SHAPES)} (one per shape kind), got {num_classes}")
    width, height = image_size
    if min(width, height) < 32:
        raise ValueError(f"image_size must be at least 32x32, got {image_size}")
    categories = [{"id": k + 1, "name": SHAPES[k], "supercategory": "shape"} for k in range(num_classes)]

    def render(rng: np.random.Generator) -> tuple[np.ndarray, list[dict[str, Any]]]:
        image, objects = _render(rng, width, height, num_classes, max_objects)
        return image, [{"category_id": label + 1, "bbox": [x1, y1, x2 - x1, y2 - y1], "area": area, "iscrowd": 0,
                        "segmentation": []} for label, (x1, y1, x2, y2), area in objects]

    return write_coco_splits(out_dir, "instances", categories, f"centernet synthetic shapes, seed {seed}", seed,
                             {"train": num_train, "val": num_val}, render, ext)


def write_coco_splits(out_dir: str | Path, ann_prefix: str, categories: list[dict[str, Any]], description: str,
                      seed: int, counts: dict[str, int],
                      render: Callable[[np.random.Generator], tuple[np.ndarray, list[dict[str, Any]]]],
                      ext: str = ".png") -> dict[str, Path]:
    """Write ``counts[split]`` images made by ``render(rng)`` -> (BGR image, annotations without ids) and
    one COCO json per split (``annotations/<ann_prefix>_<split>.json``, images in ``<split>/``).

    Every image gets its own generator spawned from ``seed``, so the output is a pure function of the
    arguments. Returns ``root`` and ``<split>_images`` / ``<split>_ann`` paths."""
    root = Path(out_dir)
    paths = {"root": root}
    for split, seq in zip(counts, np.random.SeedSequence(seed).spawn(len(counts))):
        image_dir, ann_file = root / split, root / "annotations" / f"{ann_prefix}_{split}.json"
        paths[f"{split}_images"], paths[f"{split}_ann"] = image_dir, ann_file
        image_dir.mkdir(parents=True, exist_ok=True)
        images: list[dict[str, Any]] = []
        annotations: list[dict[str, Any]] = []
        for index, image_seq in enumerate(seq.spawn(counts[split])):
            image, objects = render(np.random.default_rng(image_seq))
            image_id = index + 1
            file_name = f"{image_id:06d}{ext}"
            if not cv2.imwrite(str(image_dir / file_name), image):
                raise OSError(f"could not write {image_dir / file_name}")
            images.append({"id": image_id, "file_name": file_name, "width": image.shape[1], "height": image.shape[0]})
            annotations += [{"id": len(annotations) + k + 1, "image_id": image_id, **obj} for k, obj in enumerate(objects)]
        ann_file.parent.mkdir(parents=True, exist_ok=True)
        payload = {"info": {"description": description}, "images": images, "annotations": annotations,
                   "categories": categories}
        ann_file.write_text(json.dumps(payload))
    return paths


def _background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Low-frequency colour texture: a coarse random grid upsampled, around a random base colour."""
    base = rng.integers(40, 216, size=3)
    coarse = rng.normal(0.0, 25.0, size=(max(2, height // 16), max(2, width // 16), 3)).astype(np.float32)
    texture = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    return texture + base.astype(np.float32)


def _shape_mask(rng: np.random.Generator, kind: str, width: int, height: int) -> np.ndarray:
    """A filled shape of random size and position, as a uint8 mask (no anti-aliasing, so it is exact)."""
    mask = np.zeros((height, width), dtype=np.uint8)
    side = min(width, height)
    size = rng.uniform(0.12, 0.4) * side  # nominal extent in pixels
    cx, cy = rng.uniform(size / 2, width - size / 2), rng.uniform(size / 2, height - size / 2)
    if kind == "rectangle":
        w, h = size * rng.uniform(0.6, 1.0), size * rng.uniform(0.6, 1.0)
        cv2.rectangle(mask, (round(cx - w / 2), round(cy - h / 2)), (round(cx + w / 2), round(cy + h / 2)), 255, -1)
    elif kind == "ellipse":
        axes = (max(2, round(size / 2 * rng.uniform(0.6, 1.0))), max(2, round(size / 2 * rng.uniform(0.6, 1.0))))
        cv2.ellipse(mask, (round(cx), round(cy)), axes, float(rng.uniform(0, 180)), 0, 360, 255, -1)
    elif kind == "triangle":
        start = rng.uniform(0, 2 * np.pi)
        angles = start + np.array([0.0, 2 * np.pi / 3, 4 * np.pi / 3]) + rng.uniform(-0.3, 0.3, size=3)
        pts = np.stack([cx + size / 2 * np.cos(angles), cy + size / 2 * np.sin(angles)], axis=1)
        cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 255)
    elif kind == "diamond":
        rx, ry = size / 2, size / 2 * rng.uniform(0.6, 1.0)
        pts = np.array([[cx, cy - ry], [cx + rx, cy], [cx, cy + ry], [cx - rx, cy]])
        cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 255)
    else:  # cross
        arm = max(2, round(size * rng.uniform(0.2, 0.3) / 2))
        half = round(size / 2)
        x, y = round(cx), round(cy)
        cv2.rectangle(mask, (x - half, y - arm), (x + half, y + arm), 255, -1)
        cv2.rectangle(mask, (x - arm, y - half), (x + arm, y + half), 255, -1)
    return mask > 0


def _render(rng: np.random.Generator, width: int, height: int, num_classes: int,
            max_objects: int) -> tuple[np.ndarray, list[tuple[int, list[int], int]]]:
    """One image and its objects as (label, [x1, y1, x2, y2], visible area)."""
    canvas = _background(rng, width, height)
    base = canvas.mean(axis=(0, 1))
    visible: list[np.ndarray] = []
    labels: list[int] = []
    target = int(rng.integers(1, max_objects + 1))
    for _ in range(target * 10):  # bounded retries for placements that hide an earlier shape
        if len(labels) == target:
            break
        label = int(rng.integers(num_classes))
        mask = _shape_mask(rng, SHAPES[label], width, height)
        if mask.sum() < 16 or any((mask & v).sum() > MAX_COVER * v.sum() for v in visible):
            continue
        colour = rng.integers(0, 256, size=3).astype(np.float32)
        while np.abs(colour - base).sum() < 150:  # keep shapes distinguishable from the background
            colour = rng.integers(0, 256, size=3).astype(np.float32)
        canvas[mask] = colour
        visible = [v & ~mask for v in visible] + [mask]
        labels.append(label)
    canvas += rng.normal(0.0, 6.0, size=canvas.shape).astype(np.float32)
    image = np.clip(np.round(canvas), 0, 255).astype(np.uint8)
    objects = []
    for label, mask in zip(labels, visible):
        ys, xs = np.nonzero(mask)
        box = [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]
        objects.append((label, box, int(mask.sum())))
    return image, objects
