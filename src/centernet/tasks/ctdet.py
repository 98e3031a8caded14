"""CenterNet box detection: a box is its centre's gaussian peak plus a size and a sub-pixel offset."""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..data.sample import Sample
from ..ops.decode import decode_ctdet, decode_ltrb, ltrb_boxes
from ..ops.heatmap import GAUSSIANS, object_radius
from ..ops.losses import focal_loss, giou_loss, heatmap_mse_loss, reg_l1_loss, reg_smooth_l1_loss
from .base import Task, flip_lr

# The CenterNet paper's ablations (its Table 4): heatmap loss and size loss; the paper's defaults first
HM_LOSSES = ("focal", "mse")
SIZE_LOSSES = ("l1", "smooth_l1")
#: ctdet's also: "giou", TTFNet's box regression (an "ltrb" head instead of "wh" and "reg")
CTDET_SIZE_LOSSES = SIZE_LOSSES + ("giou",)
#: size_loss="giou" (TTFNet): the "ltrb" head's distances are relu(raw) x this many output pixels (TTFNet's 16
#: input pixels at stride 4), and the share of each box (per side) whose pixels regress it (TTFNet's beta)
LTRB_SCALE = 4.0
LTRB_BETA = 0.54
#: the "ltrb" head's initial bias: every pixel starts at relu(1) x LTRB_SCALE output pixels from each side (a
#: box of TTFNet's 16-input-pixel base per side). TTFNet's bias of 0 starts every box at a point, where the GIoU
#: gradient vanishes: from scratch, a side's relu could die before it learned (every pixel at 0, seen on small
#: data)
LTRB_INIT_BIAS = 1.0
#: the gaussian each heatmap loss draws its targets with (the original's --mse_loss switches to "msra")
HM_GAUSSIAN = {"focal": "umich", "mse": "msra"}


def check_choice(option: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{option} must be one of {choices}, got {value!r}")
    return value


def heatmap_loss(kind: str, raw: Tensor, target: Tensor) -> Tensor:
    """``focal`` on the logits ``raw`` [B, C, H, W] (SPEC 3), or ``mse``: the mean squared error of the raw
    head output itself against the target (the original's ``--mse_loss``: the head regresses the heatmap)."""
    return focal_loss(raw, target) if kind == "focal" else heatmap_mse_loss(raw, target)


def activate_heatmap(kind: str, raw: Tensor) -> Tensor:
    """Raw heatmap -> scores in [0, 1]: sigmoid after the focal loss; after the MSE loss the output already
    is the heatmap and is clamped to [0, 1] (the original applies a sigmoid there too, which keeps the
    order but squeezes every score into [0.5, 0.73])."""
    return torch.sigmoid(raw) if kind == "focal" else raw.clamp(0, 1)


def size_loss(kind: str, pred: Tensor, ind: Tensor, mask: Tensor, target: Tensor) -> Tensor:
    """``l1``: gathered L1 per element (SPEC 3); ``smooth_l1``: the original's ``--reg_loss sl1`` (smooth-L1
    per object, :func:`~centernet.ops.losses.reg_smooth_l1_loss`)."""
    loss = reg_l1_loss if kind == "l1" else reg_smooth_l1_loss
    return loss(pred, ind, mask, target)


def activate_ltrb(raw: Tensor) -> Tensor:
    """The "ltrb" head's raw output -> distances in output pixels (TTFNet: relu, times a base scale)."""
    return torch.relu(raw) * LTRB_SCALE


def encode_ltrb(boxes: np.ndarray, keep: np.ndarray, centers_int: np.ndarray, out_w: int, out_h: int,
                beta: float = LTRB_BETA) -> dict[str, np.ndarray]:
    """TTFNet's box targets: every pixel of the central area of a box (an elliptical gaussian of sigma
    beta w / 6, beta h / 6 around the box's centre pixel, cut at beta w / 2, beta h / 2) regresses that box
    ``box_target`` [4, H, W] (x1, y1, x2, y2, output pixels), with the weight ``box_weight`` [H, W]: the
    gaussian normalised to sum to log(1 + box area) per box. Smaller boxes overwrite larger ones where they
    overlap. ``boxes`` are clipped to the map; ``keep`` marks the objects with a target."""
    target = np.zeros((4, out_h, out_w), dtype=np.float32)
    weight = np.zeros((out_h, out_w), dtype=np.float32)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    for k in sorted(np.flatnonzero(keep), key=lambda k: -areas[k]):
        w, h = boxes[k, 2] - boxes[k, 0], boxes[k, 3] - boxes[k, 1]
        cx, cy = int(centers_int[k, 0]), int(centers_int[k, 1])
        rx, ry = int(beta * w / 2), int(beta * h / 2)
        x0, x1 = max(cx - rx, 0), min(cx + rx, out_w - 1)
        y0, y1 = max(cy - ry, 0), min(cy + ry, out_h - 1)
        dx = np.arange(x0, x1 + 1, dtype=np.float32) - cx
        dy = np.arange(y0, y1 + 1, dtype=np.float32) - cy
        sx, sy = max(beta * w / 6, 1e-6), max(beta * h / 6, 1e-6)
        g = np.exp(-(dx[None, :] ** 2 / (2 * sx * sx) + dy[:, None] ** 2 / (2 * sy * sy)))
        g[g < np.finfo(np.float32).eps * g.max()] = 0
        region = g > 0
        patch_w = weight[y0:y1 + 1, x0:x1 + 1]
        patch_w[region] = (g / g.sum() * np.log1p(areas[k]))[region]
        for c in range(4):
            target[c, y0:y1 + 1, x0:x1 + 1][region] = boxes[k, c]
    return {"box_target": target, "box_weight": weight}


def encode_centers(sample: Sample, out_w: int, out_h: int, num_classes: int, max_objects: int,
                   radius_variant: str = "centernet", min_overlap: float = 0.7,
                   gaussian: str = "umich", ltrb: bool = False) -> dict[str, np.ndarray]:
    """Heatmap, size, offset, index and mask targets of the boxes of ``sample`` (output pixels).

    Boxes are clipped to the map; objects with no positive clipped size, crowd regions and objects past
    ``max_objects`` get no target. Slot k belongs to the k-th annotation, as in the original. ``gaussian``:
    "umich" (SPEC 2) or "msra" (the original's MSE-loss heatmaps, sigma = the radius). ``ltrb``: also
    TTFNet's dense box targets (:func:`encode_ltrb`).
    """
    draw_gaussian = GAUSSIANS[gaussian]
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
    out = {"hm": hm, "wh": wh, "reg": reg, "ind": ind, "reg_mask": mask,
           "radius": np.pad(radii, (0, max_objects - len(radii)))}
    if ltrb:
        out.update(encode_ltrb(boxes, keep, centers_int, out_w, out_h))
    return out


def scatter_at(values: Tensor, ind: Tensor, mask: Tensor, h: int, w: int) -> Tensor:
    """Inverse of gather: write ``values`` [B, M, C] at flat ``ind`` [B, M] where ``mask``; -> [B, C, H, W].

    Where several objects share an index the last one wins, as in the encoder.
    """
    b, m, c = values.shape
    valid = mask > 0  # [B, M]
    same = (ind.unsqueeze(2) == ind.unsqueeze(1)) & valid.unsqueeze(1) & valid.unsqueeze(2)  # [B, M, M]
    later = torch.ones(m, m, dtype=torch.bool, device=ind.device).triu(1)
    overwritten = (same & later).any(dim=2)
    keep = valid & ~overwritten  # now the kept indices are unique per image
    target = torch.where(keep, ind.long(), torch.full_like(ind.long(), h * w))  # dropped -> spare slot
    out = values.new_zeros(b, c, h * w + 1)
    out.scatter_(2, target.unsqueeze(1).expand(b, c, m), values.permute(0, 2, 1))
    return out[:, :, : h * w].reshape(b, c, h, w)


#: the paper's error analysis (Table 5): AP with the ground truth substituted for some maps
CENTER_ANALYSIS_ROWS = (
    ("none", frozenset()),
    ("size (wh)", frozenset({"wh"})),
    ("heatmap (hm)", frozenset({"hm"})),
    ("hm + wh", frozenset({"hm", "wh"})),
    ("hm + wh + reg", frozenset({"hm", "wh", "reg"})),
)

#: the same with ``size_loss="giou"``: the "ltrb" head holds the size and the offset
LTRB_ANALYSIS_ROWS = (
    ("none", frozenset()),
    ("size (ltrb)", frozenset({"ltrb"})),
    ("heatmap (hm)", frozenset({"hm"})),
    ("hm + ltrb", frozenset({"hm", "ltrb"})),
)


class CtdetTask(Task):
    """Boxes as centre peaks. Options: ``reg_offset`` (the offset head), ``hm_loss`` "focal" (default) or "mse"
    (with the original's msra gaussians), ``size_loss`` "l1" (default) or "smooth_l1" (the paper's ablations), or
    "giou" (TTFNet: an "ltrb" head of distances from each pixel to the box's sides, regressed at the pixels of the
    box's central area with a gaussian-weighted GIoU loss, weight 5; no "wh" / "reg" heads)."""

    name = "ctdet"
    heatmap_heads = ("hm",)
    head_biases = {"ltrb": LTRB_INIT_BIAS}
    analysis_rows = CENTER_ANALYSIS_ROWS
    oracle_preset = "ctdet_resdcn18_coco"

    def __init__(self, num_classes: int, weights: dict[str, float] | None = None, max_objects: int = 128,
                 max_detections: int = 100, radius_variant: str = "centernet", min_overlap: float = 0.7,
                 reg_offset: bool = True, hm_loss: str = "focal", size_loss: str = "l1") -> None:
        self.ltrb = size_loss == "giou"  # read by default_weights in Task.__init__
        super().__init__(num_classes, weights, max_objects, max_detections)
        self.radius_variant = radius_variant
        self.min_overlap = min_overlap
        self.reg_offset = reg_offset
        self.hm_loss = check_choice("hm_loss", hm_loss, HM_LOSSES)
        self.size_loss = check_choice("size_loss", size_loss, CTDET_SIZE_LOSSES)
        if self.ltrb:
            self.analysis_rows = LTRB_ANALYSIS_ROWS

    @classmethod
    def suits(cls, source) -> bool:
        return True  # any box data set

    def head_channels(self) -> dict[str, int]:
        if self.ltrb:
            return {"hm": self.num_classes, "ltrb": 4}
        heads = {"hm": self.num_classes, "wh": 2}
        if self.reg_offset:
            heads["reg"] = 2
        return heads

    def default_weights(self) -> dict[str, float]:
        if self.ltrb:
            return {"hm": 1.0, "ltrb": 5.0}  # TTFNet's
        return {"hm": 1.0, "wh": 0.1, "reg": 1.0}

    def encode(self, sample: Sample, out_w: int, out_h: int) -> dict[str, np.ndarray]:
        return encode_centers(sample, out_w, out_h, self.num_classes, self.max_objects,
                              self.radius_variant, self.min_overlap, HM_GAUSSIAN[self.hm_loss], self.ltrb)

    def _stack_terms(self, output: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
        if self.ltrb:
            boxes = ltrb_boxes(activate_ltrb(output["ltrb"]))
            return {"hm": heatmap_loss(self.hm_loss, output["hm"], batch["hm"]),
                    "ltrb": giou_loss(boxes, batch["box_target"], batch["box_weight"])}
        terms = {
            "hm": heatmap_loss(self.hm_loss, output["hm"], batch["hm"]),
            "wh": size_loss(self.size_loss, output["wh"], batch["ind"], batch["reg_mask"], batch["wh"]),
        }
        if self.reg_offset:
            terms["reg"] = reg_l1_loss(output["reg"], batch["ind"], batch["reg_mask"], batch["reg"])
        return terms

    def loss(self, outputs: list[dict[str, Tensor]], batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        return self.stack_loss(outputs, batch, self._stack_terms)

    def activate(self, output: dict[str, Tensor]) -> dict[str, Tensor]:
        if self.ltrb:
            return {"hm": activate_heatmap(self.hm_loss, output["hm"]), "ltrb": activate_ltrb(output["ltrb"])}
        maps = {"hm": activate_heatmap(self.hm_loss, output["hm"]), "wh": output["wh"]}
        if self.reg_offset:
            maps["reg"] = output["reg"]
        return maps

    def merge_flip(self, maps: dict[str, Tensor]) -> dict[str, Tensor]:
        b = maps["hm"].shape[0] // 2
        if self.ltrb:  # mirrored: left and right distances swap
            mirrored = flip_lr(maps["ltrb"][b:])[:, [2, 1, 0, 3]]
            return {"hm": (maps["hm"][:b] + flip_lr(maps["hm"][b:])) / 2,
                    "ltrb": (maps["ltrb"][:b] + mirrored) / 2}
        merged = {name: (maps[name][:b] + flip_lr(maps[name][b:])) / 2 for name in ("hm", "wh")}
        if "reg" in maps:
            merged["reg"] = maps["reg"][:b]  # the offset comes from the unflipped image only
        return merged

    def decode(self, maps: dict[str, Tensor]) -> Tensor:
        if self.ltrb:
            return decode_ltrb(maps["hm"], maps["ltrb"], K=self.K)
        return decode_ctdet(maps["hm"], maps["wh"], maps.get("reg"), K=self.K)  # [B, K, 6]

    def oracle_maps(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        hm = batch["hm"]
        h, w = hm.shape[-2:]
        if self.ltrb:  # the distances from each pixel of a box's area to its sides (0 elsewhere)
            points = ltrb_boxes(torch.zeros_like(batch["box_target"]))  # [B, 4, H, W]: (x, y, x, y)
            ltrb = (points - batch["box_target"]) * torch.tensor([1.0, 1.0, -1.0, -1.0]).view(1, 4, 1, 1)
            return {"hm": hm, "ltrb": ltrb * (batch["box_weight"] > 0).unsqueeze(1)}
        maps = {"hm": hm, "wh": scatter_at(batch["wh"], batch["ind"], batch["reg_mask"], h, w)}
        if self.reg_offset:
            maps["reg"] = scatter_at(batch["reg"], batch["ind"], batch["reg_mask"], h, w)
        return maps
