"""Helpers for the event-model tests (data files live in tests/events/data)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

DATA = Path(__file__).parent / "data"


def load_fixtures() -> list[dict[str, Any]]:
    """The committed realistic event of each of the 74 types."""
    events: list[dict[str, Any]] = msgspec.json.decode((DATA / "fixtures.json").read_bytes())
    return events


def drop_nulls(value: Any) -> Any:
    """The JSON value without null members (typed structs omit unset optional fields)."""
    if isinstance(value, dict):
        return {k: drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [drop_nulls(v) for v in value]
    return value
