"""Modules that moved keep their old import paths for one release: the same objects, with a DeprecationWarning.
And the top level of the package holds entry points only."""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

from centernet import MOVED_MODULES

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "centernet"


@pytest.mark.parametrize("old", sorted(MOVED_MODULES))
def test_an_old_import_path_gives_the_same_objects_with_a_deprecation_warning(old: str) -> None:
    new = MOVED_MODULES[old]
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=f"{old} has moved to {new}"):
        alias = importlib.import_module(old)
    target = importlib.import_module(new)
    public = [name for name in dir(target) if not name.startswith("_")]
    assert public and all(getattr(alias, name) is getattr(target, name) for name in public)
    assert not (PACKAGE.parent / (old.replace(".", "/") + ".py")).exists()  # an alias, not a file left behind


def test_an_unknown_module_is_still_an_import_error() -> None:
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("centernet.no_such_module")


def test_the_top_level_holds_entry_points_only() -> None:
    modules = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(modules) <= 6, modules


def test_the_network_class_is_detector_and_its_old_name_warns() -> None:
    from centernet.models.detector import Detector

    with pytest.warns(DeprecationWarning, match="is now Detector"):
        from centernet.models.detector import CenterNet as old
    assert old is Detector
