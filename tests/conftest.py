"""Shared test fixtures: the licensed corpora live in ../shared/data beside the checkout."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("DISTILL_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"shared corpora not found at {SHARED_DATA} (set DISTILL_SHARED_DATA)")
    return SHARED_DATA
