"""Peak extraction, top-K and box decoding (SPEC 4). Pure tensor code with a fixed K: exportable."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def gather_feat(feat: Tensor, ind: Tensor) -> Tensor:
    """Values of ``feat`` [B, C, H, W] at flat positions ``ind`` [B, K] (y * W + x). -> [B, K, C]"""
    b, c = feat.shape[:2]
    flat = feat.reshape(b, c, -1)  # [B, C, H*W]
    idx = ind.long().unsqueeze(1).expand(b, c, ind.shape[1])
    return flat.gather(2, idx).permute(0, 2, 1)


def peaks(heat: Tensor, kernel: int = 3) -> Tensor:
    """``heat * (maxpool(heat) == heat)``: zero every value that is not the maximum of its ``kernel``
    neighbourhood (ties all survive), the original's max-pool NMS.

    The max-pool runs on channels-last memory (a copy for NCHW maps): torch's CPU max-pool is vectorised over
    channels there, and 5x slower on NCHW heatmaps of one image at 512 (``bench_decode.py``). Without autograd
    the comparison and product are written into the max-pool's output: no fresh map-sized buffers, which cost
    page faults at 512."""
    heat = heat.contiguous(memory_format=torch.channels_last)
    hmax = F.max_pool2d(heat, kernel, stride=1, padding=(kernel - 1) // 2)
    if heat.requires_grad or torch.onnx.is_in_onnx_export() or torch.jit.is_tracing():
        return heat * (hmax == heat).to(heat.dtype)
    return hmax.eq_(heat).mul_(heat)


def topk(scores: Tensor, K: int = 100) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Top ``K`` over classes x positions of ``scores`` [B, C, H, W] (per class first, as the original).

    Returns score, flat index (y * W + x), class, y, x, each [B, K].
    """
    b, c, h, w = scores.shape
    k_cls = min(K, h * w)
    cls_scores, cls_inds = torch.topk(scores.reshape(b, c, -1), k_cls)  # [B, C, k]
    k_all = min(K, c * k_cls)
    score, order = torch.topk(cls_scores.reshape(b, -1), k_all)  # [B, K]
    classes = torch.div(order, k_cls, rounding_mode="floor")
    inds = cls_inds.reshape(b, -1).gather(1, order)
    ys = torch.div(inds, w, rounding_mode="floor")
    xs = inds - ys * w
    return score, inds, classes, ys, xs


def boxes_at(inds: Tensor, xs: Tensor, ys: Tensor, wh: Tensor, reg: Tensor | None) -> Tensor:
    """Boxes [B, K, 4] (x1, y1, x2, y2) centred at the peaks (``xs``, ``ys`` [B, K], flat ``inds``) plus
    their offset (+0.5 without an offset head), sized by ``wh`` [B, 2, H, W]."""
    xs, ys = xs.to(wh.dtype), ys.to(wh.dtype)
    if reg is not None:
        off = gather_feat(reg, inds)  # [B, K, 2]
        xs, ys = xs + off[..., 0], ys + off[..., 1]
    else:
        xs, ys = xs + 0.5, ys + 0.5
    size = gather_feat(wh, inds)  # [B, K, 2]
    half_w, half_h = size[..., 0] / 2, size[..., 1] / 2
    return torch.stack([xs - half_w, ys - half_h, xs + half_w, ys + half_h], dim=2)


def decode_ctdet(heat: Tensor, wh: Tensor, reg: Tensor | None = None, K: int = 100) -> Tensor:
    """Boxes from sigmoid'ed ``heat`` [B, C, H, W], ``wh`` [B, 2, H, W] and ``reg`` [B, 2, H, W].

    Returns [B, K, 6] rows (x1, y1, x2, y2, score, class) in output-map pixels.
    """
    score, inds, classes, ys, xs = topk(peaks(heat), K)
    boxes = boxes_at(inds, xs, ys, wh, reg)  # [B, K, 4]
    return torch.cat([boxes, score.unsqueeze(2), classes.to(heat.dtype).unsqueeze(2)], dim=2)


def ltrb_boxes(ltrb: Tensor) -> Tensor:
    """Distances ``ltrb`` [B, 4, H, W] (left, top, right, bottom, output pixels) from each pixel (x, y), taken
    at the point (x, y) itself -> boxes [B, 4, H, W] (x1, y1, x2, y2)."""
    h, w = ltrb.shape[-2:]
    ys = torch.arange(h, dtype=ltrb.dtype, device=ltrb.device).view(1, h, 1)
    xs = torch.arange(w, dtype=ltrb.dtype, device=ltrb.device).view(1, 1, w)
    return torch.stack([xs - ltrb[:, 0], ys - ltrb[:, 1], xs + ltrb[:, 2], ys + ltrb[:, 3]], dim=1)


def decode_ltrb(heat: Tensor, ltrb: Tensor, K: int = 100) -> Tensor:
    """Boxes from sigmoid'ed ``heat`` [B, C, H, W] and distances ``ltrb`` [B, 4, H, W] from each peak pixel to
    the box's sides (TTFNet). Returns [B, K, 6] rows (x1, y1, x2, y2, score, class) in output-map pixels."""
    score, inds, classes, ys, xs = topk(peaks(heat), K)
    d = gather_feat(ltrb, inds)  # [B, K, 4]
    xs, ys = xs.to(ltrb.dtype), ys.to(ltrb.dtype)
    boxes = torch.stack([xs - d[..., 0], ys - d[..., 1], xs + d[..., 2], ys + d[..., 3]], dim=2)
    return torch.cat([boxes, score.unsqueeze(2), classes.to(heat.dtype).unsqueeze(2)], dim=2)
