"""The training batches: the augmented training set of a configuration, drawn per (epoch, index) so that
loading workers repeat no draws, in batches of one input size each (``data.multiscale``: a size per step,
drawn from the seed, the epoch and the step only, so every process of a distributed run draws the same)."""
from __future__ import annotations

from typing import Callable, Iterator

import numpy as np
from torch.utils.data import Dataset, Sampler

from ..config import ExperimentConfig
from ..data.pipeline import TrainDataset
from ..data.sample import DetectionSource
from ..data.transforms import output_side
from ..tasks.base import Task


def train_dataset(cfg: ExperimentConfig, source: DetectionSource, task: Task) -> TrainDataset:
    """The augmented training set of a configuration."""
    d = cfg.data
    return TrainDataset(source, task, d.input_size, d.down_ratio, d.mean, d.std, augment=True,
                        random_crop=d.random_crop, scale_jitter=d.scale_jitter, shift_jitter=d.shift_jitter,
                        flip_prob=d.flip_prob, color=d.color_aug, seed=cfg.train.seed, augment_prob=d.augment_prob,
                        mosaic=d.mosaic, mixup=d.mixup)



def scaled_input_size(size: tuple[int, int], factor: float, down_ratio: int, multiple: int) -> tuple[int, int]:
    """``size`` (w, h) times ``factor``, each side rounded so that its output map stays a multiple of
    ``multiple // down_ratio`` (at least one such step) and the side keeps its offset from ``down_ratio`` x
    the map (512 -> 384 or 640 at stride 32; CornerNet's 511 -> 383 or 639)."""
    step = max(1, multiple // down_ratio)

    def side(n: int) -> int:
        out = output_side(n, down_ratio)
        return max(step, round(out * factor / step) * step) * down_ratio - (out * down_ratio - n)

    return side(size[0]), side(size[1])


def multiscale_sizes(cfg: ExperimentConfig) -> Callable[[int, int], tuple[int, int]] | None:
    """``data.multiscale``: (epoch, step) -> the input size (w, h) of that step's batch, drawn from the seed,
    the epoch and the step only (every process of a distributed run draws the same); None when off."""
    d = cfg.data
    if d.multiscale is None:
        return None
    low, high = (float(v) for v in d.multiscale)
    if not 0 < low <= high:
        raise ValueError(f"data.multiscale {list(d.multiscale)} must be (low, high) with 0 < low <= high")
    from ..models import INPUT_MULTIPLE

    multiple = INPUT_MULTIPLE.get(cfg.model.arch) or 32
    seed = cfg.train.seed % 2**32

    def size(epoch: int, step: int) -> tuple[int, int]:
        factor = np.random.RandomState([seed, epoch % 2**32, step % 2**32]).uniform(low, high)
        return scaled_input_size(d.input_size, factor, d.down_ratio, multiple)

    return size


class EpochSampler(Sampler):
    """``(epoch, index)`` pairs of the wrapped sampler's indices for the current ``epoch``."""

    def __init__(self, indices: Sampler) -> None:
        self.indices, self.epoch = indices, 0

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return ((self.epoch, index) for index in self.indices)


class EpochBatches(Sampler):
    """Batches of ``batch_size`` keys of an :class:`EpochSampler`: ``(epoch, index)``, or with ``sizes``
    (multi-scale training) ``(epoch, index, (w, h))`` with one size per batch, ``sizes(epoch, step)``."""

    def __init__(self, keys: EpochSampler, batch_size: int, drop_last: bool,
                 sizes: Callable[[int, int], tuple[int, int]] | None = None) -> None:
        self.keys, self.batch_size, self.drop_last, self.sizes = keys, batch_size, drop_last, sizes

    def __len__(self) -> int:
        n = len(self.keys)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _batch(self, keys: list[tuple[int, int]], step: int) -> list[tuple]:
        if self.sizes is None:
            return keys
        size = self.sizes(self.keys.epoch, step)
        return [(*key, size) for key in keys]

    def __iter__(self) -> Iterator[list[tuple]]:
        batch: list[tuple[int, int]] = []
        step = 0
        for key in self.keys:
            batch.append(key)
            if len(batch) == self.batch_size:
                yield self._batch(batch, step)
                batch, step = [], step + 1
        if batch and not self.drop_last:
            yield self._batch(batch, step)


class EpochItems(Dataset):
    """``dataset[(epoch, index)]``: the item of ``index`` drawn with the random stream of ``epoch``;
    ``dataset[(epoch, index, (w, h))]``: the same at input size (w, h)."""

    def __init__(self, dataset: TrainDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple) -> dict[str, np.ndarray]:
        epoch, index, *size = key
        self.dataset.set_epoch(epoch)
        return self.dataset.item(index, size[0]) if size else self.dataset[index]
