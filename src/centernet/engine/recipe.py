"""Training recipe options beyond the paper's (all off in the paper presets): the optimizer (the paper's Adam,
or AdamW's decoupled weight decay), a learning rate that follows the run per optimizer step (linear warm-up,
cosine decay) and an exponential moving average of the weights.

``train.schedule="step"`` with ``train.warmup_epochs=0`` is the paper's schedule and stays with the trainer's
``MultiStepLR`` alone; anything else sets the rate before every step from :func:`lr_at`.
"""
from __future__ import annotations

import copy
import math
from bisect import bisect_right

import torch
from torch import nn

from ..config import TrainConfig
from .checkpoint import unwrap


#: ``train.optimizer`` -> its class
OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}


def make_optimizer(model: nn.Module, t: TrainConfig) -> torch.optim.Optimizer:
    """``adam`` (the paper's): ``train.weight_decay`` as an L2 term on every parameter's gradient; ``adamw``:
    decayed apart from the gradient (Loshchilov & Hutter), on the weights of convolutions and linear layers
    only, not on biases and normalisation parameters (the tensors of one dimension)."""
    optimizer = OPTIMIZERS[t.optimizer]
    if t.optimizer == "adam":
        return optimizer(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim > 1], "weight_decay": t.weight_decay},
              {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}]
    return optimizer(groups, lr=t.lr)


def per_step(t: TrainConfig) -> bool:
    """Whether the rate is set before every step (anything but the paper's plain step schedule)."""
    return t.schedule != "step" or t.warmup_epochs > 0


def lr_at(t: TrainConfig, progress: float) -> float:
    """The learning rate of the step that ends at ``progress`` epochs into the run (epoch e's steps end at
    e + 1/n, e + 2/n, ..., e + 1 for n steps per epoch).

    ``step``: ``lr * lr_factor ** (lr_steps passed)``, as MultiStepLR (epoch e = ceil(progress) - 1);
    ``cosine``: from ``lr`` after the warm-up down to ``lr * lr_factor`` at the end of ``epochs``, along half a
    cosine. A warm-up multiplies either by ``progress / warmup_epochs`` while that is below 1."""
    epoch = max(math.ceil(progress) - 1, 0)
    warm = t.warmup_epochs
    if t.schedule == "cosine":
        span = max(t.epochs - warm, 1e-9)
        u = min(max((progress - warm) / span, 0.0), 1.0)
        low = t.lr * t.lr_factor
        rate = low + 0.5 * (t.lr - low) * (1 + math.cos(math.pi * u))
    else:
        rate = t.lr * t.lr_factor ** bisect_right(sorted(t.lr_steps), epoch)
    if warm > 0 and progress < warm:
        rate *= max(progress, 0.0) / warm
    return rate


class ModelEma:
    """An exponential moving average of a model's weights (parameters and floating-point buffers; integer
    buffers such as batch-norm counters are copied). Update n (from 0) uses the decay
    ``min(decay, (1 + n) / (10 + n))``, so that a short run's average is not dominated by its initial weights."""

    def __init__(self, model: nn.Module, decay: float, updates: int = 0) -> None:
        self.module = copy.deepcopy(unwrap(model)).eval()
        self.module.requires_grad_(False)
        self.decay, self.updates = decay, updates

    def rate(self) -> float:
        """The decay of the next update."""
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = self.rate()
        self.updates += 1
        current = unwrap(model).state_dict()
        for name, avg in self.module.state_dict().items():
            value = current[name].detach()
            if avg.is_floating_point():
                avg.mul_(d).add_(value.to(avg.dtype), alpha=1 - d)
            else:
                avg.copy_(value)
