"""Training: exact resume, checkpoints that carry their config, and overfitting real COCO images."""
from pathlib import Path

import pytest
import torch

from centernet.app.builders import eval_settings, load_checkpoint, model_from_config, open_source, task_from_config
from centernet.config import ExperimentConfig, ModelConfig, TrainConfig, DataConfig, TaskConfig
from centernet.data import make_synthetic_dataset
from centernet.data.sample import Subset
from centernet.engine.evaluator import evaluate
from centernet.engine.trainer import Trainer


def small_config(out_dir: Path, epochs: int, input_size=(64, 64)) -> ExperimentConfig:
    return ExperimentConfig(
        model=ModelConfig(arch="resdcn_18_half"),
        data=DataConfig(input_size=input_size, num_workers=0, random_crop=False),
        task=TaskConfig(num_classes=3),
        train=TrainConfig(epochs=epochs, batch_size=4, lr=1e-3, lr_steps=(1,), val_interval=0, seed=5,
                          out_dir=str(out_dir), device="cpu"),
    )


def _train(cfg: ExperimentConfig, source, resume: Path | None = None) -> Trainer:
    torch.manual_seed(cfg.train.seed)
    task = task_from_config(cfg)
    trainer = Trainer(cfg, model_from_config(cfg, task), task, source, progress=False)
    if resume is not None:
        trainer.resume(resume)
    trainer.fit()
    return trainer


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return make_synthetic_dataset(tmp_path_factory.mktemp("shapes"), num_train=12, num_val=4, image_size=(64, 64))


def test_resume_continues_exactly(shapes, tmp_path):
    source = open_source(str(shapes["train_ann"]))
    straight = _train(small_config(tmp_path / "a", epochs=2), source)
    _train(small_config(tmp_path / "b", epochs=1), source)
    resumed = _train(small_config(tmp_path / "b", epochs=2), source, resume=tmp_path / "b" / "last.pth")
    assert resumed.epoch == 2 and resumed.step == straight.step
    assert resumed.optimizer.param_groups[0]["lr"] == pytest.approx(straight.optimizer.param_groups[0]["lr"])
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    log = (tmp_path / "a" / "log.jsonl").read_text().splitlines()
    assert len(log) == 2 and '"hm"' in log[0]


def test_checkpoint_carries_its_config(shapes, tmp_path):
    source = open_source(str(shapes["train_ann"]))
    trainer = _train(small_config(tmp_path, epochs=1), source)
    cfg, model, task = load_checkpoint(tmp_path / "last.pth")
    assert cfg.model.arch == "resdcn_18_half" and task.num_classes == 3 and not model.training
    x = torch.randn(1, 3, 64, 64)
    trainer.model.eval()
    torch.testing.assert_close(model(x)[0]["hm"], trainer.model(x)[0]["hm"])


def test_checkpoint_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_checkpoint(tmp_path / "nope.pth")
    torch.save({"epoch": 1, "state_dict": {}}, tmp_path / "official.pth")
    with pytest.raises(ValueError, match="load_official_checkpoint"):
        load_checkpoint(tmp_path / "official.pth")


@pytest.mark.slow
def test_overfits_a_few_real_coco_images(shared_data, tmp_path):
    full = open_source(str(shared_data / "coco_mini/annotations/instances_train2017.json"))
    source = Subset(full, [i for i, s in enumerate(full.samples) if 1 <= len(s) <= 6][:4])
    cfg = small_config(tmp_path, epochs=60, input_size=(192, 192))
    cfg.task.num_classes = len(full.class_names)
    cfg.data.flip_prob, cfg.data.color_aug, cfg.data.scale_jitter, cfg.data.shift_jitter = 0.0, False, 0.0, 0.0
    cfg.train.lr_steps = (50,)
    settings = eval_settings(cfg)
    task = task_from_config(cfg)
    torch.manual_seed(0)
    untrained = evaluate(model_from_config(cfg, task), task, source, settings, progress=False).metrics
    trainer = _train(cfg, source)
    trained = evaluate(trainer.model, task, source, settings, progress=False).metrics
    print(f"train-set AP50 untrained {untrained['AP50']:.3f} -> trained {trained['AP50']:.3f}")
    assert trained["AP50"] > untrained["AP50"] + 0.3
