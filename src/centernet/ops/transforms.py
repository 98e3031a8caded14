"""Coordinate transforms (SPEC 1): the affine map between an image and the network input / output map, and
detections mapped back to image pixels.

``get_affine_transform`` and ``affine_transform`` are NumPy (the data pipeline builds the matrices per sample);
``to_image_coords`` is tensor code (it runs on the decoded rows, on the model's device)."""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np
import torch
from torch import Tensor


def _rotate(point: np.ndarray, rot_rad: float) -> np.ndarray:
    sn, cs = np.sin(rot_rad), np.cos(rot_rad)
    return np.array([point[0] * cs - point[1] * sn, point[0] * sn + point[1] * cs], dtype=np.float32)


def _third_point(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = a - b
    return b + np.array([-d[1], d[0]], dtype=np.float32)


def get_affine_transform(center, scale, rot: float, output_size, shift=(0.0, 0.0), inv: bool = False) -> np.ndarray:
    """2x3 matrix mapping the square of side ``scale`` (pixels) around ``center`` (x, y) onto
    ``output_size`` (w, h), rotated by ``rot`` degrees; ``inv`` gives the way back."""
    scale = np.array([scale, scale], dtype=np.float32) if np.isscalar(scale) else np.asarray(scale, np.float32)
    center = np.asarray(center, dtype=np.float32)
    shift = np.asarray(shift, dtype=np.float32)
    src_w = scale[0]
    dst_w, dst_h = output_size
    src_dir = _rotate(np.array([0, src_w * -0.5], np.float32), np.pi * rot / 180)
    dst_dir = np.array([0, dst_w * -0.5], np.float32)
    src = np.zeros((3, 2), dtype=np.float32)
    dst = np.zeros((3, 2), dtype=np.float32)
    src[0] = center + scale * shift
    src[1] = src[0] + src_dir
    dst[0] = [dst_w * 0.5, dst_h * 0.5]
    dst[1] = dst[0] + dst_dir
    src[2] = _third_point(src[0], src[1])
    dst[2] = _third_point(dst[0], dst[1])
    return cv2.getAffineTransform(dst, src) if inv else cv2.getAffineTransform(src, dst)


def affine_transform(points: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Apply a 2x3 matrix to points [..., 2]."""
    points = np.asarray(points, dtype=np.float32)
    return points @ t[:, :2].T.astype(np.float32) + t[:, 2].astype(np.float32)


def to_image_coords(dets: Tensor, trans_inv: Tensor, point_columns: Sequence[int]) -> Tensor:
    """Map the (x, y) column pairs ``point_columns`` of ``dets`` [B, K, D] through the per-image inverse
    affine ``trans_inv`` [B, 2, 3] (output map -> image, test scale included). Returns a new tensor."""
    cols = torch.as_tensor(list(point_columns), device=dets.device)
    pts = dets[..., cols].reshape(dets.shape[0], -1, 2)  # [B, K*P, 2]
    trans_inv = trans_inv.to(dets.dtype)
    mapped = pts @ trans_inv[:, :, :2].transpose(1, 2) + trans_inv[:, :, 2].unsqueeze(1)
    out = dets.clone()
    out[..., cols] = mapped.reshape(dets.shape[0], dets.shape[1], -1)
    return out
