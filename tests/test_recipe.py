"""Training recipe options (off in the paper presets): per-step schedules with warm-up, the moving average of the
weights, and TTFNet's GIoU box regression as a ctdet option."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from centernet.app.builders import load_checkpoint, model_from_config, open_source, task_from_config
from centernet.config import DataConfig, ExperimentConfig, ModelConfig, TaskConfig, TrainConfig
from centernet.data import make_synthetic_dataset
from centernet.data.sample import Sample
from centernet.engine.analyze import analysis_rows
from centernet.engine.recipe import ModelEma, lr_at, make_optimizer, per_step
from centernet.engine.rundir import validate_train_config
from centernet.engine.trainer import Trainer
from centernet.ops.losses import giou_loss
from centernet.presets import PRESETS, get_preset
from centernet.tasks import CtdetTask
from centernet.tasks.base import flip_lr
from centernet.tasks.ctdet import LTRB_INIT_BIAS, LTRB_SCALE, activate_ltrb


# ------------------------------------------------------------------------------------------ schedules
def test_lr_at_by_hand():
    cosine = TrainConfig(epochs=10, lr=1.0, lr_factor=0.1, schedule="cosine", warmup_epochs=2)
    assert lr_at(cosine, 1.0) == pytest.approx(0.5)  # half-way through the warm-up
    assert lr_at(cosine, 2.0) == pytest.approx(1.0)
    assert lr_at(cosine, 6.0) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi / 2)))  # 0.55
    assert lr_at(cosine, 10.0) == pytest.approx(0.1)
    step = TrainConfig(epochs=10, lr=1.0, lr_factor=0.1, lr_steps=(3, 6), warmup_epochs=1)
    assert lr_at(step, 0.25) == pytest.approx(0.25)
    assert lr_at(step, 3.0) == pytest.approx(1.0)  # the last step of epoch 3 (index 2)
    assert lr_at(step, 3.5) == pytest.approx(0.1)  # epoch 4 (index 3): after the first drop
    assert lr_at(step, 7.0) == pytest.approx(0.01)
    assert not per_step(TrainConfig()) and per_step(step) and per_step(TrainConfig(schedule="cosine"))


def test_paper_presets_keep_the_paper_recipe():
    for name in PRESETS.names() if hasattr(PRESETS, "names") else list(PRESETS):
        cfg = get_preset(name)
        if "_cpu_" in name:
            continue
        t = cfg.train
        assert (t.schedule, t.warmup_epochs, t.ema) == ("step", 0.0, 0.0), name
        assert cfg.task.options.get("size_loss", "l1") == "l1", name
        assert (cfg.data.mosaic, cfg.data.mixup, cfg.data.multiscale) == (0.0, 0.0, None), name


def test_the_photos_preset_is_the_small_data_recipe(capsys):
    """ctdet_cpu_photos: the demo's model with the options that won on raccoon_voc (docs/performance.md)."""
    from centernet.cli import main

    photos, small = get_preset("ctdet_cpu_photos"), get_preset("ctdet_cpu_small")
    assert photos.model.arch == small.model.arch and photos.data.input_size == (256, 256)
    t = photos.train
    assert (t.epochs, t.schedule, t.warmup_epochs, t.ema) == (120, "cosine", 2.0, 0.99)
    assert photos.task.options == {"size_loss": "giou"} and small.task.options == {}
    assert (photos.data.mosaic, small.data.mosaic) == (0.5, 0.0)
    assert main(["info", "ctdet_cpu_photos"]) == 0
    out = capsys.readouterr().out
    assert "Adam, lr 0.002 (cosine to x0.1, 2 warm-up epochs, EMA 0.99)" in out and ", mosaic 0.5" in out


# ------------------------------------------------------------------------------------------ optimizer
def test_adamw_decays_weights_apart_from_the_gradient_and_spares_biases():
    model = nn.Sequential(nn.Conv2d(1, 1, 1), nn.BatchNorm2d(1))
    with torch.no_grad():
        model[0].weight.fill_(2.0)
        model[0].bias.fill_(2.0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    t = TrainConfig(lr=0.1, optimizer="adamw", weight_decay=0.5)
    optimizer = make_optimizer(model, t)
    (model(torch.zeros(1, 1, 2, 2)) * 0).sum().backward()  # zero gradients: only the decay moves anything
    optimizer.step()
    assert model[0].weight.item() == pytest.approx(2.0 * (1 - 0.1 * 0.5))
    for name in ("0.bias", "1.weight", "1.bias"):
        assert torch.equal(model.state_dict()[name], before[name]), name
    # Adam's weight decay is an L2 term of the gradient: Adam's normalised step of lr moves every parameter
    adam = make_optimizer(model, TrainConfig(lr=0.1, optimizer="adam", weight_decay=0.5))
    adam.step()
    assert model[0].bias.item() == pytest.approx(2.0 - 0.1, rel=1e-4)
    cfg = get_preset("ctdet_cpu_photos")
    cfg.data.train, cfg.train.optimizer = "x", "sgd"
    with pytest.raises(ValueError, match="train.optimizer must be one of"):
        validate_train_config(cfg)

# ------------------------------------------------------------------------------------------ EMA
def test_ema_update_by_hand():
    model = nn.Sequential(nn.Linear(1, 1, bias=False), nn.BatchNorm1d(1))
    with torch.no_grad():
        model[0].weight.fill_(0.0)
    ema = ModelEma(model, decay=0.5)
    with torch.no_grad():
        model[0].weight.fill_(1.0)
        model[1].num_batches_tracked.fill_(7)
    ema.update(model)  # update 0: decay min(0.5, 1 / 10) = 0.1
    assert ema.module[0].weight.item() == pytest.approx(0.9)
    assert ema.module[1].num_batches_tracked.item() == 7  # integers are copied
    ema.update(model)  # update 1: decay min(0.5, 2 / 11)
    d = 2 / 11
    assert ema.module[0].weight.item() == pytest.approx(d * 0.9 + (1 - d))
    for _ in range(20):
        ema.update(model)
    assert ema.rate() == 0.5 and ema.updates == 22
    assert not any(p.requires_grad for p in ema.module.parameters())


# ------------------------------------------------------------------------------------------ GIoU boxes
def test_giou_loss_by_hand():
    pred = torch.zeros(1, 4, 1, 2)
    target = torch.zeros(1, 4, 1, 2)
    pred[0, :, 0, 0] = torch.tensor([0.0, 0, 2, 2])
    target[0, :, 0, 0] = torch.tensor([1.0, 1, 3, 3])  # intersection 1, union 7, enclosing 9
    pred[0, :, 0, 1] = target[0, :, 0, 1] = torch.tensor([0.0, 0, 4, 2])  # identical: GIoU 1
    weight = torch.tensor([[[1.0, 3.0]]])
    first = 1 - (1 / 7 - 2 / 9)
    assert giou_loss(pred, target, weight).item() == pytest.approx(first / (4 + 1e-4), rel=1e-6)
    assert giou_loss(pred, target, torch.zeros(1, 1, 2)).item() == 0.0


def test_ltrb_targets_decode_to_the_ground_truth():
    task = CtdetTask(num_classes=2, size_loss="giou")
    assert set(task.head_channels()) == {"hm", "ltrb"} and task.default_weights()["ltrb"] == 5.0
    boxes = np.array([[2.0, 3.0, 20.5, 13.0], [10.25, 8.0, 14.0, 30.0]], np.float32)
    sample = Sample(1, Path("x.jpg"), 32, 32, boxes, np.array([0, 1]))
    target = task.encode(sample, 32, 32)
    assert target["box_weight"].sum() == pytest.approx(np.log1p(18.5 * 10) + np.log1p(3.75 * 22), rel=1e-5)
    batch = {k: torch.from_numpy(v)[None] for k, v in target.items()}
    rows = task.decode(task.oracle_maps(batch))[0]
    got = rows[:2].numpy()
    got = got[np.argsort(got[:, 5])]
    np.testing.assert_allclose(got[:, :4], boxes, atol=1e-5)
    np.testing.assert_array_equal(got[:, 4], [1.0, 1.0])
    assert [name for name, _ in analysis_rows(task)] == ["none", "size (ltrb)", "heatmap (hm)", "hm + ltrb"]
    # the flip test: the mirrored image's distances, mirrored back with left and right swapped
    ltrb, hm = torch.rand(1, 4, 8, 8), torch.rand(1, 2, 8, 8)
    merged = task.merge_flip({"hm": torch.cat([hm, flip_lr(hm)]), "ltrb": torch.cat([ltrb, flip_lr(ltrb)[:, [2, 1, 0, 3]]])})
    torch.testing.assert_close(merged["ltrb"], ltrb)
    torch.testing.assert_close(merged["hm"], hm)
    # the loss of the targets themselves is 0 (a head output whose distances are the oracle's)
    raw = {"hm": torch.logit(batch["hm"].clamp(1e-4, 1 - 1e-4)), "ltrb": task.oracle_maps(batch)["ltrb"] / 4.0}
    _, terms = task.loss([raw], batch)
    assert terms["ltrb"].item() == pytest.approx(0.0, abs=1e-5)


def test_every_side_of_a_new_ltrb_head_learns_from_the_first_step(tmp_path):
    """A new "ltrb" head predicts a real box at every pixel (LTRB_INIT_BIAS), so the GIoU loss moves each of
    the four distances from the first step. From a point-sized start (TTFNet's bias of 0) the GIoU gradient
    all but vanishes, and a side whose relu died before it learned stayed at 0 for good."""
    cfg = recipe_config(tmp_path, 1, size_loss="giou")
    torch.manual_seed(0)
    task = task_from_config(cfg)
    model = model_from_config(cfg, task)
    box = np.array([[4.0, 10.0, 28.0, 14.0]], np.float32)  # output pixels: 24 wide, 4 high
    sample = Sample(1, Path("x.jpg"), 32, 32, box, np.array([1]))
    batch = {k: torch.from_numpy(v)[None] for k, v in task.encode(sample, 32, 32).items()}
    outputs = model(torch.randn(1, 3, 128, 128))
    distances = activate_ltrb(outputs[-1]["ltrb"])  # [1, 4, 32, 32] output pixels
    start = LTRB_SCALE * LTRB_INIT_BIAS
    assert distances.min().item() > 0.9 * start and distances.max().item() < 1.1 * start
    total, _ = task.loss(outputs, batch)
    total.backward()
    grad = model.heads[-1]["ltrb"][-1].bias.grad  # [4]: left, top, right, bottom
    # every pixel of the box's central area starts nearer than its sides in x (grow) and farther in y (shrink)
    assert (grad[[0, 2]] < -1e-2).all() and (grad[[1, 3]] > 1e-2).all(), grad


# ------------------------------------------------------------------------------------------ training
@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return make_synthetic_dataset(tmp_path_factory.mktemp("recipe"), num_train=12, num_val=4, image_size=(64, 64))


def recipe_config(out_dir: Path, epochs: int, **task_options) -> ExperimentConfig:
    return ExperimentConfig(
        model=ModelConfig(arch="resdcn_18_half"),
        data=DataConfig(input_size=(64, 64), num_workers=0, random_crop=False),
        task=TaskConfig(num_classes=3, options=dict(task_options)),
        train=TrainConfig(epochs=epochs, batch_size=4, lr=1e-3, val_interval=0, seed=5, out_dir=str(out_dir),
                          device="cpu", schedule="cosine", warmup_epochs=0.5, ema=0.9, reports=False),
    )


class StopAfterEpoch(Exception):
    pass


def _trainer(cfg: ExperimentConfig, source, val=None) -> Trainer:
    torch.manual_seed(cfg.train.seed)
    task = task_from_config(cfg)
    return Trainer(cfg, model_from_config(cfg, task), task, source, val, progress=False)


def test_ema_and_schedule_resume_exactly(shapes, tmp_path):
    source = open_source(str(shapes["train_ann"]))
    straight = _trainer(recipe_config(tmp_path / "a", 2), source)
    straight.fit()
    stopped = _trainer(recipe_config(tmp_path / "b", 2), source)
    save = stopped.save

    def save_then_stop(name):  # a run that ends after its first epoch's last.pth
        path = save(name)
        if name == "last.pth":
            raise StopAfterEpoch
        return path

    stopped.save = save_then_stop
    with pytest.raises(StopAfterEpoch):
        stopped.fit()
    resumed = _trainer(recipe_config(tmp_path / "b", 2), source)
    resumed.resume(tmp_path / "b" / "last.pth")
    resumed.fit()
    assert resumed.step == straight.step and resumed.ema.updates == straight.ema.updates == straight.step
    for a, b in ((straight.model, resumed.model), (straight.ema.module, resumed.ema.module)):
        for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
            torch.testing.assert_close(x, y, rtol=0, atol=0, msg=name)
    lrs = [r["lr"] for r in straight.history]
    assert lrs[0] == pytest.approx(1e-3 * (1 / 3) / 0.5)  # 3 steps an epoch: the first ends at 1/3 of a 0.5 warm-up
    # the checkpoint's model is the average; the raw weights travel beside it
    payload = torch.load(tmp_path / "a" / "last.pth", weights_only=True)
    for name, value in straight.ema.module.state_dict().items():
        torch.testing.assert_close(payload["model"][name], value, rtol=0, atol=0)
        torch.testing.assert_close(payload["raw_model"][name], straight.model.state_dict()[name], rtol=0, atol=0)
    _, model, _ = load_checkpoint(tmp_path / "a" / "last.pth")
    torch.testing.assert_close(model.state_dict(), straight.ema.module.state_dict())


def test_giou_option_trains_and_evaluates(shapes, tmp_path):
    source = open_source(str(shapes["train_ann"]))
    val = open_source(str(shapes["val_ann"]))
    cfg = recipe_config(tmp_path, 1, size_loss="giou")
    cfg.train.val_interval = 1
    trainer = _trainer(cfg, source, val)
    result = trainer.fit()
    assert set(trainer.history[0]) >= {"hm", "ltrb", "val_AP"} and "wh" not in trainer.history[0]
    assert result["best_AP"] is not None
    _, model, task = load_checkpoint(tmp_path / "best.pth")
    assert task.ltrb and model(torch.zeros(1, 3, 64, 64))[0]["ltrb"].shape[1] == 4
