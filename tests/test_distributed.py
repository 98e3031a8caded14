"""Multi-process training on the CPU: 2 processes (gloo) run the real Trainer on a tiny synthetic set.

Checks that both ranks end with identical weights (parameters and batch-norm statistics), that only rank 0
writes checkpoints and logs, and that sharded evaluation gathers every image (metrics equal to a
single-process evaluation).
"""
from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from centernet.builders import eval_settings, load_checkpoint, model_from_config, open_source, task_from_config
from centernet.config import ExperimentConfig
from centernet.data import make_synthetic_dataset
from centernet.engine.evaluator import evaluate

TINY_ARCH = "resdcn_18_tiny"  # ResNet-18 at 1/8 width + the DCN (grid_sample) up-sampling neck
WORLD = 2
EPOCHS = 2


def tiny_config(data: dict[str, Path], out_dir: Path) -> ExperimentConfig:
    cfg = ExperimentConfig()
    cfg.model.arch = TINY_ARCH
    cfg.data.train, cfg.data.val = str(data["train_ann"]), str(data["val_ann"])
    cfg.data.input_size = (64, 64)
    cfg.data.num_workers = 0
    cfg.data.color_aug = False
    t = cfg.train
    t.epochs, t.batch_size, t.lr, t.lr_steps = EPOCHS, 4, 1e-3, (100,)
    t.max_steps_per_epoch, t.val_interval, t.seed = 3, EPOCHS, 0
    t.device, t.out_dir, t.sync_bn = "cpu", str(out_dir), True  # sync_bn: warned about and ignored on CPU
    return cfg


def _worker(rank: int, world: int, port: int, root: str) -> None:
    """One training process (spawned): torchrun's environment, the real Trainer, then a sharded oracle eval."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    import centernet.engine.trainer as trainer_module
    from centernet.engine import distributed
    from centernet.engine.checkpoint import unwrap

    root_path = Path(root)
    real_save = trainer_module.save_checkpoint

    def recording_save(path, *args, **kwargs):  # who writes checkpoints?
        (root_path / f"saved_by_rank{rank}").touch()
        return real_save(path, *args, **kwargs)

    trainer_module.save_checkpoint = recording_save
    assert distributed.init_from_env("cpu") and distributed.world_size() == world
    data = json.loads((root_path / "data.json").read_text())
    cfg = tiny_config({k: Path(v) for k, v in data.items()}, root_path / "run")
    train_source, val_source = open_source(cfg.data.train), open_source(cfg.data.val)
    cfg.task.num_classes = len(train_source.class_names)
    task = task_from_config(cfg)
    trainer = trainer_module.Trainer(cfg, model_from_config(cfg, task), task, train_source, val_source,
                                     progress=False)
    summary = trainer.fit()
    state = {k: v.detach().clone() for k, v in unwrap(trainer.model).state_dict().items()}
    torch.save(state, root_path / f"weights_rank{rank}.pt")
    oracle = eval_settings(cfg, oracle=frozenset(task.heads()))
    metrics, _ = distributed.evaluate_sharded(None, task, val_source, oracle, "cpu", progress=False)
    (root_path / f"result_rank{rank}.json").write_text(json.dumps(
        {"oracle": metrics, "history": summary["history"]}))
    distributed.cleanup()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ddp")
    data = make_synthetic_dataset(root / "data", num_train=24, num_val=5, image_size=(64, 64), num_classes=2,
                                  seed=3)
    (root / "data.json").write_text(json.dumps({k: str(v) for k, v in data.items()}))
    mp.spawn(_worker, args=(WORLD, _free_port(), str(root)), nprocs=WORLD, join=True)
    return root


def test_ranks_end_with_identical_weights(ddp_run):
    w0 = torch.load(ddp_run / "weights_rank0.pt")
    w1 = torch.load(ddp_run / "weights_rank1.pt")
    assert w0.keys() == w1.keys()
    for name in w0:
        assert torch.equal(w0[name], w1[name]), name  # parameters by DDP, BN statistics by the broadcast
    _, saved, _ = load_checkpoint(ddp_run / "run" / "last.pth")
    for name, value in saved.state_dict().items():
        assert torch.equal(value, w0[name]), name


def test_only_rank0_writes(ddp_run):
    run = ddp_run / "run"
    assert (ddp_run / "saved_by_rank0").exists() and not (ddp_run / "saved_by_rank1").exists()
    assert (run / "last.pth").is_file() and (run / "config.json").is_file()
    lines = (run / "log.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == list(range(1, EPOCHS + 1))  # one writer


def test_sharded_evaluation_equals_single_process(ddp_run):
    data = json.loads((ddp_run / "data.json").read_text())
    cfg, model, task = load_checkpoint(ddp_run / "run" / "last.pth")
    val_source = open_source(data["val_ann"])
    results = [json.loads((ddp_run / f"result_rank{r}.json").read_text()) for r in range(WORLD)]
    # the oracle scores every image perfectly only if both shards' detections were gathered
    single = evaluate(None, task, val_source, eval_settings(cfg, oracle=frozenset(task.heads())),
                      progress=False).metrics
    assert single["AP50"] > 0.9
    for r in results:
        assert r["oracle"] == pytest.approx(single)
    # the trainer's validation (sharded) equals a single-process evaluation of the saved model
    alone = evaluate(model, task, val_source, eval_settings(cfg), progress=False).metrics
    for r in results:
        last = r["history"][-1]
        assert {k: last[f"val_{k}"] for k in alone} == pytest.approx(alone, abs=1e-9)
