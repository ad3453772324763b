"""The pipeline (decode → route → ledger → processors) without Kafka, on the memory and SQLite
ledgers. Kafka semantics (offsets, redelivery, DLQ writes) are tested against the real broker in
tests/engine/."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from worker.errors import EventDecodeError, FatalProcessingError, LedgerUnavailable
from worker.events import Event
from worker.ledger import open_ledger
from worker.ledger.base import Ledger, LedgerSession
from worker.processing.pipeline import Pipeline
from worker.processing.routing import Router
from worker.processors.api import Context, Processor, RetryPolicy
from worker.types import BatchResult, BatchStats, LocalMessage, Message


def event(n: int, type_: str = "customer.order.paid", group: str | None = None,
          data: Any = None) -> bytes:
    return json.dumps({
        "id": f"evcus_{n:018d}", "type": type_, "group_id": group or f"v-{n:018d}",
        "created_at": "2024-03-11T12:06:34.423Z",
        "data": data if data is not None else {"customer": {"id": f"cust_{n}"}},
    }).encode()


def messages(values: Sequence[bytes], start: int = 0) -> list[LocalMessage]:
    return [LocalMessage(v, "t", 0, start + i) for i, v in enumerate(values)]


class Recorder:
    """Keeps every completed batch's stats (they come back in the result) and the pipeline's
    `ledger_up` at each backoff sleep."""

    def __init__(self) -> None:
        self.batches: list[BatchStats] = []
        self.ledger_up: list[bool] = []

    @property
    def outcomes(self) -> Counter[tuple[str, str]]:
        total: Counter[tuple[str, str]] = Counter()
        for b in self.batches:
            total.update(b.outcomes)
        return total


class RecordedPipeline(Pipeline):
    rec: Recorder

    def handle(self, messages: Sequence[Message], cancelled: Callable[[], bool]) -> BatchResult:
        result = super().handle(messages, cancelled)
        if result.completed:
            self.rec.batches.append(result.stats)
        return result


def proc(name: str, pattern: str, func: Callable[[Event, Context], None],
         **kw: Any) -> Processor:
    kw.setdefault("retry", RetryPolicy(max_attempts=3, initial_backoff=0.0))
    return Processor(name=name, patterns=(pattern,), func=func, **kw)


def never() -> bool:
    return False


def make(processors: list[Processor], ledger: Ledger, **kw: Any) -> tuple[Pipeline, Recorder]:
    rec = Recorder()
    pipe = RecordedPipeline(processors, ledger, router=Router(processors),
                            sleep=lambda s, c: rec.ledger_up.append(pipe.ledger_up), **kw)
    pipe.rec = rec
    return pipe, rec


def test_fan_out_runs_every_matching_processor_once(ledger: Ledger) -> None:
    seen: list[tuple[str, str]] = []
    a = proc("a", "customer.order.*", lambda e, c: seen.append(("a", e.id)))
    b = proc("b", "customer.**", lambda e, c: seen.append(("b", e.id)))
    c = proc("c", "customer.loyalty.**", lambda e, c: seen.append(("c", e.id)))
    pipe, rec = make([a, b, c], ledger)
    result = pipe.handle(messages([event(1)]), never)
    assert result.completed and result.dead_letters == []
    assert seen == [("a", "evcus_000000000000000001"), ("b", "evcus_000000000000000001")]
    assert rec.outcomes == {("a", "ok"): 1, ("b", "ok"): 1}


def test_redelivered_event_is_a_duplicate_in_the_same_and_a_later_batch(ledger: Ledger) -> None:
    seen: list[str] = []
    pipe, rec = make([proc("p", "**", lambda e, c: seen.append(e.id))], ledger)
    assert pipe.handle(messages([event(1), event(2), event(1)]), never).completed
    assert pipe.handle(messages([event(2), event(3)], start=3), never).completed
    assert seen == ["evcus_000000000000000001", "evcus_000000000000000002",
                    "evcus_000000000000000003"]
    assert rec.outcomes == {("p", "ok"): 3, ("p", "duplicate"): 2}


def test_distinct_events_of_one_request_are_not_duplicates_unless_once_per_group(
        ledger: Ledger) -> None:
    per_event: list[str] = []
    per_group: list[str] = []
    pipe, rec = make([
        proc("per_event", "**", lambda e, c: per_event.append(e.id)),
        proc("per_group", "**", lambda e, c: per_group.append(e.id), once_per="group"),
    ], ledger)
    batch = [event(1, group="v-same"), event(2, "customer.rewarded.loyalty_points", "v-same")]
    assert pipe.handle(messages(batch), never).completed
    assert len(per_event) == 2
    assert per_group == ["evcus_000000000000000001"]
    assert rec.outcomes[("per_group", "duplicate")] == 1


def test_a_failing_processor_is_retried_then_succeeds_in_order(ledger: Ledger) -> None:
    calls: list[tuple[str, int]] = []

    def flaky(e: Event, ctx: Context) -> None:
        calls.append((e.id, ctx.attempt))
        if e.id.endswith("2") and ctx.attempt < 3:
            raise RuntimeError("downstream timeout")

    pipe, rec = make([proc("flaky", "**", flaky)], ledger)
    result = pipe.handle(messages([event(1), event(2), event(3)]), never)
    assert result.completed and not result.dead_letters
    assert [c[0][-1] for c in calls] == ["1", "2", "2", "2", "3"]
    assert rec.outcomes == {("flaky", "ok"): 3, ("flaky", "retried"): 2}


def test_exhausted_retries_dead_letter_for_that_processor_only(ledger: Ledger) -> None:
    good: list[str] = []

    def bad(e: Event, ctx: Context) -> None:
        raise ValueError("no such customer")

    pipe, rec = make([proc("good", "**", lambda e, c: good.append(e.id)),
                      proc("bad", "**", bad)], ledger)
    msgs = messages([event(1)])
    result = pipe.handle(msgs, never)
    assert result.completed
    assert good == ["evcus_000000000000000001"]
    [dl] = result.dead_letters
    assert (dl.processor, dl.error_class, dl.attempts) == ("bad", "processor_failed", 3)
    assert dl.reason == "ValueError: no such customer" and dl.source is msgs[0]
    assert rec.outcomes == {("good", "ok"): 1, ("bad", "retried"): 2, ("bad", "dead_lettered"): 1}
    # the good processor's success stands: a redelivery does not run it again
    pipe.handle(messages([event(1)], start=1), never)
    assert good == ["evcus_000000000000000001"]


def test_on_failure_stop_raises_fatal(ledger: Ledger) -> None:
    def bad(e: Event, ctx: Context) -> None:
        raise RuntimeError("boom")

    pipe, _ = make([proc("bad", "**", bad, on_failure="stop")], ledger)
    with pytest.raises(FatalProcessingError, match="'bad' failed 3 times"):
        pipe.handle(messages([event(1)]), never)


def test_bad_bytes_are_dead_lettered_and_the_rest_is_processed(ledger: Ledger) -> None:
    seen: list[str] = []
    pipe, rec = make([proc("p", "**", lambda e, c: seen.append(e.id))], ledger)
    batch = [b"\xff\xfe", b'{"id": "x"', b"[1,2]", event(1), b'{"id":"e","type":"t"}']
    result = pipe.handle(messages(batch), never)
    assert result.completed
    assert seen == ["evcus_000000000000000001"]
    assert [d.source.offset() for d in result.dead_letters] == [0, 1, 2, 4]
    assert all(d.processor is None for d in result.dead_letters)
    assert sum(rec.batches[0].dead_letters.values()) == 4
    assert rec.batches[0].consumed == {"t": 5}


def test_a_schema_error_raised_by_a_processor_is_dead_lettered_without_retry(
        ledger: Ledger) -> None:
    def reads_data(e: Event, ctx: Context) -> None:
        raise EventDecodeError("schema", "$.data.customer.id: expected str, got int")

    pipe, rec = make([proc("p", "**", reads_data)], ledger)
    [dl] = pipe.handle(messages([event(1)]), never).dead_letters
    assert (dl.error_class, dl.attempts, dl.processor) == ("schema", 1, "p")
    assert "$.data.customer.id" in dl.reason
    assert ("p", "retried") not in rec.outcomes


@pytest.mark.parametrize("policy", ["skip", "dead_letter"])
def test_unmatched_events_are_counted_and_skipped_or_dead_lettered(ledger: Ledger,
                                                                    policy: str) -> None:
    pipe, rec = make([proc("p", "customer.order.*", lambda e, c: None)], ledger,
                     unmatched=policy)
    result = pipe.handle(messages([event(1, "customer.segment.left"), event(2)]), never)
    assert rec.batches[0].unmatched == {"customer.segment.left": 1}
    if policy == "skip":
        assert result.dead_letters == []
    else:
        [dl] = result.dead_letters
        assert dl.error_class == "unmatched" and dl.source.offset() == 0


def test_a_cancelled_batch_keeps_what_finished_and_runs_the_rest_again(ledger: Ledger) -> None:
    """The effect that finished before the cancellation happened: its done mark (and, on SQL,
    its writes) is committed, so the redelivered batch skips it; the rest runs then."""
    seen: list[str] = []
    stop = {"now": False}

    def p(e: Event, ctx: Context) -> None:
        seen.append(e.id)
        stop["now"] = True  # the engine revokes the partition during the first call

    pipe, _ = make([proc("p", "**", p)], ledger)
    result = pipe.handle(messages([event(1), event(2)]), lambda: stop["now"])
    assert result.completed is False
    assert seen == ["evcus_000000000000000001"]
    stop["now"] = False
    seen.clear()
    assert pipe.handle(messages([event(1), event(2)]), never).completed
    assert seen == ["evcus_000000000000000002"]


def test_sql_effects_commit_with_the_done_marks_and_roll_back_per_processor(
        tmp_path: Path) -> None:
    ledger = open_ledger(f"sqlite:///{tmp_path / 'l.db'}")
    session = ledger.session()
    session.transaction.execute("CREATE TABLE IF NOT EXISTS effects (proc TEXT, event TEXT)")
    session.commit()

    def writer(name: str, fail: bool = False) -> Callable[[Event, Context], None]:
        def f(e: Event, ctx: Context) -> None:
            ctx.transaction.execute("INSERT INTO effects VALUES (?, ?)", (name, e.id))
            if fail:
                raise RuntimeError("after writing")
        return f

    pipe, _ = make([proc("ok", "**", writer("ok")), proc("bad", "**", writer("bad", True))],
                   ledger)
    result = pipe.handle(messages([event(1), event(2)]), never)
    assert result.completed and len(result.dead_letters) == 2
    rows = sqlite3.connect(tmp_path / "l.db").execute(
        "SELECT proc, event FROM effects ORDER BY event").fetchall()
    assert rows == [("ok", "evcus_000000000000000001"), ("ok", "evcus_000000000000000002")]
    ledger.close()


class FlakyLedger:
    """Wraps a real ledger; its sessions fail with LedgerUnavailable `failures` times."""

    def __init__(self, inner: Ledger, failures: int) -> None:
        self.inner = inner
        self.failures = failures
        self.url = inner.url

    def session(self) -> LedgerSession:
        if self.failures > 0:
            self.failures -= 1
            raise LedgerUnavailable("store down (test)")
        return self.inner.session()

    def ping(self) -> None:
        self.inner.ping()

    def prune(self) -> int:
        return self.inner.prune()

    def close(self) -> None:
        self.inner.close()


def test_an_unreachable_ledger_is_retried_and_nothing_is_skipped(ledger: Ledger) -> None:
    seen: list[str] = []
    flaky = FlakyLedger(ledger, failures=2)
    pipe, rec = make([proc("p", "**", lambda e, c: seen.append(e.id))], flaky)
    result = pipe.handle(messages([event(1)]), never)
    assert result.completed and seen == ["evcus_000000000000000001"]
    assert rec.ledger_up == [False, False] and pipe.ledger_up
    assert result.stats.ledger_errors == {"session": 2}
    assert len(result.stats.ledger_seconds["session"]) == 3


def test_an_unreachable_ledger_gives_up_only_when_cancelled(ledger: Ledger) -> None:
    flaky = FlakyLedger(ledger, failures=10**9)
    calls = {"n": 0}

    def cancelled() -> bool:
        calls["n"] += 1
        return calls["n"] > 5

    pipe, _ = make([proc("p", "**", lambda e, c: None)], flaky)
    assert pipe.handle(messages([event(1)]), cancelled).completed is False


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_the_pipeline_prunes_done_marks_past_their_retention(backend: str,
                                                             tmp_path: Path) -> None:
    now = [1_000_000.0]
    url = "memory://" if backend == "memory" else f"sqlite:///{tmp_path / 'l.db'}"
    led = open_ledger(url, retention_seconds=100, lease_seconds=10, prune_interval_seconds=0,
                      clock=lambda: now[0])
    seen: list[str] = []
    pipe, _ = make([proc("p", "**", lambda e, c: seen.append(e.id))], led, prune_every=0)
    assert pipe.handle(messages([event(1), event(2)]), never).completed
    now[0] += 50
    assert pipe.handle(messages([event(1)], start=2), never).completed  # still a duplicate
    assert seen == [event_id(1), event_id(2)]
    now[0] += 60  # events 1 and 2 are past retention: the next batch's prune drops them
    assert pipe.handle(messages([event(3)], start=3), never).completed
    assert stored_keys(led) == 1  # only event 3's
    assert pipe.handle(messages([event(1)], start=4), never).completed
    assert seen == [event_id(1), event_id(2), event_id(3), event_id(1)]
    led.close()


def event_id(n: int) -> str:
    return f"evcus_{n:018d}"


def stored_keys(led: Ledger) -> int:
    session = led.session()
    conn = session.transaction
    try:
        if conn is None:
            return len(led)  # type: ignore[arg-type]
        return int(conn.execute("SELECT count(*) FROM activity_worker_ledger").fetchone()[0])
    finally:
        session.rollback()


def test_a_failed_prune_is_logged_and_the_batch_still_completes(tmp_path: Path) -> None:
    led = open_ledger(f"sqlite:///{tmp_path / 'l.db'}")

    def broken() -> int:
        raise LedgerUnavailable("disk gone")

    led.prune = broken  # type: ignore[method-assign]
    pipe, rec = make([proc("p", "**", lambda e, c: None)], led, prune_every=0)
    assert pipe.handle(messages([event(1)]), never).completed
    assert rec.outcomes == Counter({("p", "ok"): 1})
    led.close()


class DoneMarkFails:
    """A session of a store without transactions whose mark_done (then commit) fails while
    the store is away: the effects already ran."""

    def __init__(self, inner: LedgerSession, failures: dict[str, int]) -> None:
        self._inner = inner
        self._failures = failures

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    def _maybe_fail(self, op: str) -> None:
        if self._failures.get(op, 0) > 0:
            self._failures[op] -= 1
            raise LedgerUnavailable(f"store down during {op} (test)")

    def mark_done(self, keys: list[str]) -> None:
        self._maybe_fail("mark_done")
        self._inner.mark_done(keys)

    def commit(self) -> None:
        self._maybe_fail("commit")
        self._inner.commit()


class MarkingFails(FlakyLedger):
    def __init__(self, inner: Ledger, failures: dict[str, int]) -> None:
        super().__init__(inner, 0)
        self.op_failures = failures

    def session(self) -> LedgerSession:
        return DoneMarkFails(self.inner.session(), self.op_failures)  # type: ignore[return-value]


def test_effects_outside_the_store_are_not_run_again_when_marking_them_done_fails() -> None:
    """Redis-like (no transaction): the store goes away after the effects ran; only marking
    them done is retried, so the ledger's restart repeats no effect."""
    seen: list[str] = []
    flaky = MarkingFails(open_ledger("memory://"), {"mark_done": 2, "commit": 1})
    pipe, _ = make([proc("p", "**", lambda e, c: seen.append(e.id))], flaky)
    result = pipe.handle(messages([event(1), event(2)]), never)
    assert result.completed
    assert seen == [event_id(1), event_id(2)]  # once each
    assert result.stats.ledger_errors == {"mark_done": 2, "commit": 1}
    assert pipe.handle(messages([event(1)], start=2), never).completed
    assert seen == [event_id(1), event_id(2)]  # a redelivery is a duplicate: marked done


def test_effects_in_a_sql_transaction_run_again_when_its_commit_fails(tmp_path: Path) -> None:
    """SQL: the effects' writes die with the transaction, so the batch runs again."""
    seen: list[str] = []
    flaky = MarkingFails(open_ledger(f"sqlite:///{tmp_path / 'l.db'}"), {"commit": 1})
    pipe, _ = make([proc("p", "**", lambda e, c: seen.append(e.id))], flaky)
    assert pipe.handle(messages([event(1)]), never).completed
    assert seen == [event_id(1), event_id(1)]
