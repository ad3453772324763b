"""In-memory stand-ins for the engine tests: a ledger (the contract's memory behaviour, minus
leases) and a resolver, so the real Pipeline runs without the ledger/routing packages."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from worker.ledger.base import ClaimState
from worker.processors.api import Processor


class FakeLedger:
    url = "memory://test"

    def __init__(self) -> None:
        self.done: set[str] = set()
        self.lock = threading.Lock()

    def session(self) -> FakeSession:
        return FakeSession(self)

    def ping(self) -> None:
        pass

    def prune(self) -> int:
        return 0

    def close(self) -> None:
        pass


class FakeSession:
    def __init__(self, ledger: FakeLedger) -> None:
        self.ledger = ledger
        self.pending: list[str] = []

    @property
    def transaction(self) -> Any | None:
        return None

    def claim(self, keys: Sequence[str]) -> list[ClaimState]:
        with self.ledger.lock:
            return [ClaimState.DONE if k in self.ledger.done else ClaimState.NEW for k in keys]

    @contextlib.contextmanager
    def savepoint(self) -> Iterator[None]:
        yield

    def mark_done(self, keys: Sequence[str]) -> None:
        self.pending.extend(keys)

    def release(self, keys: Sequence[str]) -> None:
        pass

    def commit(self) -> None:
        with self.ledger.lock:
            self.ledger.done.update(self.pending)
        self.pending = []

    def rollback(self) -> None:
        self.pending = []


class ExactResolver:
    """Routes an event type to the processors whose patterns include it verbatim or '*'."""

    def __init__(self, processors: Sequence[Processor]) -> None:
        self.processors = list(processors)

    def resolve(self, event_type: str) -> tuple[Processor, ...]:
        return tuple(p for p in self.processors
                     if event_type in p.patterns or "*" in p.patterns)
