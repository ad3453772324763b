"""Reading `event.data` defensively: the one place that knows its shape (public: use it in
your processors too).

Today `event.data` is a dict; soon it is a typed msgspec struct per type family. `get` walks a
path through either (mapping keys or attributes, `from` also as `from_`), returning None for
anything missing or null, and `payload` unwraps the spec's `{data: {...}, event_source}` form.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from worker.errors import NonRetriableError
from worker.events import Event


def payload(event: Event) -> Any:
    data = event.data
    inner = get(data, "data")
    if inner is not None and get(data, "event_source") is not None:
        return inner
    return data


def get(obj: Any, *path: str) -> Any:
    for key in path:
        if obj is None:
            return None
        if isinstance(obj, Mapping):
            obj = obj.get(key)
        else:
            value = getattr(obj, key, None)
            obj = getattr(obj, key + "_", None) if value is None else value
    return obj


def text(obj: Any, *path: str) -> str | None:
    value = get(obj, *path)
    if value is None or isinstance(value, (Mapping, list, tuple)):
        return None
    return str(value)


def integer(obj: Any, *path: str) -> int | None:
    """An int, leniently: 12, 12.0 and "12" all read as 12; anything else is None."""
    value = get(obj, *path)
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


def required_text(obj: Any, *path: str) -> str:
    """A field the read model cannot do without: missing -> dead-letter with its JSON path."""
    value = text(obj, *path)
    if not value:
        raise NonRetriableError(f"$.data.{'.'.join(path)} is missing; the read model needs it")
    return value
