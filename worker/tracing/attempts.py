"""The span of each (event, processor)'s last failed call, until the next call (which links to
it) or its dead letter (which links to it) takes it: keyed by the event's topic, partition and
offset and the processor's name. Bounded: an entry nobody takes (a batch cancelled by a
rebalance) is dropped, oldest first, past `LIMIT`."""

from __future__ import annotations

import threading
from typing import Any

#: Failed calls remembered at most (each ~200 bytes).
LIMIT = 10_000

Key = tuple[str, int, int, str]  # topic, partition, offset, processor

def key_of(msg: Any, processor: str) -> Key:
    """The key of `processor`'s calls on the event of `msg` (a worker.types.Message)."""
    return (msg.topic() or "", msg.partition() or 0, msg.offset() or 0, processor)


_failed: dict[Key, Any] = {}  # key -> the failed call's SpanContext
_lock = threading.Lock()


def failed(key: Key, span_context: Any) -> None:
    """The call of `key` failed in the span of `span_context`."""
    with _lock:
        _failed.pop(key, None)
        _failed[key] = span_context
        if len(_failed) > LIMIT:
            del _failed[next(iter(_failed))]


def take(key: Key) -> Any:
    """The span context of `key`'s last failed call (forgotten), or None."""
    if not _failed:  # (the common case, without the lock)
        return None
    with _lock:
        return _failed.pop(key, None)
