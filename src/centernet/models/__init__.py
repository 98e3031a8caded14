"""Model registry and :func:`build_model`."""
from __future__ import annotations

from typing import Callable

from ..registry import Registry
from .detector import Detector
from .heads import Branch, HeadSpec, HeadsArg, as_specs

# arch name -> builder(heads, head_conv) -> Detector
ARCHS: Registry[Callable[..., Detector]] = Registry("architecture")
# arch name -> default head_conv (the original's: 64 for ResNets, 256 for DLA and Hourglass)
DEFAULT_HEAD_CONV: dict[str, int] = {}
# arch name -> what input sides must be a multiple of (its deepest down-sampling): 32, or 128 for Hourglass
INPUT_MULTIPLE: dict[str, int] = {}


def register_arch(name: str, head_conv: int, input_multiple: int = 32):
    def add(fn):
        DEFAULT_HEAD_CONV[name] = head_conv
        INPUT_MULTIPLE[name] = input_multiple
        return ARCHS.register(name)(fn)

    return add


#: architecture families whose CPU inference runs faster with weights and inputs in channels-last memory, as
#: measured side by side (benchmarks/bench_models.py, 512x512, batch 1: res_18 331 -> 278 ms, resdcn_18 195 ->
#: 173, dla_34 539 -> 491, hourglass 3538 -> 3202 on an AVX2 CPU; the same direction on AVX-512)
CHANNELS_LAST_FAMILIES = ("res_", "resdcn_", "dla_", "hourglass", "cornernet")
#: the families whose CPU training (forward, loss, backward, optimizer) runs faster so, measured side by side
#: (benchmarks/bench_train.py --channels-last, one thread, AVX2): dla_tiny_conv at 128, batch 16, 1.32x (44.9 ->
#: 59.4 images/s), dla_tiny 1.11x; at 256, batch 4, res_18 0.94x, resdcn_18 1.01x, dla_34 1.03x (left plain:
#: their backward gains nothing)
CHANNELS_LAST_TRAINING = ("dla_tiny",)


def prefers_channels_last(arch: str, training: bool = False) -> bool:
    """Whether inference (``training``: training) of ``arch`` on a CPU should run in channels-last memory."""
    return arch.startswith(CHANNELS_LAST_TRAINING if training else CHANNELS_LAST_FAMILIES)


def register_arch_alias(name: str, target: str) -> None:
    """``name`` builds ``target`` (same defaults); checkpoints and presets that say ``name`` keep working."""
    ARCHS.alias(name, target)
    DEFAULT_HEAD_CONV[name], INPUT_MULTIPLE[name] = DEFAULT_HEAD_CONV[target], INPUT_MULTIPLE[target]


def build_model(arch: str, heads: HeadsArg, head_conv: int | None = None) -> Detector:
    """Build ``arch`` (see ``ARCHS.names()``) with ``heads``: :class:`HeadSpec` s from a task, or plain
    {name: channels} (no prior, no branch; ``centernet.build_model`` resolves names through the tasks).

    The model's forward returns a list with one {head: [B, n, H/4, W/4]} dict per stack.
    """
    builder = ARCHS.get(arch)
    if head_conv is None:
        head_conv = DEFAULT_HEAD_CONV[arch]
    model = builder(heads=as_specs(heads), head_conv=head_conv)
    model.arch = arch
    return model


from . import zoo  # noqa: E402,F401  (registers the architectures)
