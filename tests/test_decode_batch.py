"""The engine decodes large CPU batches a few images at a time: the rows equal one decode of the whole batch."""
from __future__ import annotations

import pytest
import torch

from centernet.engine import inference
from centernet.engine.inference import decode_batch
from centernet.tasks import build_task


@pytest.mark.parametrize("name,classes", [("ctdet", 7), ("multi_pose", 1)])
def test_chunked_decode_equals_whole_batch_decode(monkeypatch, name, classes):
    torch.manual_seed(0)
    task = build_task(name, classes, max_detections=20)
    maps = task.activate({name: torch.randn(5, n, 16, 12) for name, n in task.head_channels().items()})
    whole = task.decode(maps)
    per_image = sum(v[0].numel() * v.element_size() for v in maps.values())
    calls = []
    real = task.decode
    monkeypatch.setattr(task, "decode", lambda m: calls.append(next(iter(m.values())).shape[0]) or real(m))
    monkeypatch.setattr(inference, "DECODE_CHUNK_BYTES", 2 * per_image)  # two images at a time
    assert torch.equal(decode_batch(task, maps), whole)
    assert calls == [2, 2, 1]
    calls.clear()
    monkeypatch.setattr(inference, "DECODE_CHUNK_BYTES", 16 << 20)  # small maps: one call
    assert torch.equal(decode_batch(task, maps), whole) and calls == [5]
