"""Batches are contiguous NCHW tensors whatever the memory order of the items (a transposed HWC image stacks
into a channels-last array, on which torch 2.13's CPU conv backward crashed for batches of three)."""
import numpy as np
import torch

from centernet.data.pipeline import collate


def test_collate_returns_contiguous_batches():
    items = [{"input": np.random.rand(8, 8, 3).astype(np.float32).transpose(2, 0, 1), "id": np.int64(i)}
             for i in range(3)]
    assert np.stack([item["input"] for item in items]).strides[1] == 4  # numpy keeps the channels-last order
    batch = collate(items)
    assert batch["input"].is_contiguous() and batch["input"].shape == (3, 3, 8, 8)
    torch.testing.assert_close(batch["input"][1], torch.from_numpy(np.ascontiguousarray(items[1]["input"])))
    assert batch["id"].tolist() == [0, 1, 2]
