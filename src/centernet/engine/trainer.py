"""The one trainer: Adam with the step schedule, AMP on CUDA, DDP under torchrun, resumable checkpoints.

Recipe options, off in the paper presets (:mod:`.recipe`): ``train.schedule="cosine"`` and
``train.warmup_epochs`` set the rate before every step; ``train.ema`` keeps a moving average of the weights that
is validated and saved as the model (the raw weights ride along in the checkpoint as ``raw_model`` for resume).

A step whose loss or gradients are not finite is skipped (weights, optimizer state and batch-norm
statistics unchanged) and counted; ``train.max_bad_steps`` of them in a row stop the run with
:class:`TrainingDiverged`, naming the last good checkpoint. Non-finite weights are never saved.

What it prints (rank 0, ``progress``): a start-up summary, one aligned table line per epoch, and progress
lines every ``train.log_every`` steps when stdout is not a terminal (a tqdm bar serves terminals). What it
writes besides checkpoints: config.json, log.jsonl and the run reports (:mod:`.run_reports`).
``train.patience`` stops the run after that many epochs without a better validation headline metric.
"""
from __future__ import annotations

import math
import random
import shlex
import time
import warnings
from bisect import bisect_right
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler
from tqdm import tqdm

from ..config import ExperimentConfig
from ..data.pipeline import collate
from ..data.sample import DetectionSource
from ..models import prefers_channels_last
from ..tasks.base import Task
from ..weights.read import read_checkpoint
from . import distributed as dist_utils
from .checkpoint import finite_state, load_model_state, save_checkpoint, unwrap
from .console import LABEL_WIDTH, VAL_PREFIX, EpochTable, ProgressLines, startup_summary
from .distributed import resolve_device
from .errors import Interrupted, TrainingDiverged
from .batches import EpochBatches, EpochItems, EpochSampler, multiscale_sizes, train_dataset
from .evaluator import EvalResult, EvalSettings
from .inference import is_channels_last
from .rundir import append_log, write_config, write_log
from .recipe import ModelEma, lr_at, make_optimizer, per_step
from .reports import RunReports

#: record keys that are not loss terms
NON_LOSS_KEYS = ("epoch", "lr", "images_per_s", "skipped_steps")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (call before building the model: its initial weights depend on it)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


POSTFIX_EVERY = 10  # steps between progress-bar loss updates (each one a host sync)


class Trainer:
    """Trains ``model`` for ``task`` on ``train_source``; evaluates on ``val_source`` every
    ``cfg.train.val_interval`` epochs, keeping ``last.pth`` and ``best.pth`` (by the scorer's headline metric,
    e.g. AP) in ``out_dir``."""

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
        # one process only: a two-process gloo run of dla_tiny_conv in channels-last aborted once in three CI runs
        if self.device.type == "cpu" and self.world == 1 and prefers_channels_last(cfg.model.arch, training=True):
            model = model.to(memory_format=torch.channels_last)  # the inputs follow (see train_epoch)
        self.input_layout = torch.channels_last if is_channels_last(model) else torch.contiguous_format
        if self.world > 1:
            if t.sync_bn and self.device.type == "cpu":
                warnings.warn("train.sync_bn ignored: SyncBatchNorm needs CUDA (each process keeps its own "
                              "batch statistics; rank 0's running statistics are shared after every epoch)")
            elif t.sync_bn:
                model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            model = nn.parallel.DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.model = model
        self.optimizer = make_optimizer(model, t)
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(self.optimizer, list(t.lr_steps), t.lr_factor)
        # train.ema: the average is what is validated and saved as the model; the raw weights keep training
        self.ema = ModelEma(model, t.ema) if t.ema > 0 else None
        self.amp = t.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.dataset = train_dataset(cfg, train_source, task)
        self._sizes = multiscale_sizes(cfg)  # data.multiscale: (epoch, step) -> input size; None: off
        self.train_source = train_source
        # the scorer's headline metric (decides best.pth and early stopping)
        self.headline = task.scorer(val_source).headline if val_source is not None else "AP"
        self.best_epoch = 0  # the epoch of the best headline metric so far
        self.loss_keys: list[str] | None = None  # "loss" and the task's terms, known after the first epoch
        self.last_eval: EvalResult | None = None
        if t.batch_size % self.world:
            raise ValueError(f"batch size {t.batch_size} is not divisible by {self.world} processes")
        self.per_rank_batch = t.batch_size // self.world
        self.epoch, self.step, self.best = 0, 0, -math.inf
        self._batches: DataLoader | None = None
        self._keys: EpochSampler | None = None  # the loader's (epoch, index) keys
        self.history: list[dict[str, Any]] = []
        self.bad_in_row, self.skipped = 0, 0  # steps with a non-finite loss / gradient: in a row, this epoch
        self.last_good: tuple[Path, int] | None = None  # (checkpoint, epoch) last written or resumed from
        self._buffers = list(unwrap(model).buffers())
        self._shadow = [b.detach().clone() for b in self._buffers]  # batch-norm statistics before the step

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
            # batches of (epoch, index[, size]) keys: with data.multiscale one input size per batch
            self._keys = EpochSampler(sampler)
            batches = EpochBatches(self._keys, self.per_rank_batch, len(self.dataset) > self.per_rank_batch,
                                    self._sizes)
            self._batches = DataLoader(
                EpochItems(self.dataset), batch_sampler=batches, collate_fn=collate, num_workers=workers,
                pin_memory=self.device.type == "cuda", persistent_workers=workers > 0)
            # no cv2.setNumThreads in the workers: after a fork from a process whose OpenCV pool has run, that
            # call deadlocked the worker (seen with --workers 1 after in-process image checks)
        sampler = self._keys
        sampler.epoch = epoch
        if isinstance(sampler.indices, DistributedSampler):
            sampler.indices.set_epoch(epoch)
        else:
            sampler.indices.generator.manual_seed(self.cfg.train.seed + epoch)  # the same order as before
        self.dataset.set_epoch(epoch)
        return self._batches

    # -- state -------------------------------------------------------------------------------------------
    def save(self, name: str) -> Path:
        """Write ``name`` in the run folder, unless the weights are not finite (then nothing is overwritten
        and :class:`TrainingDiverged` names the last good checkpoint)."""
        path = self.out_dir / name
        if not finite_state(self.model) or (self.ema is not None and not finite_state(self.ema.module)):
            # every rank holds the same weights: every rank stops
            raise TrainingDiverged(f"the weights are not finite after epoch {self.epoch}; {path} was not "
                                   f"overwritten. {self._last_good_text()}")
        if self.rank == 0:
            extra: dict[str, Any] = {}
            if self.ema is not None:  # the average is the model; the raw weights go on training on --resume
                extra = {"raw_model": unwrap(self.model).state_dict(), "ema_updates": self.ema.updates}
            save_checkpoint(path, self.cfg, self.evaluated_model(), epoch=self.epoch, step=self.step,
                            best=self.best, best_epoch=self.best_epoch,
                            optimizer=self.optimizer.state_dict(), scheduler=self.scheduler.state_dict(),
                            scaler=self.scaler.state_dict(), history=self.history, **extra)
        if name == "last.pth":
            self.last_good = (path, self.epoch)
        return path

    def resume(self, path: str | Path, payload: dict[str, Any] | None = None) -> None:
        """Continue from a checkpoint written by :meth:`save` (weights, optimizer, schedule, epoch).

        A learning rate schedule (``lr``, ``lr_steps``, ``lr_factor``) in this trainer's config that differs
        from the checkpoint's replaces it from the checkpoint's epoch on. ``payload``: the file's content
        when already read."""
        payload = payload if payload is not None else read_checkpoint(path)
        raw = payload.get("raw_model")  # written with train.ema: "model" holds the average
        load_model_state(unwrap(self.model), raw if raw is not None else payload["model"], path)
        if self.ema is not None:
            self.ema = ModelEma(self.model, self.cfg.train.ema, int(payload.get("ema_updates", 0)))
            if raw is not None:
                load_model_state(self.ema.module, payload["model"], path)
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        if payload.get("scaler") and self.scaler.is_enabled():  # empty when written without AMP
            self.scaler.load_state_dict(payload["scaler"])
        self.epoch, self.step, self.best = payload["epoch"], payload["step"], payload["best"]
        self.best_epoch = int(payload.get("best_epoch", self.epoch))
        self.history = [r for r in payload.get("history", []) if r.get("epoch", 0) <= self.epoch]
        self.last_good = (Path(path), self.epoch)
        saved = payload["config"].get("train", {})
        t = self.cfg.train
        if (saved.get("lr"), list(saved.get("lr_steps", ())), saved.get("lr_factor")) != \
                (t.lr, list(t.lr_steps), t.lr_factor):
            self._set_schedule(t.lr, t.lr_steps, t.lr_factor)

    def _set_schedule(self, lr: float, steps: tuple[int, ...], factor: float) -> None:
        """Replace the step schedule: the rate at the current epoch is ``lr * factor ** (steps passed)``."""
        self.scheduler.base_lrs = [lr] * len(self.optimizer.param_groups)
        self.scheduler.milestones = Counter(steps)
        self.scheduler.gamma = factor
        current = lr * factor ** bisect_right(sorted(steps), self.scheduler.last_epoch)
        for group in self.optimizer.param_groups:
            group["initial_lr"], group["lr"] = lr, current
        self.scheduler._last_lr = [current] * len(self.optimizer.param_groups)

    def evaluated_model(self) -> nn.Module:
        """What is validated and saved as the model: the moving average with ``train.ema``, else the weights."""
        return self.ema.module if self.ema is not None else unwrap(self.model)

    def _steps_per_epoch(self, loader: DataLoader) -> int:
        t = self.cfg.train
        return len(loader) if t.max_steps_per_epoch is None else min(len(loader), t.max_steps_per_epoch)

    def _set_lr(self, index: int, steps: int) -> float:
        """With a per-step schedule (:func:`~.recipe.per_step`), set the rate of step ``index`` of ``steps`` in
        this epoch; returns the rate in force."""
        if per_step(self.cfg.train):
            rate = lr_at(self.cfg.train, self.epoch + (index + 1) / max(steps, 1))
            for group in self.optimizer.param_groups:
                group["lr"] = rate
        return self.optimizer.param_groups[0]["lr"]

    def _last_good_text(self) -> str:
        if self.last_good is None:
            return "No checkpoint was written by this run."
        path, epoch = self.last_good
        return f"The last good checkpoint is {path} (epoch {epoch})."

    # -- steps -------------------------------------------------------------------------------------------
    def _step(self, loss: torch.Tensor) -> bool:
        """Backward and optimizer step; False (and nothing changed) when the loss or a gradient is not finite.

        Without AMP, the loss and the gradient norm are checked before the step (all processes agree). With
        AMP, the GradScaler skips steps with inf / NaN gradients by itself (normal while it calibrates its
        scale, so such steps are not counted); a non-finite loss is still a bad step."""
        self.scaler.scale(loss).backward()
        finite = torch.isfinite(loss.detach())
        if self.amp:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            grads = [p.grad for p in self.model.parameters() if p.grad is not None]
            if grads:
                finite = finite & torch.isfinite(torch.nn.utils.get_total_norm(grads))
        if self.world > 1:
            flag = finite.to(torch.float32)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MIN)
            finite = flag > 0
        if not bool(finite):
            return False
        if not self.amp:
            self.optimizer.step()
        return True

    def _bad_step(self, loss: torch.Tensor, terms: dict[str, torch.Tensor], index: int) -> None:
        """Undo the batch-norm statistics of a skipped step, count it, stop after too many in a row."""
        self._copy_buffers(self._shadow, self._buffers)
        self.bad_in_row += 1
        self.skipped += 1
        if self.bad_in_row >= self.cfg.train.max_bad_steps:
            bad = [k for k, v in terms.items() if not torch.isfinite(v)] or ["the gradients"]
            raise TrainingDiverged(
                f"training diverged: {self.bad_in_row} steps in a row with a non-finite loss or gradient "
                f"(epoch {self.epoch + 1}, step {index + 1}; loss {loss.item():g}; non-finite: {', '.join(bad)}); "
                f"try a lower learning rate. {self._last_good_text()}")

    @staticmethod
    @torch.no_grad()
    def _copy_buffers(source: list[torch.Tensor], target: list[torch.Tensor]) -> None:
        """Copy the buffers (batch-norm statistics) before a step, or back after a skipped one."""
        for src, dst in zip(source, target):
            dst.copy_(src)

    # -- loop --------------------------------------------------------------------------------------------
    def train_epoch(self) -> dict[str, float]:
        self.model.train()
        t = self.cfg.train
        loader = self._loader(self.epoch)
        steps = self._steps_per_epoch(loader)
        sums: dict[str, float] = {}
        bar = tqdm(total=steps, desc=f"epoch {self.epoch + 1}/{t.epochs}", disable=None if self.progress else True,
                   leave=False)
        lines = ProgressLines(steps, self.epoch + 1, t.epochs, every=t.log_every or None,
                              enabled=None if self.progress else False)
        start = time.perf_counter()
        self.skipped = 0
        for i, batch in enumerate(loader):
            if i >= steps:
                break
            batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
            self._copy_buffers(self._buffers, self._shadow)
            with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
                outputs = self.model(batch["input"].contiguous(memory_format=self.input_layout))
            loss, terms = self.task.loss(outputs, batch)
            self.optimizer.zero_grad(set_to_none=True)
            self._set_lr(i, steps)
            if not self._step(loss):
                self._bad_step(loss, terms, i)
                bar.update()
                continue
            self.bad_in_row = 0
            if self.ema is not None:
                self.ema.update(self.model)
            self.step += 1
            values = {"loss": loss.detach(), **terms}
            for k, v in values.items():  # tensors: no host sync per term and step
                sums[k] = sums.get(k, 0.0) + v
            if self.progress and (i % POSTFIX_EVERY == 0 or i + 1 == steps):
                bar.set_postfix({k: f"{v.item():.3f}" for k, v in values.items()})
            bar.update()
            lines.update(i + 1, values)
        bar.close()
        dist_utils.broadcast_buffers(unwrap(self.model))  # every rank evaluates / saves rank 0's model
        if self.ema is not None:
            dist_utils.broadcast_buffers(self.ema.module)
        elapsed = time.perf_counter() - start
        if self.loss_keys is None and sums:
            self.loss_keys = list(sums)  # "loss", then the task's terms in its order
        means = dist_utils.average({k: float(v) / max(steps - self.skipped, 1) for k, v in sums.items()}, self.device)
        means["images_per_s"] = steps * t.batch_size / max(elapsed, 1e-9)
        means["skipped_steps"] = self.skipped
        return means

    def _headline(self, metrics: dict[str, float]) -> float | None:
        """The metric that decides ``best.pth`` (None when missing or not finite: never "better")."""
        value = metrics.get(self.headline)
        return float(value) if value is not None and math.isfinite(value) else None

    def validate(self) -> dict[str, float]:
        """The task scorer's metrics on the validation source (each rank scores a shard; rank 0 merges);
        the whole result stays in ``last_eval`` (per-class curves, detected boxes) for the reports."""
        settings = EvalSettings.from_config(self.cfg, batch_size=1)
        model = self.evaluated_model()
        self.last_eval = dist_utils.evaluate_sharded_result(model, self.task, self.val_source, settings,
                                                            self.device, progress=self.progress)
        self.headline = self.last_eval.headline
        return self.last_eval.metrics

    def _print(self, text: str) -> None:
        if self.progress:
            tqdm.write(text)

    def _startup(self) -> None:
        """The start-up summary: data, model (parameters, GFLOPs), device, run folder, schedule."""
        t, d = self.cfg.train, self.cfg.data
        w, h = d.input_size
        summary = startup_summary(unwrap(self.model), (h, w), self.device, self.out_dir, self.train_source,
                                  self.val_source, flops=t.flops)
        plan = (f"{self.task.name}, input {w}x{h}, batch {t.batch_size}"
                + (f" ({self.world} processes)" if self.world > 1 else "")
                + f", lr {t.lr:.2e}, epochs {self.epoch + 1}..{t.epochs}, ")
        if t.schedule == "cosine":
            plan += f"cosine to lr x{t.lr_factor:g}"
        else:
            plan += f"lr x{t.lr_factor:g} after epochs " + (", ".join(str(s) for s in t.lr_steps if s < t.epochs)
                                                            or "none")
        if t.warmup_epochs:
            plan += f", warm-up {t.warmup_epochs:g} epochs"
        if t.ema:
            plan += f", EMA {t.ema:g}"
        if d.multiscale is not None:
            plan += f", multi-scale x{d.multiscale[0]:g}-{d.multiscale[1]:g}"
        if d.mosaic or d.mixup:
            plan += f", mosaic {d.mosaic:g}, mixup {d.mixup:g}"
        if self.val_source is not None and t.val_interval:
            plan += f", val every {t.val_interval} ({self.headline})"
        if t.patience:
            plan += f", patience {t.patience}"
        self._print(f"{summary}\n{'train':<{LABEL_WIDTH}} {plan}")

    def _interrupted_text(self) -> str:
        """What a Ctrl-C in epoch ``self.epoch + 1`` leaves: the last finished epoch's last.pth, and how to go on."""
        last = self.out_dir / "last.pth"
        if self.epoch == 0 or not last.is_file():
            return f"in epoch {self.epoch + 1}, before any epoch was saved (run folder {self.out_dir})"
        return (f"in epoch {self.epoch + 1}; {last} holds epoch {self.epoch}: continue with "
                f"centernet train --resume {shlex.quote(str(last))}")

    def _should_stop(self) -> bool:
        """Early stopping: ``train.patience`` epochs since the best headline metric (checked after a
        validation)."""
        patience = self.cfg.train.patience
        return bool(patience) and self.epoch - self.best_epoch >= patience

    def fit(self) -> dict[str, Any]:
        """Train up to ``train.epochs``. ``config.json`` is (re)written and ``log.jsonl`` restarts from the
        records of the checkpoint the run continues from (none for a new run), so no epoch is logged twice.

        Returns {"best_AP": best headline metric or None, "headline": its name, "best_epoch": its epoch,
        "stopped_early": bool, "history": records, "out_dir": folder}."""
        t = self.cfg.train
        reports = None
        if self.rank == 0:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            write_config(self.out_dir, self.cfg)
            write_log(self.out_dir, self.history)
            reports = RunReports(self.out_dir, self.cfg.task.class_names or
                                 [str(i) for i in range(self.task.num_classes)], self.val_source, t.reports)
            if self.progress:
                self._startup()  # counting FLOPs costs seconds: only when it is printed
            if self.epoch >= t.epochs:
                self._print(f"nothing to train: the run is at epoch {self.epoch} of {t.epochs} "
                            "(pass --epochs N to train longer)")
        table = EpochTable(t.epochs, None, [self.headline] + (["AP50"] if self.headline == "AP" else []))
        stopped = False
        try:
            while self.epoch < t.epochs and not stopped:
                start = time.perf_counter()
                lr = self._set_lr(0, self._steps_per_epoch(self._loader(self.epoch)))
                record: dict[str, Any] = {"epoch": self.epoch + 1, "lr": lr}
                record.update(self.train_epoch())
                self.scheduler.step()
                self.epoch += 1
                last = self.epoch == t.epochs
                self.history.append(record)
                validated = self.val_source is not None and t.val_interval and (self.epoch % t.val_interval == 0
                                                                               or last)
                if validated:
                    metrics = self.validate()
                    record.update({VAL_PREFIX + k: v for k, v in metrics.items()})
                    score = self._headline(metrics)
                    if score is not None and score > self.best:
                        self.best, self.best_epoch = score, self.epoch
                        self.save("best.pth")
                    stopped = self._should_stop()
                if self.rank == 0:
                    append_log(self.out_dir, record)
                self.save("last.pth")
                if reports is not None:
                    reports.epoch(self.history, self.loss_keys, final=last or stopped or bool(validated))
                    if validated and self.last_eval is not None:
                        reports.evaluation(self.last_eval, self.epoch)
                if table.loss_keys is None:
                    table.loss_keys = list(self.loss_keys or [])
                self._print(table.lines(record, time.perf_counter() - start))
        except KeyboardInterrupt:
            raise Interrupted(self._interrupted_text()) from None
        finally:
            if reports is not None:
                reports.close()
        best = self.best if math.isfinite(self.best) else None
        if stopped:
            self._print(f"early stop after epoch {self.epoch}: no better val {self.headline} for "
                        f"{self.epoch - self.best_epoch} epochs (patience {t.patience}); best "
                        f"{best if best is None else round(best, 4)} at epoch {self.best_epoch}")
        return {"best_AP": best, "headline": self.headline, "best_epoch": self.best_epoch or None,
                "stopped_early": stopped, "history": self.history, "out_dir": str(self.out_dir)}
