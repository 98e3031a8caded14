"""Multi-process training on the CPU: 2 processes (gloo) run the real Trainer on a tiny synthetic set.

Checks that both ranks end with identical weights (parameters and batch-norm statistics), that only rank 0
writes checkpoints and logs, and that sharded evaluation gathers every image (metrics equal to a
single-process evaluation).
"""
from __future__ import annotations

import faulthandler
import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from centernet.app.builders import (
    eval_settings, load_checkpoint, model_from_config, open_source, set_classes, task_from_config,
)
from centernet.config import ExperimentConfig
from centernet.data import make_synthetic_dataset
from centernet.data.synthetic_kitti import make_synthetic_kitti
from centernet.data.synthetic_pose import make_synthetic_pose_dataset
from centernet.presets import get_preset
from centernet.engine.evaluator import evaluate

WORLD = 2
EPOCHS = 2
# task -> (preset, arch, input (w, h)): every task, and every model family (ResNet, DLA with and without DCN,
# Hourglass), at tiny sizes. The original DLA's unused projections once stopped DDP at the second step.
CASES = {
    "ctdet": ("ctdet_cpu_small", "resdcn_18_tiny", (64, 64)),  # ResNet-18 at 1/8 width + the DCN neck
    "multi_pose": ("multi_pose_cpu_small", "dla_tiny", (64, 64)),
    "ddd": ("ddd_cpu_small", "dla_tiny_conv", (128, 64)),
    "cornernet": ("cornernet_cpu_small", "hourglass_tiny", (64, 64)),
}


def make_data(task: str, root: Path) -> dict[str, str]:
    """A tiny synthetic training and validation set for ``task``: {"train": spec, "val": spec}."""
    if task == "multi_pose":
        paths = make_synthetic_pose_dataset(root, num_train=8, num_val=3, image_size=(64, 64), seed=3)
    elif task == "ddd":
        paths = make_synthetic_kitti(root, num_train=8, num_val=3, size=(128, 64), seed=3)
        return {"train": str(paths["train_split"]), "val": str(paths["val_split"])}
    else:
        num_train = 24 if task == "ctdet" else 8
        paths = make_synthetic_dataset(root, num_train=num_train, num_val=5, image_size=(64, 64), num_classes=2,
                                       seed=3)
    return {"train": str(paths["train_ann"]), "val": str(paths["val_ann"])}


def tiny_config(task: str, data: dict[str, str], out_dir: Path) -> ExperimentConfig:
    preset, arch, size = CASES[task]
    cfg = get_preset(preset)
    cfg.model.arch, cfg.model.pretrained = arch, None
    cfg.data.train, cfg.data.val = data["train"], data["val"]
    cfg.data.input_size = size
    cfg.data.num_workers = 0
    cfg.data.color_aug = False
    t = cfg.train
    t.epochs, t.batch_size, t.lr, t.lr_steps = EPOCHS, 4, 1e-3, (100,)
    t.max_steps_per_epoch, t.val_interval, t.seed = 3, EPOCHS, 0
    t.device, t.out_dir, t.sync_bn = "cpu", str(out_dir), True  # sync_bn: warned about and ignored on CPU
    t.flops, t.reports = False, False
    return cfg


def _worker(rank: int, world: int, port: int, root: str, task_name: str) -> None:
    """One training process (spawned): torchrun's environment, the real Trainer, then a sharded oracle eval."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    faulthandler.enable(all_threads=True)  # a native abort prints every thread's Python stack
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
    cfg = tiny_config(task_name, data, root_path / "run")
    train_source = open_source(cfg.data.train, task=cfg.task.name)
    val_source = open_source(cfg.data.val, task=cfg.task.name)
    set_classes(cfg, train_source)
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


def run_ddp(task: str, root: Path) -> Path:
    (root / "data.json").write_text(json.dumps(make_data(task, root / "data")))
    mp.spawn(_worker, args=(WORLD, _free_port(), str(root), task), nprocs=WORLD, join=True)
    return root


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory) -> Path:
    return run_ddp("ctdet", tmp_path_factory.mktemp("ddp"))


def assert_ranks_agree(root: Path) -> None:
    w0 = torch.load(root / "weights_rank0.pt")
    w1 = torch.load(root / "weights_rank1.pt")
    assert w0.keys() == w1.keys()
    for name in w0:
        assert torch.equal(w0[name], w1[name]), name  # parameters by DDP, BN statistics by the broadcast


@pytest.mark.slow
@pytest.mark.parametrize("task", [t for t in CASES if t != "ctdet"])
def test_every_task_and_model_family_trains_on_two_processes(task: str, tmp_path: Path) -> None:
    root = run_ddp(task, tmp_path)
    assert_ranks_agree(root)
    results = [json.loads((root / f"result_rank{r}.json").read_text()) for r in range(WORLD)]
    # both ranks hold the gathered metrics of the whole validation set (training losses are each rank's own)
    assert results[0]["oracle"] == results[1]["oracle"]
    validation = [{k: v for k, v in r["history"][-1].items() if k.startswith("val_")} for r in results]
    assert validation[0] and validation[0] == validation[1]
    assert [h["epoch"] for h in results[0]["history"]] == list(range(1, EPOCHS + 1))
    assert all(math.isfinite(h["loss"]) for r in results for h in r["history"])


def test_ranks_end_with_identical_weights(ddp_run):
    assert_ranks_agree(ddp_run)
    w0 = torch.load(ddp_run / "weights_rank0.pt")
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
    val_source = open_source(data["val"])
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


@pytest.mark.slow
def test_two_nodes_through_torchrun(tmp_path: Path) -> None:
    """Two torchrun launches of one process each, as on two machines (here both on 127.0.0.1), train the demo's
    DLA model through the command line to the same weights."""
    data = make_data("ctdet", tmp_path / "data")
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    launches = []
    for node in range(2):
        out = tmp_path / f"node{node}"
        launches.append(subprocess.Popen(
            [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node-rank", str(node),
             "--nproc-per-node", "1", "--master-addr", "127.0.0.1", "--master-port", str(port),
             "-m", "centernet.cli", "train", "--preset", "ctdet_cpu_small", "--train", data["train"],
             "--epochs", "1", "--batch-size", "4", "--out", str(out), "--device", "cpu", "--workers", "0",
             "--set", "data.input_size=[64,64]", "train.max_steps_per_epoch=2", "train.flops=false",
             "train.reports=false", "data.verify=false"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path))
    logs = [p.communicate(timeout=300)[0] for p in launches]
    assert [p.returncode for p in launches] == [0, 0], "\n".join(logs)[-4000:]
    # the closing summary comes from global rank 0 only (the process group is gone when it is printed)
    assert "run folder" in logs[0] and "run folder" not in logs[1], logs[1][-2000:]
    # only the node of global rank 0 writes the run; its weights are every rank's (DDP keeps them equal)
    assert (tmp_path / "node0" / "last.pth").is_file() and not (tmp_path / "node1").exists()
    _, model, _ = load_checkpoint(tmp_path / "node0" / "last.pth")
    assert all(torch.isfinite(p).all() for p in model.parameters())
