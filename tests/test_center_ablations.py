"""The CenterNet paper's ablations as task options (ctdet and multi_pose): heatmap loss focal / MSE (with the
original's msra gaussians) and size loss L1 / smooth-L1; the defaults stay the paper's."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from centernet.app.builders import task_from_config
from centernet.config import ExperimentConfig
from centernet.data.pipeline import collate
from centernet.data.sample import Sample
from centernet.ops.heatmap import draw_gaussian, draw_msra_gaussian, msra_kernel
from centernet.ops.losses import focal_loss, reg_l1_loss, reg_smooth_l1_loss
from centernet.tasks import CtdetTask, MultiPoseTask, build_task

BOXES = np.array([[4.0, 6.0, 30.0, 26.0], [34.0, 8.0, 60.0, 50.0]], np.float32)  # on a 64x64 map


def _sample() -> Sample:
    return Sample(1, Path("x.png"), 64, 64, BOXES, np.array([0, 1]))


def test_msra_gaussian_values() -> None:
    k = msra_kernel(1)
    assert k.shape == (7, 7) and k[3, 3] == 1
    np.testing.assert_allclose([k[3, 4], k[3, 5], k[3, 6], k[4, 4]],
                               [math.exp(-0.5), math.exp(-2), math.exp(-4.5), math.exp(-1)])
    assert msra_kernel(0).tolist() == [[1.0]]  # the original writes NaN there (0 / 0)
    heat = draw_msra_gaussian(np.zeros((10, 12), np.float32), (2.6, 1.4), 2)  # rounded centre (3, 1)
    assert heat[1, 3] == 1 and heat.argmax() == 1 * 12 + 3
    np.testing.assert_allclose(heat[0, 3], math.exp(-1 / 8), rtol=1e-6)  # clipped at the top border
    assert heat[1, 9] == pytest.approx(math.exp(-36 / 8)) and heat[1, 10] == 0  # 3 sigma = 6 pixels
    umich = draw_gaussian(np.zeros((10, 12), np.float32), (3, 1), 2)
    assert np.count_nonzero(heat) > np.count_nonzero(umich)  # sigma = r against the umich (2r + 1) / 6


def test_ctdet_defaults_are_the_papers() -> None:
    task = CtdetTask(2)
    assert (task.hm_loss, task.size_loss) == ("focal", "l1")
    with pytest.raises(ValueError, match="hm_loss"):
        CtdetTask(2, hm_loss="l2")
    with pytest.raises(ValueError, match="size_loss"):
        build_task("ctdet", 2, size_loss="huber")


def _batch_and_output(task, seed: int = 0):
    targets = collate([task.encode(_sample(), 64, 64)])
    g = torch.Generator().manual_seed(seed)
    output = {name: torch.randn(1, n, 64, 64, generator=g) for name, n in task.head_channels().items()}
    return targets, output


def test_ctdet_mse_heatmaps_use_msra_gaussians_and_the_mse_loss() -> None:
    cfg = ExperimentConfig()
    cfg.task.num_classes = 2
    cfg.task.options = {"hm_loss": "mse"}
    mse, focal = task_from_config(cfg), CtdetTask(2)
    assert mse.hm_loss == "mse"
    t_mse, out = _batch_and_output(mse)
    t_focal, _ = _batch_and_output(focal)
    assert torch.equal(t_mse["wh"], t_focal["wh"]) and torch.equal(t_mse["ind"], t_focal["ind"])
    assert (t_mse["hm"] == 1).sum() == (t_focal["hm"] == 1).sum() == 2
    assert (t_mse["hm"] > 0).sum() > (t_focal["hm"] > 0).sum()  # the wider msra kernel
    radius = int(t_focal["radius"][0, 0])
    expected = draw_msra_gaussian(np.zeros((64, 64), np.float32), (17, 16), radius)
    np.testing.assert_allclose(t_mse["hm"][0, 0].numpy(), expected, rtol=1e-6)
    _, terms = mse.loss([out], t_mse)
    assert torch.allclose(terms["hm"], F.mse_loss(out["hm"], t_mse["hm"]))
    _, focal_terms = focal.loss([out], t_focal)
    assert torch.allclose(focal_terms["hm"], focal_loss(out["hm"], t_focal["hm"]))
    raw = torch.tensor([[[[-0.5, 0.25, 1.5]]]])
    assert mse.activate({"hm": raw, "wh": raw, "reg": raw})["hm"].tolist() == [[[[0.0, 0.25, 1.0]]]]
    assert torch.allclose(focal.activate({"hm": raw, "wh": raw, "reg": raw})["hm"], torch.sigmoid(raw))


def test_size_loss_smooth_l1_is_the_originals_per_object_loss() -> None:
    pred = torch.zeros(1, 2, 4, 4)
    pred[0, :, 1, 2] = torch.tensor([3.0, 5.0])
    ind, mask, target = torch.tensor([[6, 0]]), torch.tensor([[1.0, 0.0]]), torch.tensor([[[4.0, 7.0], [9.0, 9.0]]])
    assert reg_l1_loss(pred, ind, mask, target).item() == pytest.approx(3 / 2.0001)  # SPEC 3: 1.49993
    # smooth-L1: 0.5 * 1^2 + (2 - 0.5) over one object
    assert reg_smooth_l1_loss(pred, ind, mask, target).item() == pytest.approx(2 / 1.0001)
    task = CtdetTask(2, size_loss="smooth_l1")
    batch, out = _batch_and_output(task)
    _, terms = task.loss([out], batch)
    _, l1_terms = CtdetTask(2).loss([out], batch)
    assert torch.allclose(terms["wh"], reg_smooth_l1_loss(out["wh"], batch["ind"], batch["reg_mask"], batch["wh"]))
    assert not torch.allclose(terms["wh"], l1_terms["wh"])
    assert torch.equal(terms["hm"], l1_terms["hm"]) and torch.equal(terms["reg"], l1_terms["reg"])


def test_multi_pose_takes_both_options() -> None:
    rng = np.random.default_rng(0)
    kps = np.concatenate([rng.uniform(10, 50, (2, 17, 2)), np.full((2, 17, 1), 2.0)], axis=2).astype(np.float32)
    sample = Sample(1, Path("x.png"), 64, 64, BOXES, np.zeros(2, np.int64), keypoints=kps)
    default, ablated = MultiPoseTask(), MultiPoseTask(hm_loss="mse", size_loss="smooth_l1")
    assert (default.hm_loss, default.size_loss) == ("focal", "l1")
    t_default, t_ablated = (collate([t.encode(sample, 64, 64)]) for t in (default, ablated))
    for name in ("hm", "hm_hp"):  # both heatmaps drawn with the msra kernel
        assert (t_ablated[name] > 0).sum() > (t_default[name] > 0).sum()
        assert torch.equal(t_ablated[name] == 1, t_default[name] == 1)
    g = torch.Generator().manual_seed(1)
    out = {name: torch.randn(1, n, 64, 64, generator=g) for name, n in default.head_channels().items()}
    _, terms = ablated.loss([out], t_ablated)
    assert torch.allclose(terms["hm"], F.mse_loss(out["hm"], t_ablated["hm"]))
    assert torch.allclose(terms["hm_hp"], F.mse_loss(out["hm_hp"], t_ablated["hm_hp"]))
    assert torch.allclose(terms["wh"], reg_smooth_l1_loss(out["wh"], t_ablated["ind"], t_ablated["reg_mask"],
                                                          t_ablated["wh"]))
    maps = ablated.activate(out)
    assert maps["hm"].min() >= 0 and maps["hm_hp"].max() <= 1
