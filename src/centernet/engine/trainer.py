"""The one trainer: Adam with the step schedule, AMP on CUDA, DDP under torchrun, resumable checkpoints."""
from __future__ import annotations

import json
import math
import time
import warnings
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler, Sampler
from tqdm import tqdm

from ..builders import eval_settings, train_dataset
from ..config import ExperimentConfig
from ..data.pipeline import TrainDataset, collate
from ..data.sample import DetectionSource
from ..tasks.base import Task
from . import distributed as dist_utils
from .checkpoint import read_checkpoint, save_checkpoint, unwrap
from .evaluator import evaluate


POSTFIX_EVERY = 10  # steps between progress-bar loss updates (each one a host sync)


def _one_thread(worker_id: int) -> None:
    """DataLoader worker start: OpenCV on one thread too (torch already is); workers are the parallelism."""
    cv2.setNumThreads(1)


class _EpochSampler(Sampler):
    """``(epoch, index)`` pairs of the wrapped sampler's indices for the current ``epoch``."""

    def __init__(self, indices: Sampler) -> None:
        self.indices, self.epoch = indices, 0

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return ((self.epoch, index) for index in self.indices)


class _EpochItems(Dataset):
    """``dataset[(epoch, index)]``: the item of ``index`` drawn with the random stream of ``epoch``."""

    def __init__(self, dataset: TrainDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, np.ndarray]:
        epoch, index = key
        self.dataset.set_epoch(epoch)
        return self.dataset[index]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class Trainer:
    """Trains ``model`` for ``task`` on ``train_source``; evaluates on ``val_source`` every
    ``cfg.train.val_interval`` epochs, keeping ``last.pth`` and ``best.pth`` (by AP) in ``out_dir``."""

    def __init__(self, cfg: ExperimentConfig, model: nn.Module, task: Task, train_source: DetectionSource,
                 val_source: DetectionSource | None = None, progress: bool = True) -> None:
        self.cfg, self.task, self.val_source = cfg, task, val_source
        t = cfg.train
        self.rank, self.world = dist_utils.rank(), dist_utils.world_size()
        self.device = dist_utils.device_for_rank(resolve_device(t.device))
        self.out_dir = Path(t.out_dir)
        self.progress = progress and self.rank == 0
        torch.manual_seed(t.seed)
        model = model.to(self.device)
        if self.world > 1:
            if t.sync_bn and self.device.type == "cpu":
                warnings.warn("train.sync_bn ignored: SyncBatchNorm needs CUDA (each process keeps its own "
                              "batch statistics; rank 0's running statistics are shared after every epoch)")
            elif t.sync_bn:
                model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            model = nn.parallel.DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.model = model
        self.optimizer = torch.optim.Adam(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(self.optimizer, list(t.lr_steps), t.lr_factor)
        self.amp = t.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.dataset = train_dataset(cfg, train_source, task)
        if t.batch_size % self.world:
            raise ValueError(f"batch size {t.batch_size} is not divisible by {self.world} processes")
        self.per_rank_batch = t.batch_size // self.world
        self.epoch, self.step, self.best = 0, 0, -math.inf
        self._batches: DataLoader | None = None
        self.history: list[dict[str, Any]] = []

    # -- data --------------------------------------------------------------------------------------------
    def _loader(self, epoch: int) -> DataLoader:
        """The batches of ``epoch``. One DataLoader serves every epoch, so its workers start once (forked
        from a large process) and persist: the sampler is re-seeded per epoch, and each index carries the
        epoch to the workers' copies of the dataset (``set_epoch`` here would not reach them)."""
        if self._batches is None:
            if self.world > 1:
                sampler = DistributedSampler(self.dataset, self.world, self.rank, shuffle=True,
                                             seed=self.cfg.train.seed, drop_last=True)
            else:
                sampler = RandomSampler(self.dataset, generator=torch.Generator())
            workers = self.cfg.data.num_workers
            self._batches = DataLoader(
                _EpochItems(self.dataset), batch_size=self.per_rank_batch, sampler=_EpochSampler(sampler),
                collate_fn=collate, num_workers=workers, drop_last=len(self.dataset) > self.per_rank_batch,
                pin_memory=self.device.type == "cuda", persistent_workers=workers > 0, worker_init_fn=_one_thread)
        sampler = self._batches.sampler
        sampler.epoch = epoch
        if isinstance(sampler.indices, DistributedSampler):
            sampler.indices.set_epoch(epoch)
        else:
            sampler.indices.generator.manual_seed(self.cfg.train.seed + epoch)  # the same order as before
        self.dataset.set_epoch(epoch)
        return self._batches

    # -- state -------------------------------------------------------------------------------------------
    def save(self, name: str) -> Path:
        path = self.out_dir / name
        if self.rank == 0:
            save_checkpoint(path, self.cfg, self.model, epoch=self.epoch, step=self.step, best=self.best,
                            optimizer=self.optimizer.state_dict(), scheduler=self.scheduler.state_dict(),
                            scaler=self.scaler.state_dict(), history=self.history)
        return path

    def resume(self, path: str | Path) -> None:
        """Continue from a checkpoint written by :meth:`save` (weights, optimizer, schedule, epoch)."""
        payload = read_checkpoint(path)
        unwrap(self.model).load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        self.scaler.load_state_dict(payload["scaler"])
        self.epoch, self.step, self.best = payload["epoch"], payload["step"], payload["best"]
        self.history = payload.get("history", [])

    def _log(self, record: dict[str, Any]) -> None:
        if self.rank != 0:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with open(self.out_dir / "log.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")

    # -- loop --------------------------------------------------------------------------------------------
    def train_epoch(self) -> dict[str, float]:
        self.model.train()
        t = self.cfg.train
        loader = self._loader(self.epoch)
        steps = len(loader) if t.max_steps_per_epoch is None else min(len(loader), t.max_steps_per_epoch)
        sums: dict[str, float] = {}
        bar = tqdm(total=steps, desc=f"epoch {self.epoch + 1}/{t.epochs}", disable=None if self.progress else True, leave=False)
        start = time.perf_counter()
        for i, batch in enumerate(loader):
            if i >= steps:
                break
            batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
            with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
                outputs = self.model(batch["input"])
            loss, terms = self.task.loss(outputs, batch)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss is {loss.item()} at epoch {self.epoch + 1} step {i}: {terms}")
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.step += 1
            values = {"loss": loss.detach(), **terms}
            for k, v in values.items():  # tensors: no host sync per term and step
                sums[k] = sums.get(k, 0.0) + v
            if self.progress and (i % POSTFIX_EVERY == 0 or i + 1 == steps):
                bar.set_postfix({k: f"{v.item():.3f}" for k, v in values.items()})
            bar.update()
        bar.close()
        dist_utils.broadcast_buffers(unwrap(self.model))  # every rank evaluates / saves rank 0's model
        elapsed = time.perf_counter() - start
        means = dist_utils.average({k: float(v) / max(steps, 1) for k, v in sums.items()}, self.device)
        means["images_per_s"] = steps * t.batch_size / max(elapsed, 1e-9)
        return means

    def validate(self) -> dict[str, float]:
        """COCO metrics on the validation source (each rank scores a shard; rank 0 merges)."""
        settings = eval_settings(self.cfg, batch_size=1)
        model = unwrap(self.model)
        return dist_utils.evaluate_sharded(evaluate, model, self.task, self.val_source, settings, self.device,
                                           progress=self.progress)

    def fit(self) -> dict[str, Any]:
        t = self.cfg.train
        if self.rank == 0:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            (self.out_dir / "config.json").write_text(json.dumps(self.cfg.to_dict(), indent=2))
        while self.epoch < t.epochs:
            record: dict[str, Any] = {"epoch": self.epoch + 1, "lr": self.optimizer.param_groups[0]["lr"]}
            record.update(self.train_epoch())
            self.scheduler.step()
            self.epoch += 1
            last = self.epoch == t.epochs
            if self.val_source is not None and t.val_interval and (self.epoch % t.val_interval == 0 or last):
                metrics = self.validate()
                record.update({f"val_{k}": v for k, v in metrics.items()})
                if metrics["AP"] > self.best:
                    self.best = metrics["AP"]
                    self.save("best.pth")
            self.history.append(record)
            self._log(record)
            self.save("last.pth")
            if self.progress:
                shown = {k: round(v, 4) for k, v in record.items() if isinstance(v, float)}
                tqdm.write(f"epoch {self.epoch}: {shown}")
        return {"best_AP": self.best, "history": self.history, "out_dir": str(self.out_dir)}

