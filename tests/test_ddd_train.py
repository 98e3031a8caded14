"""A small ddd model learns from scratch on the CPU: on synthetic 3D boxes its depth error at the objects'
centres falls and its AP rises well above an untrained model's; on the 3 real kitti_mini frames it overfits
the 2D boxes and their orientation."""
from __future__ import annotations

import pytest
import torch

from centernet.app.builders import eval_settings, model_from_config, open_source, set_classes, task_from_config
from centernet.data.pipeline import TrainDataset, collate
from centernet.data.synthetic_kitti import make_synthetic_kitti
from centernet.engine.evaluator import evaluate
from centernet.engine.trainer import Trainer
from centernet.ops.decode import gather_feat
from centernet.presets import get_preset
from centernet.tasks.ddd_core import decode_alpha

pytestmark = pytest.mark.slow


def small_config(source, input_size: tuple[int, int], steps: int, out_dir, batch: int, lr: float = 4e-3):
    """ddd_cpu_small on the fastest small arch, ``steps`` single-batch epochs without augmentation."""
    cfg = get_preset("ddd_cpu_small")
    cfg.model.arch = "resdcn_18_tiny"
    cfg.data.input_size, cfg.data.num_workers = input_size, 0
    cfg.train.epochs, cfg.train.batch_size, cfg.train.lr = steps, batch, lr
    cfg.train.lr_steps, cfg.train.val_interval = (int(steps * 0.8),), 0
    cfg.train.out_dir, cfg.train.device = str(out_dir), "cpu"
    set_classes(cfg, source)
    return cfg


@torch.no_grad()
def centre_errors(model, task, source, cfg) -> tuple[float, float]:
    """(median |depth - z| metres, median |alpha error| radians) of the model's maps read at every
    labelled object's centre (the test geometry, no augmentation): no detection needed."""
    model.eval()
    ds = TrainDataset(source, task, cfg.data.input_size, cfg.data.down_ratio, cfg.data.mean, cfg.data.std,
                      augment=False)
    batch = collate([ds[i] for i in range(len(ds))])
    maps = task.activate(model(batch["input"])[-1])
    mask = batch["reg_mask"] > 0  # [B, M]
    depth = gather_feat(maps["dep"], batch["ind"])[..., 0][mask]
    alpha = decode_alpha(gather_feat(maps["rot"], batch["ind"]))[mask]
    true_alpha = decode_alpha(gather_feat(task.oracle_maps(batch)["rot"], batch["ind"]))[mask]  # the labels'
    dz = (depth - batch["dep"][..., 0][mask]).abs()
    da = torch.remainder(alpha - true_alpha + torch.pi, 2 * torch.pi) - torch.pi
    return float(dz.median()), float(da.abs().median())


def train(cfg, task, source, seed: int = 0):
    torch.manual_seed(seed)
    model = model_from_config(cfg, task)
    Trainer(cfg, model, task, source, None, progress=False).fit()
    return model


def test_synthetic_3d_training_learns_depth_and_orientation(tmp_path):
    paths = make_synthetic_kitti(tmp_path / "data", num_train=6, num_val=0, size=(320, 96), seed=11,
                                 depth_range=(5.0, 30.0))
    source = open_source(str(paths["train_split"]), task="ddd")
    cfg = small_config(source, (320, 96), steps=80, out_dir=tmp_path / "run", batch=6)
    task = task_from_config(cfg)
    torch.manual_seed(0)
    before = model_from_config(cfg, task)
    dz0, da0 = centre_errors(before, task, source, cfg)
    model = train(cfg, task, source)
    dz, da = centre_errors(model, task, source, cfg)
    assert dz < 0.1 * dz0 and dz < 2.0  # metres: about 19 untrained (1 m predicted for everything), 0.2 at 100 steps
    assert da < 0.4 * da0  # radians: orientation from chance (about 1) to about 0.13 at 100 steps
    settings = eval_settings(cfg)
    trained_ap = evaluate(model, task, source, settings, progress=False).metrics["AP50"]
    untrained_ap = evaluate(before, task, source, settings, progress=False).metrics["AP50"]
    assert trained_ap > untrained_ap + 0.1  # 2D detection learns slower than depth (about 0.25 at 100 steps)


def kitti_mini_overfit(kitti_mini, out_dir, seed: int) -> tuple[dict, dict, dict]:
    """Metrics on the 3 real kitti_mini frames before and after 120 steps of training on them, and those of
    the labels themselves (the ceiling)."""
    from centernet.evaluation.kitti_scoring import KittiScorer, label_results

    source = open_source(str(kitti_mini), task="ddd")
    # 320x96 (a quarter of KITTI's input): resdcn_18_tiny's backward on the pipeline's channels-last inputs
    # corrupts the heap from 640x192 up (oneDNN; not with torch.backends.mkldnn off)
    cfg = small_config(source, (320, 96), steps=120, out_dir=out_dir, batch=3)
    cfg.train.seed = seed
    task = task_from_config(cfg)
    torch.manual_seed(seed)
    before = evaluate(model_from_config(cfg, task), task, source, eval_settings(cfg), progress=False).metrics
    model = train(cfg, task, source, seed)
    after = evaluate(model, task, source, eval_settings(cfg), progress=False).metrics
    ceiling = KittiScorer(source)
    ceiling.add(label_results(source))
    return before, after, ceiling.result()


def test_kitti_mini_overfit_raises_2d_ap_and_aos(shared_data, tmp_path):
    """Measured over seeds 0-4 with OpenCV 4 and 5 (benchmarks/bench_test_margins.py, figures in
    docs/testing.md): every seed reaches the ceiling from 0, and the AP50 rises by 0.8 or more."""
    pytest.importorskip("centernet.evaluation.kitti")
    before, after, best = kitti_mini_overfit(shared_data / "kitti_mini", tmp_path / "run", seed=0)
    # 3 frames hold one Car and one Pedestrian of moderate difficulty: the devkit's AP of the labels
    # themselves is 1/11 there (one recall sample each), so that is the ceiling
    for metric in ("kitti_bbox_moderate", "kitti_aos_moderate"):
        assert before[metric] < 0.2 * best[metric] and after[metric] > 0.8 * best[metric], (metric, before, after)
    assert after["AP50"] > before["AP50"] + 0.5  # COCO box AP of the same results
