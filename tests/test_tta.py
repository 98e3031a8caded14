"""Soft-NMS, the multi-scale test and the error analysis."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from centernet.app.builders import eval_settings, model_from_config, open_source, task_from_config
from centernet.cli import main
from centernet.config import ExperimentConfig
from centernet.data import make_synthetic_dataset
from centernet.engine.analyze import error_analysis, format_table
from centernet.engine.checkpoint import save_checkpoint
from centernet.engine.evaluator import evaluate, parse_scales, run_detections
from centernet.ops.boxes import batched_soft_nms, merge_detections, soft_nms

TINY_ARCH = "resdcn_18_tiny"  # ResNet-18 at 1/8 width + the DCN (grid_sample) up-sampling neck


def reference_soft_nms(boxes: np.ndarray, scores: np.ndarray, sigma=0.5, threshold=0.001, offset=0.0):
    """The sequential algorithm, written naively: {index: final score} of the kept boxes."""
    s = scores.astype(np.float64).copy()
    alive = [i for i in range(len(s)) if s[i] >= threshold]
    kept = {}
    while alive:
        i = max(alive, key=lambda k: s[k])
        alive.remove(i)
        kept[i] = s[i]
        for j in list(alive):
            iw = max(0.0, min(boxes[i, 2], boxes[j, 2]) - max(boxes[i, 0], boxes[j, 0]) + offset)
            ih = max(0.0, min(boxes[i, 3], boxes[j, 3]) - max(boxes[i, 1], boxes[j, 1]) + offset)
            area = lambda b: (b[2] - b[0] + offset) * (b[3] - b[1] + offset)  # noqa: E731
            iou = iw * ih / (area(boxes[i]) + area(boxes[j]) - iw * ih)
            s[j] *= math.exp(-iou * iou / sigma)
            if s[j] < threshold:
                alive.remove(j)
    return kept


def test_soft_nms_gaussian_values():
    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 5], [20, 20, 30, 30.]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    keep, new = soft_nms(boxes, scores)
    got = dict(zip(keep.tolist(), new.tolist()))
    assert got[0] == pytest.approx(0.9) and got[3] == pytest.approx(0.6)  # the best and a disjoint box stay
    # box 2 (IoU 0.5 with 0 and 1) is picked before box 1: 0.7 e^-0.5 = 0.4246 > 0.8 e^-2 = 0.1083
    assert got[2] == pytest.approx(0.7 * math.exp(-0.25 / 0.5))
    assert got[1] == pytest.approx(0.8 * math.exp(-1 / 0.5) * math.exp(-0.25 / 0.5))
    assert new.tolist() == sorted(new.tolist(), reverse=True)
    # a duplicate of a 0.9 box scored 0.005 decays to 0.005 e^-2 = 0.0007 < 0.001: dropped
    keep, _ = soft_nms(boxes[:2], torch.tensor([0.9, 0.005]))
    assert keep.tolist() == [0]


@pytest.mark.parametrize("offset", [0.0, 1.0])
def test_soft_nms_matches_sequential_reference(offset):
    rng = np.random.default_rng(1)
    for _ in range(10):
        n = int(rng.integers(1, 80))
        xy = rng.uniform(0, 60, (n, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(1, 40, (n, 2))], 1)
        scores = rng.uniform(0, 1, n) ** 3
        groups = rng.integers(0, 5, n)
        keep, new = batched_soft_nms(torch.tensor(boxes), torch.tensor(scores), torch.tensor(groups), offset=offset)
        expected = {}
        for g in range(5):
            ids = np.flatnonzero(groups == g)
            expected.update({ids[i]: v for i, v in reference_soft_nms(boxes[ids], scores[ids], offset=offset).items()})
        assert set(keep.tolist()) == set(expected)
        np.testing.assert_allclose(new.numpy(), [expected[i] for i in keep.tolist()], rtol=1e-9)


def test_linear_and_hard_methods():
    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 8], [0, 0, 10, 2.]])  # IoU 0.8 and 0.2 with the first
    scores = torch.tensor([0.9, 0.8, 0.7])
    keep, new = soft_nms(boxes, scores, method="hard", iou_threshold=0.5)
    assert sorted(keep.tolist()) == [0, 2]
    keep, new = soft_nms(boxes, scores, method="linear", iou_threshold=0.5)
    got = dict(zip(keep.tolist(), new.tolist()))
    assert got[1] == pytest.approx(0.8 * 0.2) and got[2] == pytest.approx(0.7)
    with pytest.raises(ValueError):
        soft_nms(boxes, scores, method="cubic")


def test_merge_detections_per_image_and_class_then_top_k():
    # image 0: two copies of one class-0 box and one class-1 box at the same place; image 1: one box
    row = lambda x, s, c: [x, 0, x + 10, 10, s, c]  # noqa: E731
    dets = torch.tensor([[row(0, 0.9, 0), row(0, 0.8, 0), row(0, 0.7, 1)],
                         [row(0, 0.6, 0), row(50, 0.0, 0), row(50, 0.0, 0)]])
    merged = merge_detections(dets, K=2)
    assert [m.shape[0] for m in merged] == [2, 1]
    assert merged[0][:, 4].tolist() == pytest.approx([0.9, 0.7])  # the class-1 box is not suppressed
    assert merged[0][:, 5].tolist() == [0, 1]
    assert merged[1][0, 4].item() == pytest.approx(0.6)


def test_parse_scales():
    assert parse_scales("0.5,0.75,1,1.25,1.5") == (0.5, 0.75, 1.0, 1.25, 1.5)
    assert parse_scales(None) == (1.0,)
    with pytest.raises(ValueError):
        parse_scales("1,-2")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tta")
    paths = make_synthetic_dataset(root / "data", num_train=1, num_val=4, image_size=(96, 80), num_classes=2,
                                   seed=5)
    cfg = ExperimentConfig()
    cfg.model.arch = TINY_ARCH
    cfg.data.input_size = (96, 96)
    source = open_source(str(paths["val_ann"]))
    cfg.task.num_classes = len(source.class_names)
    task = task_from_config(cfg)
    torch.manual_seed(0)
    model = model_from_config(cfg, task).eval()
    save_checkpoint(root / "tiny.pth", cfg, model)
    return cfg, model, task, source, paths, root


def test_multiscale_evaluation(tiny):
    cfg, model, task, source, *_ = tiny
    def by_image(settings):
        return {int(meta["image_id"]): rows for meta, rows in run_detections(model, task, source, settings,
                                                                             progress=False)}

    single = by_image(eval_settings(cfg))
    same_twice = by_image(eval_settings(cfg, scales=(1.0, 1.0)))
    for image_id, rows in single.items():
        merged = same_twice[image_id]
        assert merged.shape[0] <= task.K
        # each detection meets its own duplicate (IoU 1): the top one keeps its score and box
        torch.testing.assert_close(merged[0], rows[0])
    many = eval_settings(cfg, scales=(0.5, 0.75, 1.0, 1.25, 1.5), flip=True)
    result = evaluate(model, task, source, many, progress=False)
    assert set(result.metrics) >= {"AP", "AP50", "AP75"}
    assert len(result.results) <= task.K * len(source)


def test_error_analysis_table(tiny, capsys):
    cfg, model, task, source, paths, root = tiny
    rows = error_analysis(model, task, source, eval_settings(cfg), progress=False)
    assert [r.name for r in rows] == ["none", "size (wh)", "heatmap (hm)", "hm + wh", "hm + wh + reg"]
    full = rows[-1].metrics
    oracle = evaluate(None, task, source, eval_settings(cfg), progress=False).metrics
    assert full == pytest.approx(oracle) and full["AP50"] > 0.9  # all maps from the ground truth
    assert rows[0].metrics["AP"] < full["AP"]  # an untrained network is worse than the truth
    table = format_table(rows)
    assert "hm + wh + reg" in table and "AP75" in table
    assert main(["analyze", str(root / "tiny.pth"), "--data", str(paths["val_ann"]), "--device", "cpu",
                 "--workers", "0"]) == 0
    assert "heatmap (hm)" in capsys.readouterr().out
