"""The dead-letter record format: one codec for the writer (`worker.kafka.dead_letter_producer`)
and the readers
(`worker.kafka.dead_letter_replay`, `activity-worker dlq show|replay`).

A dead letter is the original record (key, value, headers) plus `worker.*` headers saying why
(`Header`). When that does not fit the dead-letter topic's `max.message.bytes` (an invalid
value near the broker's limit, a thousand headers), the writer makes a **shrunk** letter
instead: the `worker.*` headers, as much of the original value as fits, and the facts to find
and check the original — `worker.truncated`, the original value's size and SHA-256, how many
original headers there were (dropped when they do not fit), the original key's SHA-256 when the
key was dropped. The source topic/partition/offset headers are always there, so
`activity-worker dlq replay` can read the original from the source topic while it is retained.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from worker.errors import cut
from worker.tracing.propagation import with_trace
from worker.types import DeadLetter

HEADER_PREFIX = "worker."

HeaderList = list[tuple[str, str | bytes | None]]


class Header(StrEnum):
    ERROR_CLASS = "worker.error.class"
    ERROR_REASON = "worker.error.reason"
    PROCESSOR = "worker.processor"
    SOURCE_TOPIC = "worker.source.topic"
    SOURCE_PARTITION = "worker.source.partition"
    SOURCE_OFFSET = "worker.source.offset"
    ATTEMPTS = "worker.attempts"
    FAILED_AT = "worker.failed_at"
    # on a shrunk letter only
    TRUNCATED = "worker.truncated"
    VALUE_BYTES = "worker.original.value_bytes"
    VALUE_SHA256 = "worker.original.value_sha256"
    HEADERS = "worker.original.headers"
    KEY_SHA256 = "worker.original.key_sha256"
    # on a replayed record
    REPLAYED_FROM = "worker.replayed_from"


#: What a record costs beyond its key, value and headers, and each header beyond its name and
#: value (Kafka's record batch format v2, rounded up generously).
RECORD_OVERHEAD = 512
HEADER_OVERHEAD = 16


def _b(value: str | bytes | None) -> bytes:
    if value is None:
        return b""
    return value if isinstance(value, bytes) else value.encode("utf-8", "replace")


def record_size(key: bytes | None, value: bytes | None,
                headers: Sequence[tuple[str, str | bytes | None]]) -> int:
    return (RECORD_OVERHEAD + len(key or b"") + len(value or b"")
            + sum(len(n) + len(_b(v)) + HEADER_OVERHEAD for n, v in headers))


def worker_headers(letter: DeadLetter, failed_at: str) -> HeaderList:
    src = letter.source
    return [
        (Header.ERROR_CLASS, letter.error_class.encode()),
        (Header.ERROR_REASON, cut(letter.reason).encode("utf-8", "replace")),
        (Header.PROCESSOR, (letter.processor or "").encode()),
        (Header.SOURCE_TOPIC, (src.topic() or "").encode()),
        (Header.SOURCE_PARTITION, str(src.partition()).encode()),
        (Header.SOURCE_OFFSET, str(src.offset()).encode()),
        (Header.ATTEMPTS, str(letter.attempts).encode()),
        (Header.FAILED_AT, failed_at.encode()),
        *letter.extra_headers,
    ]


def original_headers(letter: DeadLetter) -> HeaderList:
    """The original record's headers, its trace context replaced by the dead-letter span's
    when tracing is on (worker.tracing.dead_letters)."""
    headers: HeaderList = list(letter.source.headers() or [])
    if letter.trace_headers is None:
        return headers
    return with_trace(headers, letter.trace_headers)


def full_letter(letter: DeadLetter, failed_at: str
                ) -> tuple[bytes | None, bytes | None, HeaderList]:
    """(key, value, headers) of the letter as it normally is: the original record plus
    the worker's headers."""
    src = letter.source
    return src.key(), src.value(), [*original_headers(letter), *worker_headers(letter, failed_at)]


def shrunk_letter(letter: DeadLetter, failed_at: str, budget: int
                  ) -> tuple[bytes | None, bytes | None, HeaderList]:
    """(key, value, headers) of a letter that fits in `budget` bytes: the worker's headers, the
    original headers and key if they fit in a quarter of it, and the first bytes of the
    original value, with the facts to find and check the original."""
    src = letter.source
    key, value, original = src.key(), src.value() or b"", original_headers(letter)
    headers: HeaderList = worker_headers(letter, failed_at)
    headers += [(Header.TRUNCATED, b"true"),
                (Header.VALUE_BYTES, str(len(value)).encode()),
                (Header.VALUE_SHA256, hashlib.sha256(value).hexdigest().encode()),
                (Header.HEADERS, str(len(original)).encode())]
    room = budget - record_size(None, None, headers)
    if key is not None and len(key) > room // 4:
        headers.append((Header.KEY_SHA256, hashlib.sha256(key).hexdigest().encode()))
        key = None
    kept = record_size(None, None, original) - RECORD_OVERHEAD
    if original and kept <= room // 4:
        headers = original + headers
    room = budget - record_size(key, None, headers)
    return key, value[: max(0, room)], headers


@dataclass(frozen=True, slots=True)
class Letter:
    """A dead letter as read back."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: HeaderList  # the original ones (those kept), without worker.*
    error_class: str
    reason: str
    processor: str
    source_topic: str
    source_partition: int | None = None
    source_offset: int | None = None
    truncated: bool = False
    value_bytes: int | None = None  # the original value's size, on a shrunk letter
    value_sha256: str | None = None


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text else None
    except ValueError:
        return None


def letter_of(msg: Any) -> Letter:
    own: dict[str, str] = {}
    original: HeaderList = []
    for name, value in msg.headers() or []:
        if name.startswith(HEADER_PREFIX):
            own[name] = _text(value)
        else:
            original.append((name, value))
    return Letter(msg.partition() or 0, msg.offset() or 0, msg.key(), msg.value(), original,
                  own.get(Header.ERROR_CLASS, "?"), own.get(Header.ERROR_REASON, ""),
                  own.get(Header.PROCESSOR, ""), own.get(Header.SOURCE_TOPIC, ""),
                  _int(own.get(Header.SOURCE_PARTITION)), _int(own.get(Header.SOURCE_OFFSET)),
                  own.get(Header.TRUNCATED) == "true", _int(own.get(Header.VALUE_BYTES)),
                  own.get(Header.VALUE_SHA256) or None)
