"""Heatmap targets: gaussian radius (SPEC 2), gaussian kernels and peak drawing.

These run in the data pipeline (numpy, per object, never per pixel).
"""
from __future__ import annotations

import functools
from typing import Literal

import numpy as np

RadiusVariant = Literal["centernet", "cornernet"]


def gaussian_radius(height, width, min_overlap: float = 0.7, variant: RadiusVariant = "centernet"):
    """Largest corner jitter that keeps IoU >= ``min_overlap`` with a ``height x width`` box.

    ``variant="centernet"`` reproduces the original CenterNet formula, which takes the wrong quadratic
    root in two of its three cases (the model zoo was trained with it; about 0.273 s for an s x s box at
    t=0.7). ``variant="cornernet"`` is the corrected derivation (use it with ``min_overlap=0.3``).
    Accepts scalars or arrays; returns the same shape as the broadcast inputs.
    """
    h = np.asarray(height, dtype=np.float64)
    w = np.asarray(width, dtype=np.float64)
    t = float(min_overlap)
    # Case 1: both corners move inwards/outwards along the diagonal.
    a1, b1, c1 = 1.0, h + w, w * h * (1 - t) / (1 + t)
    # Case 2: both corners inside the ground truth.
    a2, b2, c2 = 4.0, 2 * (h + w), (1 - t) * w * h
    # Case 3: both corners outside the ground truth.
    a3, b3, c3 = 4 * t, -2 * t * (h + w), (t - 1) * w * h
    sq1 = np.sqrt(b1**2 - 4 * a1 * c1)
    sq2 = np.sqrt(b2**2 - 4 * a2 * c2)
    sq3 = np.sqrt(b3**2 - 4 * a3 * c3)
    if variant == "centernet":
        r1 = (b1 + sq1) / 2
        r2 = (b2 + sq2) / 2
        r3 = (b3 + sq3) / 2
    elif variant == "cornernet":
        r1 = (b1 - sq1) / (2 * a1)
        r2 = (b2 - sq2) / (2 * a2)
        r3 = (-b3 + sq3) / (2 * a3)
    else:
        raise ValueError(f"unknown radius variant {variant!r}; expected 'centernet' or 'cornernet'")
    r = np.minimum(np.minimum(r1, r2), r3)
    return float(r) if r.ndim == 0 else r


def gaussian_kernel(radius: int) -> np.ndarray:
    """The (2r+1)^2 "umich" kernel: sigma = diameter / 6, values below eps * max set to zero. [d, d] float64,
    cached per radius and read-only (copy it to modify)."""
    return _kernel(int(radius), np.float64)


@functools.lru_cache(maxsize=512)
def _kernel(radius: int, dtype: type) -> np.ndarray:
    if dtype is not np.float64:
        kernel = _kernel(radius, np.float64).astype(dtype)
    else:
        diameter = 2 * radius + 1
        sigma = diameter / 6
        ax = np.arange(-radius, radius + 1, dtype=np.float64)
        kernel = np.exp(-(ax[None, :] ** 2 + ax[:, None] ** 2) / (2 * sigma * sigma))
        kernel[kernel < np.finfo(kernel.dtype).eps * kernel.max()] = 0
    kernel.flags.writeable = False
    return kernel


def draw_gaussian(heatmap: np.ndarray, center, radius: int, k: float = 1.0) -> np.ndarray:
    """Merge a gaussian peak into ``heatmap`` [H, W] in place with an elementwise max; returns it.

    ``center`` is (x, y) in map pixels; its integer part is the peak. The kernel is clipped at the borders.
    """
    radius = int(radius)
    x, y = int(center[0]), int(center[1])
    height, width = heatmap.shape[:2]
    left, right = min(x, radius), min(width - x, radius + 1)
    top, bottom = min(y, radius), min(height - y, radius + 1)
    if left + right <= 0 or top + bottom <= 0:
        return heatmap
    region = heatmap[y - top : y + bottom, x - left : x + right]
    rows, cols = slice(radius - top, radius + bottom), slice(radius - left, radius + right)
    if k == 1.0:  # the kernel rounded once to the map's type, as (kernel * 1.0).astype(dtype) would be
        patch = _kernel(radius, heatmap.dtype.type)[rows, cols]
    else:
        patch = (_kernel(radius, np.float64)[rows, cols] * k).astype(heatmap.dtype)
    np.maximum(region, patch, out=region)
    return heatmap


def object_radius(box_h, box_w, min_overlap: float = 0.7, variant: RadiusVariant = "centernet") -> np.ndarray:
    """Integer radii the way the original calls it: ``max(0, int(gaussian_radius(ceil(h), ceil(w))))``."""
    r = gaussian_radius(np.ceil(box_h), np.ceil(box_w), min_overlap, variant)
    return np.maximum(0, np.asarray(r)).astype(np.int64)
