"""Affine crop/scale/flip (the matrices: :mod:`centernet.ops.transforms`), colour augmentation and test-time
input preparation (SPEC 1 and 9)."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..ops.transforms import get_affine_transform

# ImageNet PCA of RGB pixel colours (in OpenCV's BGR order), used by the PCA lighting augmentation.
EIG_VAL = np.array([0.2141788, 0.01817699, 0.00341571], dtype=np.float32)
EIG_VEC = np.array(
    [[-0.58752847, -0.69563484, 0.41340352],
     [-0.5832747, 0.00994535, -0.81221408],
     [-0.56089297, 0.71832671, 0.29764914]], dtype=np.float32,
)
# OpenCV's BGR -> gray weights (COLOR_BGR2GRAY), in BGR order.
GRAY_WEIGHTS = np.array([0.114, 0.587, 0.299])
# Scale factors of the random crop: numpy's arange(0.6, 1.4, 0.1) (1.4 excluded).
CROP_SCALES = np.arange(0.6, 1.4, 0.1)


def _border(border: int, size: int) -> int:
    i = 1
    while size - border // i <= border // i:
        i *= 2
    return border // i


@dataclass(frozen=True)
class ColorJitter:
    """The colour augmentation of one sample as one affine map per pixel of its channels x_c and its gray
    value g (both in [0, 1]): x_c -> ``gain`` * x_c + ``gray_gain`` * g + ``offset[c]``.

    Brightness, contrast and saturation each scale the pixel and blend it with a constant (the image's mean
    gray) or with its own gray value computed before the jitter, and the PCA lighting adds a colour, so
    their composition is such a map.
    """

    gain: float
    gray_gain: float
    offset: np.ndarray  # [3] float64, BGR


def draw_color_jitter(rng: np.random.RandomState, gray_mean: float, var: float = 0.4,
                      light_std: float = 0.1) -> ColorJitter:
    """Brightness, contrast, saturation (random order, each +-``var``) and PCA lighting (``light_std``),
    drawing from ``rng`` exactly as the original's in-place colour augmentation does."""
    ops = ["brightness", "contrast", "saturation"]
    rng.shuffle(ops)
    gain, gray_gain, constant = 1.0, 0.0, 0.0
    for op in ops:
        alpha = 1 + rng.uniform(-var, var)
        gain, gray_gain, constant = gain * alpha, gray_gain * alpha, constant * alpha
        if op == "contrast":
            constant += (1 - alpha) * gray_mean
        elif op == "saturation":
            gray_gain += 1 - alpha
    light = EIG_VEC @ (EIG_VAL * rng.normal(scale=light_std, size=(3,)).astype(np.float32))
    return ColorJitter(gain, gray_gain, constant + light.astype(np.float64))


def gray_mean(image: np.ndarray) -> float:
    """Mean gray value in [0, 1] of a uint8 BGR image (OpenCV's BGR -> gray weights)."""
    return float(np.dot(cv2.mean(image)[:3], GRAY_WEIGHTS)) / 255.0


@dataclass(frozen=True)
class AugmentParams:
    """Random choices of one training sample."""

    center: np.ndarray
    scale: float
    flipped: bool


def sample_augment(
    rng: np.random.RandomState, width: int, height: int, random_crop: bool = True,
    scale_jitter: float = 0.4, shift_jitter: float = 0.1, flip_prob: float = 0.5,
) -> AugmentParams:
    """Draw the crop centre, scale and flip of the original training augmentation."""
    center = np.array([width / 2.0, height / 2.0], dtype=np.float32)
    s = float(max(height, width))
    if random_crop:
        s *= float(rng.choice(CROP_SCALES))
        wb, hb = _border(128, width), _border(128, height)
        center[0] = rng.randint(low=wb, high=width - wb)
        center[1] = rng.randint(low=hb, high=height - hb)
    else:
        center[0] += s * np.clip(rng.randn() * shift_jitter, -2 * shift_jitter, 2 * shift_jitter)
        center[1] += s * np.clip(rng.randn() * shift_jitter, -2 * shift_jitter, 2 * shift_jitter)
        s *= float(np.clip(rng.randn() * scale_jitter + 1, 1 - scale_jitter, 1 + scale_jitter))
    flipped = bool(rng.random_sample() < flip_prob)
    if flipped:
        center[0] = width - center[0] - 1
    return AugmentParams(center, s, flipped)


# OpenCV 5 warps in floating point: bilinear weights from the exact source position, rounded once. OpenCV 4
# quantises the source position to 1/32 pixel (INTER_BITS = 5), which moves pixels by up to 7 grey levels.
OPENCV_WARP_IS_EXACT = int(cv2.__version__.split(".")[0]) >= 5


def warp_affine(image: np.ndarray, trans: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` [H, W, C] uint8 through the 2x3 ``trans`` (image -> output) into ``size`` (w, h): bilinear,
    zeros outside, the same values (to rounding) with any OpenCV: its own warp where it is exact, else
    :func:`warp_affine_exact`."""
    if OPENCV_WARP_IS_EXACT:
        return cv2.warpAffine(image, trans, size, flags=cv2.INTER_LINEAR)
    return warp_affine_exact(image, trans, size)


def warp_affine_exact(image: np.ndarray, trans: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The exact bilinear warp in PyTorch (``grid_sample``): each output pixel samples the image at
    ``inverse(trans) @ (x, y, 1)``, taps outside the image count as 0, and uint8 results are rounded."""
    out_w, out_h = size
    height, width = image.shape[:2]
    inv = cv2.invertAffineTransform(np.asarray(trans, dtype=np.float64))
    xs = np.arange(out_w, dtype=np.float64)[None, :]
    ys = np.arange(out_h, dtype=np.float64)[:, None]
    src_x = inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2]  # [h, w] source pixel positions
    src_y = inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2]
    # grid_sample's normalised coordinates (align_corners=False): pixel i spans [2i / n - 1, 2(i + 1) / n - 1]
    grid = np.stack([(2 * src_x + 1) / width - 1, (2 * src_y + 1) / height - 1], axis=-1)  # [h, w, 2]
    pixels = torch.from_numpy(image.reshape(height, width, -1)).permute(2, 0, 1)[None].float()  # [1, C, H, W]
    warped = F.grid_sample(pixels, torch.from_numpy(grid[None]).float(), mode="bilinear", padding_mode="zeros",
                           align_corners=False)[0].permute(1, 2, 0)  # [h, w, C]
    if image.dtype == np.uint8:
        warped = warped.round_().clamp_(0, 255).to(torch.uint8)
    return warped.numpy().reshape((out_h, out_w, *image.shape[2:]))


def to_input(image: np.ndarray, mean: np.ndarray, std: np.ndarray, jitter: ColorJitter | None = None) -> np.ndarray:
    """BGR [H, W, 3] with values in [0, 255] -> network input [3, H, W] float32: x / 255, then ``jitter``,
    then (x - mean) / std, fused into one 3x4 colour matrix applied per output channel."""
    mix = np.eye(3) if jitter is None else jitter.gain * np.eye(3) + jitter.gray_gain * GRAY_WEIGHTS[None, :]
    offset = np.zeros(3) if jitter is None else jitter.offset
    std = np.asarray(std, dtype=np.float64)
    matrix = np.empty((3, 4), dtype=np.float32)  # [out channel, (B, G, R, 1)]
    matrix[:, :3] = mix / 255.0 / std[:, None]
    matrix[:, 3] = (offset - np.asarray(mean, dtype=np.float64)) / std
    pixels = image.astype(np.float32)
    out = np.empty((3, *image.shape[:2]), dtype=np.float32)
    for c in range(3):
        cv2.transform(pixels, matrix[c : c + 1], dst=out[c])
    return out


def output_side(n: int, down_ratio: int) -> int:
    """Side of the output map of an ``n``-pixel input side at stride ``down_ratio``: ceil(n / R), what the
    strided convolutions give (a 511x511 CornerNet input has a 128x128 output map; SPEC 7)."""
    return -(-int(n) // int(down_ratio))


#: keep_res layouts of a test image: "centernet" pads each side to (n | pad) + 1 and warps the image about its
#: centre; "cornernet" (the original CornerNet's test) pads to n | pad, copies the image in at an integer offset
#: and maps the output map back with the ratios in / out of each side (511 -> 128: 511 / 128, not 4)
PAD_STYLES = ("centernet", "cornernet")


def padded_size(n: int, pad: int, style: str = "centernet") -> int:
    """Test-time ``keep_res`` size of an ``n``-pixel side: (n | pad) + 1, e.g. 480 -> 512 and 512 -> 544 for pad
    31; with ``style="cornernet"`` n | pad, e.g. 480 -> 511 and 640 -> 767 for pad 127."""
    if style not in PAD_STYLES:
        raise ValueError(f"unknown keep_res pad style {style!r}; expected one of {PAD_STYLES}")
    return (n | pad) + (style == "centernet")


@dataclass(frozen=True)
class TestInput:
    """A prepared test image: ``image`` [3, h, w] and the geometry to map predictions back."""

    image: np.ndarray
    center: np.ndarray
    scale: float | np.ndarray
    scale_factor: float
    output_size: tuple[int, int]  # (w, h) of the stride-R output map
    # [2, 3] output map -> the resized image, when not the affine of ``center`` / ``scale`` (CornerNet's layout)
    trans_inv: np.ndarray | None = None


def _span(n: int, size: int) -> tuple[slice, slice, int]:
    """One axis of CornerNet's test layout: an ``n``-pixel side on a ``size``-pixel canvas, centre pixel n // 2
    on size // 2. Returns (canvas slice, image slice, offset image -> canvas)."""
    center, half = n // 2, size // 2
    lo, hi = max(0, center - half), min(center + half, n)
    offset = half - center
    return slice(lo + offset, hi + offset), slice(lo, hi), offset


def _corner_layout(image: np.ndarray, inp_w: int, inp_h: int, down_ratio: int) -> tuple[np.ndarray, np.ndarray]:
    """The original CornerNet's test input: ``image`` copied into a zero ``inp_w x inp_h`` canvas with its centre
    pixel (w // 2, h // 2) on the canvas's (inp_w // 2, inp_h // 2) (what falls outside is cut, as there: the last
    column of a 511-wide image), and the [2, 3] map from output-map pixels back to the image: x * inp / out
    minus the offset, per axis."""
    rows_to, rows_from, dy = _span(image.shape[0], inp_h)
    cols_to, cols_from, dx = _span(image.shape[1], inp_w)
    canvas = np.zeros((inp_h, inp_w) + image.shape[2:], dtype=image.dtype)
    canvas[rows_to, cols_to] = image[rows_from, cols_from]
    out_w, out_h = output_side(inp_w, down_ratio), output_side(inp_h, down_ratio)
    trans_inv = np.array([[inp_w / out_w, 0.0, -dx], [0.0, inp_h / out_h, -dy]])
    return canvas, trans_inv


def prepare_test_image(
    image: np.ndarray, mean: np.ndarray, std: np.ndarray, input_size: tuple[int, int] | None,
    pad: int = 31, down_ratio: int = 4, scale_factor: float = 1.0, pad_style: str = "centernet",
) -> TestInput:
    """Resize by ``scale_factor`` then warp to ``input_size`` (w, h), or with ``input_size=None``
    (``keep_res``) pad each side as ``pad_style`` says (:data:`PAD_STYLES`): to ``(n | pad) + 1`` around the
    centre, or CornerNet's ``n | pad`` with the image at an integer offset."""
    height, width = image.shape[:2]
    new_h, new_w = int(height * scale_factor), int(width * scale_factor)
    resized = image if scale_factor == 1.0 else cv2.resize(image, (new_w, new_h))
    if input_size is not None:
        inp_w, inp_h = input_size
        center = np.array([new_w / 2.0, new_h / 2.0], dtype=np.float32)
        scale: float | np.ndarray = float(max(height, width))
    else:
        inp_h, inp_w = padded_size(new_h, pad, pad_style), padded_size(new_w, pad, pad_style)
        center = np.array([new_w // 2, new_h // 2], dtype=np.float32)
        scale = np.array([inp_w, inp_h], dtype=np.float32)
    trans_inv = None
    if input_size is None and pad_style == "cornernet":
        warped, trans_inv = _corner_layout(resized, inp_w, inp_h, down_ratio)
    else:
        trans = get_affine_transform(center, scale, 0, (inp_w, inp_h))
        warped = warp_affine(resized, trans, (inp_w, inp_h))
    inp = to_input(warped, mean, std)
    out_size = (output_side(inp_w, down_ratio), output_side(inp_h, down_ratio))
    return TestInput(inp, center, scale, scale_factor, out_size, trans_inv)
