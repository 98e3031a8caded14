"""Which saved tensors fit a model, and a report of the rest: the one rule every loader applies.

:func:`fit_state` compares a candidate state (ours, an original checkpoint's, an ImageNet backbone's) with a
model's state dict, name by name and shape by shape; each loader then decides what a misfit means (an
error for our own checkpoints and strict official loads, a report for initial and backbone weights).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from torch import Tensor, nn

MAX_LISTED = 10  # tensors named per category in error messages


class CheckpointMismatchError(ValueError):
    """A checkpoint's tensors do not fit the model (missing, unexpected or mis-shaped tensors)."""


@dataclass
class LoadReport:
    """What a load did. Names are the file's (e.g. official) names except ``loaded``, which are ours."""

    loaded: list[str] = field(default_factory=list)
    missing: list[tuple[str, tuple[int, ...]]] = field(default_factory=list)  # (name, model shape)
    unexpected: list[tuple[str, tuple[int, ...]]] = field(default_factory=list)  # (name, file shape)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)  # file, model
    ignored: list[str] = field(default_factory=list)  # known-unused tensors (classifiers)
    epoch: int | None = None

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def describe(self, max_listed: int = MAX_LISTED) -> str:
        """The problems (and ignored tensors), each list cut to ``max_listed`` names."""
        parts = []
        if self.missing:
            parts.append(_listing("missing from the file", [f"{k} {list(s)}" for k, s in self.missing], max_listed))
        if self.unexpected:
            parts.append(_listing("unexpected in the file", [f"{k} {list(s)}" for k, s in self.unexpected],
                                  max_listed))
        if self.mismatched:
            parts.append(_listing("mis-shaped", [f"{k}: file {list(f)} vs model {list(m)}"
                                                 for k, f, m in self.mismatched], max_listed))
        if self.ignored:
            parts.append(f"{len(self.ignored)} unused tensors ignored ({', '.join(self.ignored[:max_listed])})")
        return "; ".join(parts) or "no problems"

    def __str__(self) -> str:
        return f"{len(self.loaded)} tensors loaded; {self.describe()}"


def _listing(title: str, items: list[str], max_listed: int) -> str:
    shown = ", ".join(items[:max_listed])
    more = f", ... and {len(items) - max_listed} more" if len(items) > max_listed else ""
    return f"{len(items)} {title}: {shown}{more}"


def _never(name: str) -> bool:
    return False


def is_optional(key: str) -> bool:
    """Whether a tensor may be absent from a file: ``num_batches_tracked``, which old PyTorch did not save."""
    return key.endswith("num_batches_tracked")


def fit_state(ours: Mapping[str, Tensor], candidate: Mapping[str, Tensor], *,
              key_of: Callable[[str], str | None] | None = None, name_of: Callable[[str], str] | None = None,
              ignore: Callable[[str], bool] = _never,
              optional: Callable[[str], bool] = _never) -> tuple[dict[str, Tensor], LoadReport]:
    """The tensors of ``candidate`` that fit ``ours`` (under our keys) and a report of the rest.

    ``key_of`` maps a candidate name to our key (default: the same name; ``None``: no place in the model),
    ``name_of`` our key to the candidate's name a missing tensor is reported under (default: the key).
    Candidate names for which ``ignore`` holds are listed as ignored; our keys for which ``optional`` holds
    (e.g. ``num_batches_tracked``) are never missing. ``report.loaded`` lists the fitting keys.
    """
    report = LoadReport()
    fitting: dict[str, Tensor] = {}
    reached: set[str] = set()
    for name, value in candidate.items():
        if ignore(name):
            report.ignored.append(name)
            continue
        key = key_of(name) if key_of is not None else name
        if key is None or key not in ours:
            report.unexpected.append((name, tuple(value.shape)))
            continue
        reached.add(key)
        if value.shape != ours[key].shape:
            report.mismatched.append((name, tuple(value.shape), tuple(ours[key].shape)))
        else:
            fitting[key] = value
    report.missing = [(name_of(key) if name_of is not None else key, tuple(value.shape))
                      for key, value in ours.items() if key not in reached and not optional(key)]
    report.loaded = sorted(fitting)
    return fitting, report


def load_fitting(model: nn.Module, state: Mapping[str, Tensor]) -> LoadReport:
    """Load the tensors of ``state`` (our names) whose names and shapes fit ``model``; the rest stay."""
    fitting, report = fit_state(model.state_dict(), state)
    model.load_state_dict(fitting, strict=False)
    return report
