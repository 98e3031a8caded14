"""The fast training pipeline gives the same items as the frozen pre-issue-12 copy (tests/helpers)."""
import numpy as np
import pytest

from centernet.data import open_dataset
from centernet.data.pipeline import TrainDataset
from centernet.data.transforms import sample_augment
from centernet.ops.heatmap import draw_gaussian, gaussian_kernel
from centernet.tasks import CtdetTask, MultiPoseTask
from helpers.frozen_pipeline import draw_gaussian as frozen_draw_gaussian
from helpers.frozen_pipeline import frozen_item


def assert_same_item(new: dict, old: dict) -> None:
    # the seam's per-image meta added image_size; augment_prob added the per-image "augmented" flag
    assert new.keys() - {"image_size", "augmented"} == old.keys()
    np.testing.assert_array_equal(new["image_size"] > 0, True)
    for key, expected in old.items():
        got = new[key]
        assert got.dtype == expected.dtype and got.shape == expected.shape, key
        if np.issubdtype(expected.dtype, np.floating):
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5, err_msg=key)
        else:
            np.testing.assert_array_equal(got, expected, err_msg=key)


def was_flipped(ds: TrainDataset, index: int) -> bool:
    sample = ds.source[index]
    if not ds.augment:
        return False
    rng = np.random.RandomState((ds.seed * 1_000_003 + ds.epoch * 7919 + index) % 2**32)
    return sample_augment(rng, sample.width, sample.height, ds.random_crop, ds.scale_jitter, ds.shift_jitter,
                          ds.flip_prob).flipped


# (seed, epoch, settings): full training augmentation, the centre-jitter variant without colour, the test geometry
CASES = [
    (0, 0, {}),
    (3, 5, {}),
    (1, 2, {"random_crop": False, "color": False}),
    (7, 0, {"augment": False}),
]


@pytest.mark.parametrize("seed,epoch,settings", CASES)
def test_ctdet_items_match_the_frozen_pipeline(shared_data, seed, epoch, settings):
    source = open_dataset(shared_data / "coco_mini" / "annotations" / "instances_train2017.json")
    ds = TrainDataset(source, CtdetTask(num_classes=len(source.class_names)), (512, 512), seed=seed, **settings)
    ds.set_epoch(epoch)
    flips = set()
    for index in (0, 1, 7, 23, 41):
        assert_same_item(ds[index], frozen_item(ds, index))
        flips.add(was_flipped(ds, index))
    assert flips == ({False} if settings.get("augment") is False else {False, True})  # both image paths ran


@pytest.mark.parametrize("seed,epoch,settings", CASES[:2] + CASES[3:])
def test_multi_pose_items_match_the_frozen_pipeline(shared_data, seed, epoch, settings):
    source = open_dataset(shared_data / "coco_mini" / "annotations" / "person_keypoints_train2017.json")
    ds = TrainDataset(source, MultiPoseTask(), (512, 512), seed=seed, **settings)
    ds.set_epoch(epoch)
    for index in (0, 2, 5, 11):
        assert_same_item(ds[index], frozen_item(ds, index))


def test_non_square_input_matches(shared_data):
    source = open_dataset(shared_data / "coco_mini" / "annotations" / "instances_train2017.json")
    ds = TrainDataset(source, CtdetTask(num_classes=len(source.class_names)), (384, 256), seed=2)
    for index in (3, 4):
        assert_same_item(ds[index], frozen_item(ds, index))


def test_draw_gaussian_matches_frozen_for_every_radius_scale_and_border():
    rng = np.random.RandomState(0)
    for radius in range(0, 12):
        for _ in range(4):
            center = rng.randint(-3, 20, size=2)
            k = float(rng.choice([1.0, 0.5, 0.9999]))
            new, old = np.zeros((17, 15), np.float32), np.zeros((17, 15), np.float32)
            new[3, 4] = old[3, 4] = 0.25
            draw_gaussian(new, center, radius, k)
            frozen_draw_gaussian(old, center, radius, k)
            np.testing.assert_array_equal(new, old)


def test_cached_kernel_is_read_only():
    kernel = gaussian_kernel(3)
    assert kernel is gaussian_kernel(3)
    with pytest.raises(ValueError):
        kernel[0, 0] = 1.0
