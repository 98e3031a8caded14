"""Seam tests: what `encode` makes, decoding gives back (ctdet)."""
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from centernet.data.pipeline import TrainDataset, collate
from centernet.data.sample import DetectionSource, Sample
from centernet.engine.inference import detections
from centernet.tasks import CtdetTask


class ListSource(DetectionSource):
    def __init__(self, samples, class_names):
        self.samples, self.class_names = samples, class_names


@pytest.fixture()
def source(tmp_path: Path) -> ListSource:
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((240, 320, 3), np.uint8))
    boxes = np.array([[10, 20, 110, 90], [150.5, 30.25, 300, 230], [40, 120, 80, 200]], np.float32)
    sample = Sample(1, tmp_path / "a.png", 320, 240, boxes, np.array([0, 2, 1]))
    return ListSource([sample], ["a", "b", "c"])


def test_encode_decode_round_trip(source):
    task = CtdetTask(num_classes=3)
    ds = TrainDataset(source, task, input_size=(256, 256), augment=False)
    batch = collate([ds[0]])
    assert batch["hm"].shape == (1, 3, 64, 64) and batch["reg_mask"].sum() == 3
    assert (batch["hm"] == 1).sum() == 3  # one peak per object
    dets = detections(task, task.oracle_maps(batch), batch)[0]
    found = dets[dets[:, 4] == 1]
    order = found[:, 5].argsort()
    expected = torch.tensor([[10, 20, 110, 90, 1, 0], [40, 120, 80, 200, 1, 1], [150.5, 30.25, 300, 230, 1, 2]])
    torch.testing.assert_close(found[order], expected, atol=1e-3, rtol=0)


def test_shared_centre_last_object_wins(source):
    s = source.samples[0]
    s.boxes = np.array([[10, 10, 50, 50], [12, 12, 48, 48]], np.float32)
    s.labels = np.array([0, 0])
    s.ignore = np.zeros(2, bool)
    task = CtdetTask(num_classes=3)
    out = TrainDataset(source, task, input_size=(256, 256), augment=False)[0]
    assert out["ind"][0] == out["ind"][1] and out["reg_mask"][:2].tolist() == [1, 1]
    batch = collate([out])
    maps = task.oracle_maps(batch)
    w = maps["wh"].view(2, -1)[:, out["ind"][0]]
    torch.testing.assert_close(w, torch.from_numpy(out["wh"][1]))


def test_crowd_and_degenerate_boxes_get_no_target(source):
    s = source.samples[0]
    s.ignore = np.array([True, False, False])
    s.boxes[2] = [40, 120, 40, 200]  # zero width
    out = TrainDataset(source, CtdetTask(num_classes=3), input_size=(256, 256), augment=False)[0]
    assert out["reg_mask"][:3].tolist() == [0, 1, 0] and (out["hm"] == 1).sum() == 1


def test_augmented_targets_stay_consistent(source):
    """With flips and crops, every positive target has a valid offset, size and index, and a peak."""
    task = CtdetTask(num_classes=3)
    ds = TrainDataset(source, task, input_size=(128, 128), augment=True, seed=3)
    flipped_or_moved = set()
    for epoch in range(6):
        ds.set_epoch(epoch)
        item = ds[0]
        k = item["reg_mask"] > 0
        assert k.any() and item["hm"].max() == 1
        assert ((item["reg"][k] >= 0) & (item["reg"][k] < 1)).all()
        assert (item["wh"][k] > 0).all() and (item["ind"][k] < 32 * 32).all()
        peak_inds = {int(i) for i in np.flatnonzero(item["hm"].max(axis=0).reshape(-1) == 1)}
        assert {int(i) for i in item["ind"][k]} <= peak_inds
        flipped_or_moved.add(tuple(item["ind"][k].tolist()))
    assert len(flipped_or_moved) > 1  # the augmentation does change the geometry between epochs
