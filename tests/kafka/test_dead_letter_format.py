"""The dead-letter format: full letters, shrunk letters that always fit, bounded reasons; the
reader understands what the writer wrote (one codec)."""

from __future__ import annotations

import hashlib

import pytest

from worker.errors import MAX_REASON_CHARS, cut, describe
from worker.kafka.dead_letter_format import (
    Header,
    full_letter,
    letter_of,
    record_size,
    shrunk_letter,
)
from worker.types import DeadLetter, LocalMessage


class _Read:
    """A consumed DLQ record, as confluent-kafka's Message shows it."""

    def __init__(self, key: bytes | None, value: bytes | None, headers: list) -> None:
        self._k, self._v, self._h = key, value, headers

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return 9

    def key(self) -> bytes | None:
        return self._k

    def value(self) -> bytes | None:
        return self._v

    def headers(self) -> list:
        return self._h


def _letter(value: bytes, key: bytes | None = b"k", headers: list | None = None,
            reason: str = "$: JSON is malformed") -> DeadLetter:
    msg = LocalMessage(value, "src", 2, 41, key, headers or [])
    return DeadLetter(msg, "invalid_json", reason, "", 1)


def test_a_full_letter_is_the_original_plus_the_worker_headers() -> None:
    key, value, headers = full_letter(_letter(b"{x", headers=[("h", b"v")]), "now")
    assert (key, value) == (b"k", b"{x")
    assert headers[0] == ("h", b"v")
    read = letter_of(_Read(key, value, headers))
    assert (read.error_class, read.source_topic, read.source_partition, read.source_offset,
            read.truncated, read.headers) == ("invalid_json", "src", 2, 41, False, [("h", b"v")])


@pytest.mark.parametrize(("value_size", "key_size", "n_headers", "budget"), [
    (1_048_000, 10, 0, 1_000_000),
    (5_000_000, 10, 1000, 1_000_000),
    (100_000, 500_000, 10, 200_000),
    (10, 10, 3000, 50_000),
    (1_000_000, 10, 0, 2000),
])
def test_a_shrunk_letter_fits_and_keeps_the_reference(value_size: int, key_size: int,
                                                      n_headers: int, budget: int) -> None:
    value = bytes(range(256)) * (value_size // 256) + b"x" * (value_size % 256)
    key = b"K" * key_size
    headers = [(f"h{i}", b"v" * 30) for i in range(n_headers)]
    k, v, h = shrunk_letter(_letter(value, key, headers), "now", budget)
    assert record_size(k, v, h) <= budget
    assert value.startswith(v or b"")
    read = letter_of(_Read(k, v, h))
    assert read.truncated and read.value_bytes == len(value)
    assert read.value_sha256 == hashlib.sha256(value).hexdigest()
    assert (read.source_topic, read.source_partition, read.source_offset) == ("src", 2, 41)
    own = {n: x for n, x in h if n.startswith("worker.")}
    assert own[Header.HEADERS] == str(n_headers).encode()
    if k is None:
        assert own[Header.KEY_SHA256] == hashlib.sha256(key).hexdigest().encode()


def test_reasons_and_exception_texts_are_cut_and_marked() -> None:
    assert cut("short") == "short"
    long = "x" * 5_000_000
    assert cut(long) == "x" * MAX_REASON_CHARS + "... [cut: 5000000 characters]"
    assert describe(ValueError(long)).endswith("... [cut: 5000012 characters]")
    _, _, headers = full_letter(_letter(b"{", reason=long), "now")
    reason = dict(headers)[Header.ERROR_REASON]
    assert isinstance(reason, bytes) and len(reason) < MAX_REASON_CHARS + 50

    class Hostile(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    assert describe(Hostile()) == "Hostile: (str() of the exception failed)"
