import numpy as np
import pytest

from centernet.data.transforms import padded_size, prepare_test_image, sample_augment, warp_affine, warp_affine_exact
from centernet.ops.transforms import affine_transform, get_affine_transform


def test_affine_spec_example():
    c, s = np.array([320.0, 240.0]), 640.0
    np.testing.assert_allclose(get_affine_transform(c, s, 0, (512, 512)), [[0.8, 0, 0], [0, 0.8, 64]], atol=1e-5)
    np.testing.assert_allclose(get_affine_transform(c, s, 0, (128, 128)), [[0.2, 0, 0], [0, 0.2, 16]], atol=1e-5)
    inv = get_affine_transform(c, s, 0, (128, 128), inv=True)
    np.testing.assert_allclose(affine_transform(np.array([[64.0, 64.0]]), inv), [[320, 240]], atol=1e-4)


def test_affine_inverse_round_trip_with_rotation():
    c, s = np.array([100.0, 50.0]), 300.0
    fwd = get_affine_transform(c, s, 30, (96, 64))
    inv = get_affine_transform(c, s, 30, (96, 64), inv=True)
    pts = np.random.RandomState(0).rand(10, 2).astype(np.float32) * 200
    np.testing.assert_allclose(affine_transform(affine_transform(pts, fwd), inv), pts, atol=1e-3)


def test_keep_res_padding():
    assert padded_size(480, 31) == 512 and padded_size(512, 31) == 544 and padded_size(640, 127) == 768
    image = np.zeros((480, 640, 3), np.uint8)
    prepared = prepare_test_image(image, np.zeros(3, np.float32), np.ones(3, np.float32), None)
    assert prepared.image.shape == (3, 512, 672) and prepared.output_size == (168, 128)


def test_random_crop_draws_in_range():
    rng = np.random.RandomState(0)
    scales = set()
    for _ in range(200):
        aug = sample_augment(rng, 640, 480)
        assert 128 <= aug.center[0] <= 640 - 128 and 128 <= aug.center[1] < 480 - 128 + 1
        scales.add(round(aug.scale / 640, 1))
    assert scales == {0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3}


def test_keep_res_padding_follows_the_backbone():
    from centernet.app.builders import eval_settings
    from centernet.presets import get_preset

    cfg = get_preset("ctdet_hourglass_coco")
    cfg.data.test_keep_res = True
    assert eval_settings(cfg).pad == 127 and eval_settings(cfg).input_size is None
    cfg.model.arch = "dla_34"
    assert eval_settings(cfg).pad == 31
    cfg.data.test_pad = 63  # an explicit value wins
    assert eval_settings(cfg).pad == 63


def _bilinear_reference(image: np.ndarray, trans: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The definition in float64 NumPy: sample at inverse(trans) @ (x, y, 1), taps outside the image are 0."""
    (out_w, out_h), (height, width) = size, image.shape[:2]
    inv = np.linalg.inv(np.vstack([trans, [0, 0, 1]]))[:2]
    ys, xs = np.mgrid[0:out_h, 0:out_w].astype(np.float64)
    src_x, src_y = inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2], inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2]
    x0, y0 = np.floor(src_x).astype(int), np.floor(src_y).astype(int)
    fx, fy = (src_x - x0)[..., None], (src_y - y0)[..., None]

    def tap(y: np.ndarray, x: np.ndarray) -> np.ndarray:
        inside = ((x >= 0) & (x < width) & (y >= 0) & (y < height))[..., None]
        return image[np.clip(y, 0, height - 1), np.clip(x, 0, width - 1)].astype(np.float64) * inside

    return ((tap(y0, x0) * (1 - fx) + tap(y0, x0 + 1) * fx) * (1 - fy)
            + (tap(y0 + 1, x0) * (1 - fx) + tap(y0 + 1, x0 + 1) * fx) * fy)


@pytest.mark.parametrize("warp", [warp_affine, warp_affine_exact])
@pytest.mark.parametrize("rot", [0.0, 17.0])
def test_affine_warp_is_the_exact_bilinear_warp_with_any_opencv(warp, rot: float) -> None:
    """OpenCV 4 quantises source positions to 1/32 pixel (a sharp edge moves by up to 7 grey levels), OpenCV 5
    does not: the pipeline's warp gives the exact values, rounded, with either (and a shift of the edge)."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    image[:, 20:] = 255  # a sharp vertical edge, where a quantised position shows most
    trans = get_affine_transform(np.array([25.3, 17.9], np.float32), 61.7, rot, (48, 40))
    out = warp(image, trans, (48, 40))
    assert out.dtype == np.uint8 and out.shape == (40, 48, 3)
    assert np.abs(out - _bilinear_reference(image, trans, (48, 40))).max() <= 0.5 + 1e-3
