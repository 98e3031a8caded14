"""Typed configuration with the paper's defaults. Only the builders and the CLI read these objects."""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any

# COCO statistics, in OpenCV's BGR channel order (SPEC 9).
COCO_MEAN = (0.408, 0.447, 0.470)
COCO_STD = (0.289, 0.274, 0.278)


@dataclass
class ModelConfig:
    arch: str = "resdcn_18"
    head_conv: int | None = None  # None: the architecture's default (64 ResNet, 256 DLA / Hourglass)
    # backbone start: "imagenet" (the arch's ImageNet file, downloaded into the torch hub cache), None /
    # "none" (from scratch), a file path, a known weights name or an http(s) URL (centernet.weights.download)
    pretrained: str | None = None
    # initial weights of the whole model: a centernet checkpoint, an original CenterNet file or zoo name
    # (e.g. "ctdet_coco_dla_2x"); tensors of another shape (a head for another class count) stay fresh
    weights: str | None = None


@dataclass
class DataConfig:
    train: str | None = None  # a COCO json, a VOC folder or a YOLO folder (see centernet.data.open_dataset)
    val: str | None = None
    train_images: str | None = None  # image folder, when it does not follow the format's layout
    val_images: str | None = None
    train_split: str | None = None  # a named split of data.train (VOC ImageSets/Main/<split>.txt, ...)
    val_split: str | None = None
    input_size: tuple[int, int] = (512, 512)  # (w, h)
    down_ratio: int = 4
    mean: tuple[float, float, float] = COCO_MEAN
    std: tuple[float, float, float] = COCO_STD
    random_crop: bool = True
    scale_jitter: float = 0.4  # used when random_crop is off
    shift_jitter: float = 0.1
    flip_prob: float = 0.5
    color_aug: bool = True
    # share of training images that are augmented at all (crop / scale / shift, flip, colour); the others go in
    # as at test time. None: the task's (1; ddd with task.options.loss_norm="original": 0.5, the original's aug_ddd)
    augment_prob: float | None = None
    # small-data augmentation (centernet.data.mix), off in every preset: the probability that an augmented
    # training item is a 4-image mosaic (its image and 3 random others around a random centre of a 2x canvas,
    # then the usual crop), and that it is blended 50 / 50 with another augmented item (objects of both kept);
    # both refused for tasks whose targets depend on the camera (3D boxes)
    mosaic: float = 0.0
    mixup: float = 0.0
    # multi-scale training: each batch at one input size drawn from (low, high) x input_size, rounded so the
    # output map fits the architecture (multiples of 32 for most); None: always input_size
    multiscale: tuple[float, float] | None = None
    max_objects: int = 128
    num_workers: int = 2
    # check every image once before training (exists, decodes, annotated size, complete): true decodes sets of up
    # to 10,000 images and reads the headers of larger ones; "full" decodes all, "headers" reads headers, false: none
    verify: bool | str = True
    test_keep_res: bool = False  # test on the padded original size instead of warping to input_size
    # keep_res padding: each side (n | pad) + 1, CornerNet's n | pad (the task's layout, see prepare_test_image);
    # None: the backbone's pad (31, Hourglass 127)
    test_pad: int | None = None
    test_flip: bool = False  # eval and predict flip-test by default (the image and its mirror); --no-flip wins


@dataclass
class TaskConfig:
    name: str = "ctdet"
    num_classes: int = 80
    class_names: list[str] = field(default_factory=list)
    cat_ids: list[int] = field(default_factory=list)  # label -> data set category id (COCO results)
    weights: dict[str, float] = field(default_factory=dict)  # loss weights; empty: the task's defaults
    max_detections: int = 100  # K
    radius_variant: str = "centernet"
    min_overlap: float = 0.7
    options: dict[str, Any] = field(default_factory=dict)  # task-specific, e.g. {"empty_person": "original"}


@dataclass
class TrainConfig:
    epochs: int = 140
    batch_size: int = 32
    lr: float = 1.25e-4
    lr_steps: tuple[int, ...] = (90, 120)
    lr_factor: float = 0.1
    # "step" (the paper's: x lr_factor at each of lr_steps) or "cosine" (from lr down to lr x lr_factor over the
    # epochs after the warm-up, per step; lr_steps unused); both per optimizer step when warmup_epochs > 0
    schedule: str = "step"
    warmup_epochs: float = 0.0  # linear warm-up of the lr from 0 over this many epochs (per step); 0: none
    # exponential moving average of the weights (0: off), e.g. 0.999: the decay at update n is
    # min(ema, (1 + n) / (10 + n)); the average is validated and saved as the model (best.pth / last.pth),
    # the raw weights travel beside it in the checkpoint for --resume
    ema: float = 0.0
    # "adam" (the paper's; weight_decay is an L2 term on every gradient) or "adamw" (decoupled weight decay on
    # the weights of convolutions and linear layers)
    optimizer: str = "adam"
    weight_decay: float = 0.0
    device: str = "auto"  # auto: CUDA if available, else CPU
    amp: bool = True  # mixed precision on CUDA (ignored on CPU)
    seed: int = 317
    val_interval: int = 5  # epochs between evaluations; 0 disables
    max_steps_per_epoch: int | None = None  # cut epochs short (small experiments)
    max_bad_steps: int = 10  # stop after this many steps in a row with a non-finite loss or gradient
    out_dir: str = "runs/train"  # the default is numbered: runs/train, runs/train2, ... (never overwritten)
    sync_bn: bool = False  # distributed only
    patience: int = 0  # stop after this many epochs without a better validation headline metric; 0: never
    log_every: int = 0  # steps between progress lines when stdout is not a terminal; 0: about 10 per epoch
    flops: bool = True  # count GFLOPs for the start-up summary (a few seconds the first time)
    reports: bool = True  # results.csv / results.png, PR curves, confusion matrix, mosaic, TensorBoard


@dataclass
class ExperimentConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ExperimentConfig":
        """Inverse of :meth:`to_dict`; unknown keys are an error (they would be silently ignored)."""
        parts = {}
        for f in dataclasses.fields(cls):
            sub_cls = f.default_factory  # type: ignore[misc]
            values = dict(d.get(f.name, {}))
            known = {g.name: g for g in dataclasses.fields(sub_cls)}
            unknown = set(values) - set(known)
            if unknown:
                raise ValueError(f"unknown {f.name} config keys: {sorted(unknown)}")
            hints = typing.get_type_hints(sub_cls)
            for key, value in values.items():  # json turns tuples into lists
                if isinstance(value, list) and "tuple" in str(known[key].type):
                    values[key] = value = tuple(value)
                if not _fits(value, hints[key]):
                    raise ValueError(f"config field {f.name}.{key} must be {_type_name(hints[key])}, got {value!r}")
            parts[f.name] = sub_cls(**values)
        cfg = cls(**parts)
        check_ranges(cfg)
        return cfg


# Sizes a configuration read from a file (a checkpoint, --config, an .onnx file's metadata, --set) may ask for:
# past these, memory would be spent on nonsense before anything else could fail (2,000,000,000 classes, a
# 65536 x 65536 input). (section, key) -> (lowest, highest), both allowed; None passes where the type allows it.
RANGES: dict[tuple[str, str], tuple[float, float]] = {
    ("task", "num_classes"): (1, 100_000),
    ("task", "max_detections"): (1, 100_000),
    ("model", "head_conv"): (1, 16_384),
    ("data", "input_size"): (1, 16_384),  # each side
    ("data", "down_ratio"): (1, 64),
    ("data", "max_objects"): (1, 1_000_000),
    ("data", "num_workers"): (0, 1_024),
    ("data", "mosaic"): (0, 1),
    ("data", "mixup"): (0, 1),
    ("data", "multiscale"): (0.1, 4),  # each end, a factor of data.input_size
    ("train", "warmup_epochs"): (0, 100_000),
    ("train", "ema"): (0, 0.999999),
}


def check_ranges(cfg: ExperimentConfig) -> None:
    """Raise ValueError (naming the field, its value and the range) for a size outside :data:`RANGES`."""
    for (section, key), (low, high) in RANGES.items():
        value = getattr(getattr(cfg, section), key)
        for v in value if isinstance(value, (tuple, list)) else (value,):
            if v is not None and not (isinstance(v, (int, float)) and low <= v <= high):
                raise ValueError(f"config field {section}.{key} must lie in [{low:,}, {high:,}], got {value!r}")


def override(cfg: ExperimentConfig, assignments: list[str]) -> ExperimentConfig:
    """Apply ``section.key=value`` strings (value parsed as JSON when it parses, else a string)."""
    import json

    d = cfg.to_dict()
    for item in assignments:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise ValueError(f"override {item!r} is not of the form section.key=value")
        path, raw = item.split("=", 1)
        section, key = path.split(".", 1)
        if section not in d or key not in d[section]:
            raise ValueError(f"unknown config field {path!r}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        d[section][key] = value
    return ExperimentConfig.from_dict(d)


def scaled_steps(steps: tuple[int, ...], epochs: int, new_epochs: int) -> tuple[int, ...]:
    """The step schedule of an ``epochs``-long run stretched to ``new_epochs`` (each step at the same share of
    the run, rounded, at least epoch 1; steps that would fall at or after the end are dropped): the paper's
    [90, 120] of 140 becomes [45, 60] for 70 epochs, and none for 1 epoch."""
    stretched = {max(1, round(step * new_epochs / epochs)) for step in steps}
    return tuple(sorted(step for step in stretched if step < new_epochs))


def override_training(cfg: ExperimentConfig, assignments: list[str]) -> ExperimentConfig:
    """:func:`override` for a new training run: a new ``train.epochs`` without ``train.lr_steps`` among the
    assignments also stretches the step schedule to the new length (a 12-epoch run of a preset with steps
    [12, 15] of 16 decays at [9, 11], not never)."""
    new = override(cfg, assignments)
    steps_given = any(item.split("=", 1)[0].strip() == "train.lr_steps" for item in assignments)
    if new.train.epochs != cfg.train.epochs and not steps_given:
        new.train.lr_steps = scaled_steps(cfg.train.lr_steps, cfg.train.epochs, new.train.epochs)
    return new


def _fits(value: Any, hint: Any) -> bool:
    """Whether ``value`` (as read from json) is of the annotated type ``hint`` (an int passes as a float)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, arg) for arg in args)
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is tuple:
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_fits(v, args[0]) for v in value)
        return len(value) == len(args) and all(_fits(v, a) for v, a in zip(value, args))
    if origin is list:
        return isinstance(value, list) and all(_fits(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict) and all(_fits(k, args[0]) and _fits(v, args[1]) for k, v in value.items())
    return isinstance(value, origin or hint)


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) if typing.get_origin(hint) is None else str(hint).replace("typing.", "")
