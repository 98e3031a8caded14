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


def _merge_kernel(heatmap: np.ndarray, kernel: np.ndarray, x: int, y: int) -> np.ndarray:
    """Merge the odd-sided square ``kernel`` centred at pixel (x, y) into ``heatmap`` [H, W] in place with an
    elementwise max, clipped at the borders; returns it."""
    radius = kernel.shape[0] // 2
    height, width = heatmap.shape[:2]
    left, right = min(x, radius), min(width - x, radius + 1)
    top, bottom = min(y, radius), min(height - y, radius + 1)
    if left + right <= 0 or top + bottom <= 0:
        return heatmap
    region = heatmap[y - top : y + bottom, x - left : x + right]
    patch = kernel[radius - top : radius + bottom, radius - left : radius + right]
    np.maximum(region, patch if patch.dtype == heatmap.dtype else patch.astype(heatmap.dtype), out=region)
    return heatmap


def draw_gaussian(heatmap: np.ndarray, center, radius: int, k: float = 1.0) -> np.ndarray:
    """Merge a gaussian peak into ``heatmap`` [H, W] in place with an elementwise max; returns it.

    ``center`` is (x, y) in map pixels; its integer part is the peak. The kernel is clipped at the borders.
    """
    radius = int(radius)
    if k == 1.0:  # the kernel rounded once to the map's type, as (kernel * 1.0).astype(dtype) would be
        kernel = _kernel(radius, heatmap.dtype.type)
    else:
        kernel = (_kernel(radius, np.float64) * k).astype(heatmap.dtype)
    return _merge_kernel(heatmap, kernel, int(center[0]), int(center[1]))


def msra_kernel(sigma: int) -> np.ndarray:
    """The original CenterNet's "msra" kernel (its MSE-loss heatmaps): exp(-(x^2 + y^2) / (2 sigma^2)) on a
    (6 sigma + 1)^2 grid, no cut-off. [d, d]. Sigma 0 gives a single 1 (the original divides 0 by 0 there
    and writes NaN)."""
    sigma = int(sigma)
    if sigma <= 0:
        return np.ones((1, 1))
    ax = np.arange(-3 * sigma, 3 * sigma + 1, dtype=np.float64)
    return np.exp(-(ax[None, :] ** 2 + ax[:, None] ** 2) / (2.0 * sigma * sigma))


def draw_msra_gaussian(heatmap: np.ndarray, center, sigma: int) -> np.ndarray:
    """Merge :func:`msra_kernel` (``sigma``: the object's radius, as the original passes it) centred at the
    rounded ``center`` (x, y) into ``heatmap`` [H, W] with an elementwise max, clipped at the borders."""
    return _merge_kernel(heatmap, msra_kernel(sigma), int(center[0] + 0.5), int(center[1] + 0.5))


GAUSSIANS = {"umich": draw_gaussian, "msra": draw_msra_gaussian}


def object_radius(box_h, box_w, min_overlap: float = 0.7, variant: RadiusVariant = "centernet") -> np.ndarray:
    """Integer radii the way the original calls it: ``max(0, int(gaussian_radius(ceil(h), ceil(w))))``."""
    r = gaussian_radius(np.ceil(box_h), np.ceil(box_w), min_overlap, variant)
    return np.maximum(0, np.asarray(r)).astype(np.int64)
