"""Shared fixtures: the real data folder (../shared/data) and small synthetic sets."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not present at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session", autouse=True)
def _own_data_cache(tmp_path_factory):
    """The data caches (opened annotation files, image checks: centernet.data.cache) of this test session in a
    folder of its own, never the user's (subprocesses inherit it)."""
    before = os.environ.get("CENTERNET_CACHE")
    os.environ["CENTERNET_CACHE"] = str(tmp_path_factory.mktemp("centernet_cache"))
    yield
    if before is None:
        os.environ.pop("CENTERNET_CACHE", None)
    else:
        os.environ["CENTERNET_CACHE"] = before
