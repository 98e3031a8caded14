"""Small-data augmentation (data.mosaic, data.mixup, data.multiscale): boxes follow the pixels through the mosaic
and the crop (encode -> oracle decode), every draw is a function of (seed, epoch, index), mixup keeps the objects
of both images, multi-scale batches have one size per batch (the same on every process), and with the options
off the items are those of the plain pipeline."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DistributedSampler

from centernet.app.builders import model_from_config, open_source, task_from_config
from centernet.config import DataConfig, ExperimentConfig, ModelConfig, TaskConfig, TrainConfig
from centernet.data import make_synthetic_dataset
from centernet.data.mix import mosaic, place_objects
from centernet.data.pipeline import TrainDataset, collate
from centernet.data.sample import DetectionSource, Sample
from centernet.data.synthetic_pose import make_synthetic_pose_dataset
from centernet.engine.inference import decode_batch
from centernet.engine.rundir import check_input_size
from centernet.engine.batches import EpochBatches, EpochSampler, multiscale_sizes, scaled_input_size
from centernet.engine.trainer import Trainer
from centernet.tasks import CtdetTask, DddTask, MultiPoseTask

# the non-black corners of the colour cube: no blend of some of them (nor with black) equals another
COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 0, 255), (0, 255, 255), (255, 255, 255)]


class ListSource(DetectionSource):
    def __init__(self, samples, class_names):
        self.samples, self.class_names = samples, class_names


@pytest.fixture()
def coloured(tmp_path: Path) -> ListSource:
    """4 images of different sizes on black; object k a filled rectangle of COLOURS[k], class k (box = the
    rectangle's first and last pixels)."""
    layout = [((200, 160), [(10, 20, 90, 120), (120, 30, 190, 150)]),
              ((160, 200), [(20, 10, 140, 80), (30, 110, 100, 190)]),
              ((240, 120), [(15, 15, 120, 100), (150, 20, 230, 110)]),
              ((180, 180), [(40, 40, 150, 150)])]
    samples, k = [], 0
    for i, ((w, h), rects) in enumerate(layout):
        image = np.zeros((h, w, 3), np.uint8)
        labels = []
        for x1, y1, x2, y2 in rects:
            cv2.rectangle(image, (x1, y1), (x2, y2), COLOURS[k], -1)
            labels.append(k)
            k += 1
        cv2.imwrite(str(tmp_path / f"{i}.png"), image)
        samples.append(Sample(i + 1, tmp_path / f"{i}.png", w, h, np.array(rects, np.float32), np.array(labels)))
    return ListSource(samples, [str(c) for c in range(len(COLOURS))])


def input_pixels(item) -> np.ndarray:
    """The item's input back in [0, 255] BGR, [H, W, 3] (no colour jitter)."""
    mean, std = np.array([0.408, 0.447, 0.470]), np.array([0.289, 0.274, 0.278])
    return (item["input"].transpose(1, 2, 0) * std + mean) * 255


@pytest.mark.parametrize("size_loss", ["l1", "giou"])  # wh / reg targets, or TTFNet's dense ltrb targets
def test_mosaic_round_trip_boxes_follow_the_pixels(coloured, size_loss):
    """Encode a mosaic item, decode its oracle maps: each box is the extent of its object's pixels in the input
    (what the mosaic placed and the crop warped), and objects of several images are in one item."""
    task = CtdetTask(num_classes=len(COLOURS), size_loss=size_loss)
    ds = TrainDataset(coloured, task, input_size=(128, 128), color=False, seed=7, mosaic=1.0)
    image_of = np.repeat(np.arange(4), [2, 2, 2, 1])
    images_seen, checked = [], 0
    for epoch in range(3):
        ds.set_epoch(epoch)
        for index in range(4):
            item = ds[index]
            rows = decode_batch(task, task.oracle_maps(collate([item])))[0].numpy()
            rows = rows[rows[:, 4] == 1]
            assert len(rows) == item["reg_mask"].sum()
            pixels = input_pixels(item)
            limit = (128 // 4 - 1) * 4  # the encoder clips boxes to the last map pixel
            for row in rows:
                k = int(row[5])
                exact = np.abs(pixels - np.array(COLOURS[k])).max(axis=2) < 1.5  # [H, W] pixels of object k
                # an image may fill two tiles: each piece of object k's colour is one copy
                count, _, stats, _ = cv2.connectedComponentsWithStats(exact.astype(np.uint8))
                assert count > 1, f"object {k} decoded but not visible"
                x, y, w, h = stats[1:, :4].T.astype(np.float64)
                seen = np.stack([x, y, np.minimum(x + w - 1, limit), np.minimum(y + h - 1, limit)], axis=1)
                box = row[:4].astype(np.float64) * 4  # map -> input pixels
                # the exact pixels of one copy lie inside the box, which ends within a pixel or two of them
                inside = (seen[:, :2] >= box[:2] - 0.01).all(1) & (seen[:, 2:] <= box[2:] + 0.01).all(1)
                close = np.abs(seen - box).max(axis=1) < 3.0
                assert (inside & close).any(), (k, box, seen)
                checked += 1
            images_seen.append(len(set(image_of[rows[:, 5].astype(int)])))
    assert checked >= 12 and max(images_seen) >= 3  # objects of 3+ images in one item


def test_place_objects_clips_and_drops():
    sample = Sample(1, Path("x.png"), 200, 100,
                    np.array([[50, 10, 120, 50], [90, 10, 190, 50], [10, 10, 11.5, 50], [10, 60, 40, 90]],
                             np.float32), np.array([0, 1, 2, 3]),
                    keypoints=np.array([[[60, 20, 2], [110, 30, 2]]] * 4, np.float32))
    shift = np.array([[1.0, 0, 0], [0, 1.0, 0]])
    out = place_objects(sample, shift, (0, 0, 100, 100))
    # box 1 keeps 9% of its area, box 2 is 1.5 px wide: dropped; box 0 is clipped to the region's last pixel
    assert out.labels.tolist() == [0, 3]
    np.testing.assert_allclose(out.boxes, [[50, 10, 99, 50], [10, 60, 40, 90]])
    assert out.keypoints[:, :, 2].tolist() == [[2, 0], [2, 0]]  # the joint past the region is made invisible
    moved = place_objects(sample, np.array([[0.5, 0, 10], [0, 0.5, 20]]), (10, 20, 110, 70))
    np.testing.assert_allclose(moved.boxes[0], [35, 25, 70, 45])


def test_mosaic_canvas_puts_each_object_on_its_pixels(coloured):
    items = [(cv2.imread(str(s.path)), s) for s in coloured.samples]
    canvas, sample = mosaic(np.random.RandomState(3), items, 128)
    assert canvas.shape == (256, 256, 3) and (sample.width, sample.height) == (256, 256)
    assert len(sample) >= 4
    for box, k in zip(sample.boxes, sample.labels):
        ys, xs = np.nonzero(np.abs(canvas.astype(float) - COLOURS[k]).max(axis=2) < 1.5)
        seen = np.array([xs.min(), ys.min(), xs.max(), ys.max()])
        assert np.abs(seen - box).max() < 1.5, (k, box, seen)


def test_items_are_a_function_of_seed_epoch_index(coloured):
    def make(seed):
        return TrainDataset(coloured, CtdetTask(num_classes=7), input_size=(64, 64), seed=seed, mosaic=0.5,
                            mixup=0.5)

    a, b = make(1), make(1)
    a.set_epoch(2)
    first = a[1]
    a[0], a[3]  # other items in between change nothing
    b.set_epoch(2)
    for again in (a[1], b[1]):
        for key in first:
            np.testing.assert_array_equal(first[key], again[key], err_msg=key)
    a.set_epoch(3)
    assert not np.array_equal(a[1]["input"], first["input"])
    c = make(2)
    c.set_epoch(2)
    assert not np.array_equal(c[1]["input"], first["input"])


def test_options_off_or_unaugmented_give_the_plain_items(coloured):
    task = CtdetTask(num_classes=7)
    plain = TrainDataset(coloured, task, input_size=(64, 64), seed=5)
    off = TrainDataset(coloured, task, input_size=(64, 64), seed=5, mosaic=0.0, mixup=0.0)
    test_plain = TrainDataset(coloured, task, input_size=(64, 64), augment=False)
    test_on = TrainDataset(coloured, task, input_size=(64, 64), augment=False, mosaic=1.0, mixup=1.0)
    for epoch in (0, 1):
        for ds in (plain, off, test_plain, test_on):
            ds.set_epoch(epoch)
        for index in range(4):
            for want, got in ((plain[index], off[index]), (plain[index], plain.item(index, (64, 64))),
                              (test_plain[index], test_on[index])):
                assert want.keys() == got.keys()
                for key in want:
                    np.testing.assert_array_equal(want[key], got[key], err_msg=key)


@pytest.fixture()
def two_images(tmp_path: Path) -> ListSource:
    """Image 0: grey 100 with 2 boxes of class 0; image 1: grey 200 with 3 boxes of class 1 (same size)."""
    specs = [(100, [(10, 10, 60, 50), (80, 20, 150, 100)], 0),
             (200, [(5, 5, 40, 40), (60, 60, 100, 110), (110, 10, 150, 50)], 1)]
    samples = []
    for i, (grey, boxes, label) in enumerate(specs):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((120, 160, 3), grey, np.uint8))
        samples.append(Sample(i + 1, tmp_path / f"{i}.png", 160, 120, np.array(boxes, np.float32),
                              np.full(len(boxes), label)))
    return ListSource(samples, ["a", "b"])


def test_mixup_keeps_the_objects_of_both_images(two_images):
    task = CtdetTask(num_classes=2)
    ds = TrainDataset(two_images, task, input_size=(64, 64), color=False, random_crop=False, scale_jitter=0.0,
                      shift_jitter=0.0, flip_prob=0.0, seed=0, mixup=1.0)
    partners = set()
    for epoch in range(8):
        ds.set_epoch(epoch)
        item = ds[0]
        peaks = [(item["hm"][c] == 1).sum() for c in range(2)]
        pixels = input_pixels(item)
        if peaks[1]:  # blended with image 1: 2 + 3 objects, 50 / 50 grey
            partners.add(1)
            assert peaks == [2, 3] and item["reg_mask"].sum() == 5
            np.testing.assert_allclose(pixels[24:40, 24:40], 150, atol=0.01)
        else:  # blended with itself
            partners.add(0)
            assert peaks == [2, 0] and item["reg_mask"].sum() == 4
            np.testing.assert_allclose(pixels[24:40, 24:40], 100, atol=0.01)
    assert 1 in partners


def test_camera_tasks_refuse_mosaic_and_mixup(two_images):
    for option in ("mosaic", "mixup"):
        with pytest.raises(ValueError, match=f"data.{option}"):
            TrainDataset(two_images, DddTask(num_classes=3), input_size=(64, 64), **{option: 0.5})
    with pytest.raises(ValueError, match="mosaic must lie in"):
        TrainDataset(two_images, CtdetTask(num_classes=2), mosaic=1.5)
    for bad in ({"mosaic": 2.0}, {"mixup": -0.1}, {"multiscale": [0.0, 1.0]}):
        with pytest.raises(ValueError, match="data."):
            ExperimentConfig.from_dict({"data": bad})
    cfg = ExperimentConfig.from_dict({"data": {"multiscale": [1.25, 0.75]}})
    with pytest.raises(ValueError, match="low <= high"):
        multiscale_sizes(cfg)


def test_mosaic_and_mixup_with_keypoints(tmp_path):
    paths = make_synthetic_pose_dataset(tmp_path, num_train=4, num_val=1, image_size=(96, 96))
    source = open_source(str(paths["train_ann"]))
    task = MultiPoseTask(num_classes=1)
    ds = TrainDataset(source, task, input_size=(64, 64), seed=1, mosaic=1.0, mixup=1.0)
    for index in range(4):
        item = ds[index]
        people = item["reg_mask"] > 0
        assert people.any() and item["hm_hp"].max() == 1
        assert not item["hps_mask"][~people].any()  # joints only for people with a centre


def test_scaled_sizes_fit_every_architecture():
    assert scaled_input_size((512, 512), 0.75, 4, 32) == (384, 384)
    assert scaled_input_size((511, 511), 1.25, 4, 128) == (639, 639)  # CornerNet's one-less layout
    assert scaled_input_size((128, 96), 0.1, 4, 32) == (32, 32)  # at least one step
    for arch, size in (("resdcn_18", (512, 384)), ("hourglass", (511, 511)), ("dla_tiny_conv", (128, 128))):
        for factor in np.linspace(0.3, 2.0, 12):
            check_input_size(arch, scaled_input_size(size, factor, 4, 128 if "hour" in arch else 32), 4)


def _multiscale_cfg(tmp_path, **data) -> ExperimentConfig:
    return ExperimentConfig(
        model=ModelConfig(arch="resdcn_18_tiny"),
        data=DataConfig(input_size=(64, 64), num_workers=0, multiscale=(0.5, 1.5), **data),
        task=TaskConfig(num_classes=3),
        train=TrainConfig(batch_size=2, seed=4, epochs=1, out_dir=str(tmp_path / "run"), device="cpu",
                          val_interval=0, flops=False, reports=False, max_steps_per_epoch=3))


def test_multiscale_batches_have_one_size_that_varies(tmp_path):
    paths = make_synthetic_dataset(tmp_path, num_train=8, num_val=1, image_size=(64, 64))
    cfg = _multiscale_cfg(tmp_path, mosaic=0.5, mixup=0.5)
    source = open_source(str(paths["train_ann"]))
    task = task_from_config(cfg)
    trainer = Trainer(cfg, model_from_config(cfg, task), task, source, progress=False)
    sizes = []
    for epoch in (0, 1):
        for batch in trainer._loader(epoch):
            h, w = batch["input"].shape[2:]
            assert h == w and h in (32, 64, 96) and batch["hm"].shape[2:] == (h // 4, w // 4)
            sizes.append(h)
    assert len(sizes) == 8 and len(set(sizes)) > 1
    trainer.fit()  # the model trains on the varying sizes
    assert np.isfinite(trainer.history[-1]["loss"])


def test_multiscale_sizes_agree_across_processes(tmp_path):
    cfg = _multiscale_cfg(tmp_path)
    dataset = list(range(20))
    per_rank = []
    for rank in (0, 1):
        shard = DistributedSampler(dataset, num_replicas=2, rank=rank, shuffle=True, seed=4, drop_last=True)
        shard.set_epoch(3)
        keys = EpochSampler(shard)
        keys.epoch = 3
        per_rank.append(list(EpochBatches(keys, 2, True, multiscale_sizes(cfg))))
    (a, b) = per_rank
    assert len(a) == len(b) == 5
    assert [batch[0][2] for batch in a] == [batch[0][2] for batch in b]  # one size per step on both ranks
    assert all(len({key[2] for key in batch}) == 1 for batch in a + b)
    assert {key[1] for batch in a for key in batch}.isdisjoint({key[1] for batch in b for key in batch})
    assert len({batch[0][2] for batch in a}) > 1
