import numpy as np

from centernet.data.transforms import (
    affine_transform, get_affine_transform, padded_size, prepare_test_image, sample_augment,
)


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
    from centernet.builders import eval_settings
    from centernet.presets import get_preset

    cfg = get_preset("ctdet_hourglass_coco")
    cfg.data.test_keep_res = True
    assert eval_settings(cfg).pad == 127 and eval_settings(cfg).input_size is None
    cfg.model.arch = "dla_34"
    assert eval_settings(cfg).pad == 31
    cfg.data.test_pad = 63  # an explicit value wins
    assert eval_settings(cfg).pad == 63
