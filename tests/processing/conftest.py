"""Fixtures of the processing tests (pipeline, effects)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from worker.ledger import open_ledger
from worker.ledger.base import Ledger


@pytest.fixture(params=["memory", "sqlite"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ledger]:
    """The two embedded ledgers: memory (no transaction) and SQLite (one per batch)."""
    url = "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'ledger.db'}"
    led = open_ledger(url)
    yield led
    led.close()
