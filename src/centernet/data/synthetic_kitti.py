"""A synthetic monocular 3D data set in the KITTI object layout: shaded 3D boxes on a ground plane."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .kitti import box3d_corners, project_to_image
from .kitti_labels import KittiObject, format_kitti_line

# KITTI's camera 2 (P2 of a 1242 x 375 frame), scaled to the requested size.
KITTI_SIZE = (1242, 375)
KITTI_F, KITTI_CX, KITTI_CY = 721.5377, 609.5593, 172.854
KITTI_P2_T = (44.85728, 0.2163791, 0.002745884)
CAMERA_HEIGHT = 1.65  # metres above the ground: the y of a bottom centre on the ground
#: class: (mean (h, w, l), std (h, w, l), BGR colour, frequency), KITTI-like statistics
CLASSES = {
    "Car": ((1.53, 1.63, 3.88), (0.14, 0.10, 0.43), (200, 90, 40), 0.6),
    "Pedestrian": ((1.76, 0.66, 0.84), (0.11, 0.10, 0.15), (60, 60, 210), 0.25),
    "Cyclist": ((1.74, 0.60, 1.76), (0.09, 0.08, 0.18), (60, 190, 60), 0.15),
}
#: faces of box3d_corners as (corners, shade): front, right, back, left, bottom, top. The front face is tinted
#: towards white and the two sides differ, so the yaw is visible over the whole circle.
FACES = (((0, 1, 5, 4), "front"), ((1, 2, 6, 5), 0.7), ((2, 3, 7, 6), 0.4), ((3, 0, 4, 7), 0.55),
         ((0, 1, 2, 3), 0.3), ((4, 5, 6, 7), 0.9))
FRONT_TINT = 0.6  # front face colour = (1 - t) * class colour + t * white
LANES_X = (-5.4, -1.8, 1.8, 5.4)  # lane markings, metres
MAX_TRUNCATION, MIN_VISIBLE, MIN_BOX_HEIGHT = 0.7, 0.3, 3.0
MIN_GAP = 0.5  # metres between the footprints' bounding circles
MIN_CORNER_DEPTH = 0.5  # metres: boxes reaching closer to the camera plane are not drawn


@dataclass
class _Object:
    name: str
    dim: np.ndarray  # h, w, l
    loc: np.ndarray  # bottom centre
    rot_y: float
    alpha: float = 0.0
    box: np.ndarray | None = None
    trunc: float = 0.0
    occ: int = 0


def kitti_like_p2(width: int, height: int) -> np.ndarray:
    """KITTI's P2 scaled to a ``width x height`` image (focal length by the width, cy by the height)."""
    s, sy = width / KITTI_SIZE[0], height / KITTI_SIZE[1]
    return np.array([[KITTI_F * s, 0, KITTI_CX * s, KITTI_P2_T[0] * s],
                     [0, KITTI_F * s, KITTI_CY * sy, KITTI_P2_T[1] * s],
                     [0, 0, 1, KITTI_P2_T[2]]], dtype=np.float64)


def make_synthetic_kitti(root: str | Path, num_train: int = 64, num_val: int = 16, size: tuple[int, int] = (320, 96),
                         seed: int = 0, max_objects: int = 6,
                         depth_range: tuple[float, float] = (5.0, 40.0)) -> dict[str, Path]:
    """Write frames of Car / Pedestrian / Cyclist boxes of KITTI-like size, depth in ``depth_range`` and any
    yaw, rendered as shaded 3D boxes (front face tinted) through a scaled KITTI P2, in the object-benchmark
    layout: ``root/training/{image_2/*.png, label_2/*.txt, calib/*.txt}`` and ``root/ImageSets/{train,val}.txt``
    (frames 0..num_train-1, then the val frames).

    Labels are self-consistent at their printed precision (3D values rounded to 2 decimals before rendering):
    2D box = the projected 3D box clipped to the image, truncation = the share of that extent outside the
    image, occlusion 0 / 1 / 2 for < 10% / < 50% / more of the silhouette hidden by nearer objects, alpha =
    rot_y - atan2(x, z). Objects too truncated, hidden or small are not drawn. Deterministic for a seed.
    Returns ``root``, ``train_split`` and ``val_split`` paths.
    """
    width, height = size
    root = Path(root)
    dirs = {name: root / "training" / name for name in ("image_2", "label_2", "calib")}
    for d in [*dirs.values(), root / "ImageSets"]:
        d.mkdir(parents=True, exist_ok=True)
    calib = kitti_like_p2(width, height)
    calib_text = _calib_text(calib)
    for frame, image_seq in enumerate(np.random.SeedSequence(seed).spawn(num_train + num_val)):
        image, objects = _render(np.random.default_rng(image_seq), calib, width, height, max_objects, depth_range)
        name = f"{frame:06d}"
        if not cv2.imwrite(str(dirs["image_2"] / f"{name}.png"), image):
            raise OSError(f"could not write {dirs['image_2'] / name}.png")
        (dirs["label_2"] / f"{name}.txt").write_text("".join(_label_line(o) + "\n" for o in objects))
        (dirs["calib"] / f"{name}.txt").write_text(calib_text)
    splits = {"train": range(num_train), "val": range(num_train, num_train + num_val)}
    paths = {"root": root}
    for split, frames in splits.items():
        paths[f"{split}_split"] = root / "ImageSets" / f"{split}.txt"
        paths[f"{split}_split"].write_text("".join(f"{f:06d}\n" for f in frames))
    return paths


def _calib_text(p2: np.ndarray) -> str:
    """A KITTI calibration file: P0-P3 (same intrinsics, KITTI-like baselines), R0_rect, Tr_velo_to_cam."""
    def row(values) -> str:
        return " ".join(f"{v:.12e}" for v in np.asarray(values, dtype=np.float64).reshape(-1))

    p0 = p2.copy()
    p0[:, 3] = 0
    p1, p3 = p0.copy(), p2.copy()
    p1[0, 3] = -0.54 * p2[0, 0]  # the right grey camera, 0.54 m baseline
    p3[0, 3] = p2[0, 3] - 0.54 * p2[0, 0]
    velo_to_cam = np.array([[0, -1, 0, 0], [0, 0, -1, -0.08], [1, 0, 0, -0.27]], dtype=np.float64)
    lines = [f"P{i}: {row(p)}" for i, p in enumerate((p0, p1, p2, p3))]
    lines += [f"R0_rect: {row(np.eye(3))}", f"Tr_velo_to_cam: {row(velo_to_cam)}"]
    return "\n".join(lines) + "\n"


def _label_line(o: _Object) -> str:
    box, dim, loc = (tuple(float(v) for v in a) for a in (o.box, o.dim, o.loc))
    return format_kitti_line(KittiObject(o.name, o.trunc, o.occ, o.alpha, box, dim, loc, o.rot_y), decimals=2)


def _sample_objects(rng: np.random.Generator, calib: np.ndarray, width: int, max_objects: int,
                    depth_range: tuple[float, float]) -> list[_Object]:
    names = list(CLASSES)
    freq = np.array([CLASSES[n][3] for n in names])
    objects: list[_Object] = []
    target = int(rng.integers(1, max_objects + 1))
    for _ in range(target * 5):  # bounded retries for overlapping footprints
        if len(objects) == target:
            break
        name = names[int(rng.choice(len(names), p=freq / freq.sum()))]
        mean, std = np.array(CLASSES[name][0]), np.array(CLASSES[name][1])
        dim = np.round(np.clip(rng.normal(mean, std), 0.5 * mean, 1.5 * mean), 2)
        z = rng.uniform(*depth_range)
        u = rng.uniform(-0.05 * width, 1.05 * width)  # image column of the centre: a few truncated objects
        x = (u - calib[0, 2]) * z / calib[0, 0]
        loc = np.round([x, CAMERA_HEIGHT + rng.normal(0, 0.05), z], 2)
        radius = np.hypot(dim[1], dim[2]) / 2
        if any(np.hypot(*(loc[[0, 2]] - o.loc[[0, 2]])) < radius + np.hypot(o.dim[1], o.dim[2]) / 2 + MIN_GAP
               for o in objects):
            continue
        rot_y = float(np.round(rng.uniform(-np.pi, np.pi), 2))
        alpha = float(np.round((rot_y - np.arctan2(loc[0], loc[2]) + np.pi) % (2 * np.pi) - np.pi, 2))
        objects.append(_Object(name, dim, loc, rot_y, alpha))
    return objects


def _render(rng: np.random.Generator, calib: np.ndarray, width: int, height: int, max_objects: int,
            depth_range: tuple[float, float]) -> tuple[np.ndarray, list[_Object]]:
    """One frame: background, then the visible objects far to near; returns (BGR image, kept objects)."""
    objects = _sample_objects(rng, calib, width, max_objects, depth_range)
    kept: list[_Object] = []
    covered = np.zeros((height, width), dtype=bool)
    for o in sorted(objects, key=lambda o: o.loc[2]):  # near to far: measure truncation and occlusion
        corners = box3d_corners(o.dim, o.loc, o.rot_y)
        if corners[:, 2].min() < MIN_CORNER_DEPTH:
            continue
        pts = project_to_image(corners, calib)
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        box = np.concatenate([np.maximum(lo, 0), np.minimum(hi, [width - 1, height - 1])])
        full = np.prod(hi - lo)
        inside = np.prod(np.maximum(box[2:] - box[:2], 0))
        mask = np.zeros((height, width), dtype=np.uint8)
        cv2.fillConvexPoly(mask, cv2.convexHull(np.round(pts).astype(np.int32)), 1)
        mask = mask.astype(bool)
        area = mask.sum()
        hidden = (mask & covered).sum() / max(area, 1)
        o.trunc = float(np.round(1 - inside / full, 2)) if full > 0 else 1.0
        if o.trunc > MAX_TRUNCATION or area == 0 or 1 - hidden < MIN_VISIBLE or box[3] - box[1] < MIN_BOX_HEIGHT:
            continue
        o.box = np.round(box, 2)
        o.occ = 0 if hidden < 0.1 else 1 if hidden < 0.5 else 2
        covered |= mask
        kept.append(o)
    image = _background(rng, calib, width, height)
    camera = -np.linalg.solve(calib[:, :3], calib[:, 3])  # camera centre: P2 @ [C, 1] = 0
    for o in reversed(kept):  # far to near: nearer objects paint over farther ones
        _draw_box(image, o, calib, camera)
    image += rng.normal(0, 4.0, size=image.shape).astype(np.float32)
    return np.clip(np.round(image), 0, 255).astype(np.uint8), sorted(kept, key=lambda o: o.box[0])


def _background(rng: np.random.Generator, calib: np.ndarray, width: int, height: int) -> np.ndarray:
    """Sky above the horizon, a grey road with lane markings below (float32 BGR)."""
    horizon = int(np.clip(round(calib[1, 2]), 0, height))
    rows = np.arange(height, dtype=np.float32)[:, None, None]
    sky = np.array([235, 200, 150], np.float32) - 40 * rows / max(horizon, 1)
    road = np.array([95, 100, 105], np.float32) + rng.normal(0, 6, size=3).astype(np.float32) + 20 * (rows - horizon) / height
    image = np.where(rows < horizon, sky, road) * np.ones((1, width, 1), np.float32)
    z = np.array([3.0, 80.0])
    for x in LANES_X:
        ends = project_to_image(np.stack([np.full(2, x), np.full(2, CAMERA_HEIGHT), z], axis=1), calib)
        cv2.line(image, tuple(int(v) for v in np.round(ends[0])), tuple(int(v) for v in np.round(ends[1])),
                 (210, 210, 210), 1, cv2.LINE_AA)
    return image


def _draw_box(image: np.ndarray, o: _Object, calib: np.ndarray, camera: np.ndarray) -> None:
    """Fill the faces of ``o`` that face the camera, shaded by face, with dark edges."""
    corners = box3d_corners(o.dim, o.loc, o.rot_y)
    pts = project_to_image(corners, calib)
    centre = corners.mean(axis=0)
    colour = np.array(CLASSES[o.name][2], dtype=np.float32)
    for face, shade in FACES:
        face_centre = corners[list(face)].mean(axis=0)
        if np.dot(face_centre - centre, face_centre - camera) >= 0:  # outward normal points away: hidden
            continue
        fill = (1 - FRONT_TINT) * colour + FRONT_TINT * 255 if shade == "front" else shade * colour
        poly = np.round(pts[list(face)]).astype(np.int32)
        cv2.fillConvexPoly(image, poly, tuple(float(c) for c in fill), cv2.LINE_AA)
        cv2.polylines(image, [poly], True, tuple(float(c) * 0.3 for c in colour), 1, cv2.LINE_AA)
