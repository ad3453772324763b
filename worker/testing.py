"""A test harness for processor authors: the real decode → route → ledger → processor path, in
memory, without Kafka.

    from worker.testing import Harness

    def test_my_processor():
        h = Harness(modules=["my_pkg.processors"])
        result = h.send({"id": "evcus_1", "type": "customer.order.paid", "group_id": "v-1",
                         "created_at": "2024-03-11T12:06:34.423Z", "data": {...}})
        assert result.outcomes == {("my_processor", "ok"): 1}
        h.send(result.sent[0])                   # redelivery
        assert h.outcomes[("my_processor", "duplicate")] == 1

Events may be dicts, JSON strings or bytes. With the default SQLite ledger (a temporary file),
processors get `ctx.transaction` like in production and `h.query(sql)` reads their read models.
Records processors emit (`ctx.emit`) are acknowledged at once and kept in `h.emitted` (and in
each send's `result.emitted`).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from worker.ledger import open_ledger
from worker.outputs import Deliveries, OutputRecord
from worker.processing.pipeline import Pipeline
from worker.processing.planning import Unmatched
from worker.processors.api import Processor
from worker.processors.discovery import load_processors, run_setup
from worker.types import DeadLetter, LocalMessage

EventInput = Mapping[str, Any] | str | bytes


@dataclass
class SendResult:
    """What one `send` did."""

    sent: list[bytes]
    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    unmatched: Counter[str] = field(default_factory=Counter)
    emitted: list[OutputRecord] = field(default_factory=list)


class MemoryOutputs:
    """An output sink (worker.outputs.OutputSink) that keeps the records and acknowledges them
    at once."""

    def __init__(self) -> None:
        self.records: list[OutputRecord] = []

    def produce(self, records: Sequence[OutputRecord], deliveries: Deliveries) -> None:
        deliveries.expect(len(records))
        self.records.extend(records)
        for _ in records:
            deliveries.report(None)

    def close(self) -> None:
        pass


class Harness:
    def __init__(self, processors: Sequence[Processor] | None = None, *,
                 modules: Sequence[str] = (), builtins: bool = False,
                 ledger: str | None = None, unmatched: Unmatched = "skip",
                 retry_sleep: bool = False, topic: str = "customer-activity") -> None:
        """`processors` given explicitly, or loaded from `modules` (and the built-ins if asked).
        `ledger` is a ledger URL; by default a SQLite file in a temporary directory.
        Retry backoff is skipped unless `retry_sleep`, so tests of retries stay fast."""
        self._tmp: str | None = None
        if ledger is None:
            self._tmp = tempfile.mkdtemp(prefix="activity-worker-harness-")
            ledger = f"sqlite:///{Path(self._tmp) / 'ledger.db'}"
        if processors is None:
            processors = load_processors(list(modules), entry_points=False, builtins=builtins)
        self.processors = list(processors)
        self.ledger = open_ledger(ledger)
        run_setup(self.processors, self.ledger)
        self.outputs = MemoryOutputs()
        self.pipeline = Pipeline(self.processors, self.ledger, unmatched=unmatched,
                                 sleep=None if retry_sleep else (lambda s, c: None),
                                 outputs=self.outputs)
        self.topic = topic
        self._offset = 0
        self.outcomes: Counter[tuple[str, str]] = Counter()
        self.dead_letters: list[DeadLetter] = []

    def send(self, *events: EventInput, partition: int = 0) -> SendResult:
        """Feed events as one batch; return what happened to them."""
        values = [_to_bytes(e) for e in events]
        msgs = []
        for v in values:
            msgs.append(LocalMessage(v, self.topic, partition, self._offset))
            self._offset += 1
        before = len(self.outputs.records)
        result = self.pipeline.handle(msgs, lambda: False)
        stats = result.stats
        out = SendResult(values, Counter(stats.outcomes), list(result.dead_letters),
                         Counter(stats.unmatched), self.outputs.records[before:])
        self.outcomes.update(out.outcomes)
        self.dead_letters.extend(out.dead_letters)
        return out

    @property
    def emitted(self) -> list[OutputRecord]:
        """Every record the processors emitted so far, in order."""
        return list(self.outputs.records)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Read the processors' read models (SQL ledgers only)."""
        session = self.ledger.session()
        conn = session.transaction
        if conn is None:
            raise RuntimeError("query() needs a SQL ledger (sqlite:// or postgresql://)")
        try:
            rows = [tuple(r) for r in conn.execute(sql, tuple(params)).fetchall()]
        finally:
            session.rollback()
        return rows

    def close(self) -> None:
        self.pipeline.close()
        self.ledger.close()
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> Harness:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _to_bytes(e: EventInput) -> bytes:
    if isinstance(e, bytes):
        return e
    if isinstance(e, str):
        return e.encode()
    return json.dumps(e).encode()
