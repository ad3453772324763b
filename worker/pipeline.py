"""The processing half of the worker: decode → route → claim in the ledger → run processors
(with retries) → mark done. The Kafka half (worker.kafka.engine) hands it batches and stores
offsets only when it returns `BatchResult(completed=True)`.

One batch is one ledger session: a single claim round trip for every (event, processor) key, the
processors' effects, a single mark-done round trip, one commit. On SQL ledgers all of it is one
transaction, so a crash anywhere leaves either every effect of the batch with its done marks, or
none of them (and the events come back from Kafka).

Outcomes per (event, processor): ok, duplicate (the ledger says it already happened), retried (one
count per failed attempt that was retried), dead_lettered, skipped (no processor matched).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Literal, Protocol

import structlog

from worker.errors import (
    EventDecodeError,
    FatalProcessingError,
    LedgerUnavailable,
    NonRetriableError,
)
from worker.events import Event, decode_event
from worker.ledger.base import ClaimState, Ledger, LedgerSession
from worker.observability.stats import BatchStats
from worker.processors.api import Context, Processor
from worker.types import BatchResult, DeadLetter, Message

log = structlog.get_logger("worker.pipeline")

Unmatched = Literal["skip", "dead_letter"]


class Resolver(Protocol):
    def resolve(self, event_type: str) -> tuple[Processor, ...]: ...


class MetricsSink(Protocol):
    def record_batch(self, stats: BatchStats) -> None: ...
    def record_ledger_op(self, op: str, seconds: float, error: bool) -> None: ...
    def set_ledger_up(self, up: bool) -> None: ...


class _Cancelled(Exception):
    """Internal: the engine asked us to stop this batch (revoke or shutdown)."""


class _Work:
    """One (event, processor) pair of a batch."""

    __slots__ = ("event", "key", "message", "processor")

    def __init__(self, message: Message, event: Event, processor: Processor, key: str) -> None:
        self.message = message
        self.event = event
        self.processor = processor
        self.key = key


class Pipeline:
    """Implements worker.types.BatchHandler."""

    def __init__(
        self,
        processors: Sequence[Processor],
        ledger: Ledger,
        metrics: MetricsSink | None = None,
        *,
        unmatched: Unmatched = "skip",
        router: Resolver | None = None,
        ledger_backoff: tuple[float, float] = (0.2, 10.0),
        busy_backoff: tuple[float, float] = (0.05, 2.0),
        sleep: Callable[[float, Callable[[], bool]], None] | None = None,
    ) -> None:
        if router is None:
            from worker.routing import Router

            router = Router(list(processors))
        self.processors = list(processors)
        self.router = router
        self.ledger = ledger
        self.metrics = metrics
        self.unmatched = unmatched
        self._ledger_backoff = ledger_backoff
        self._busy_backoff = busy_backoff
        self._sleep = sleep or _interruptible_sleep

    # -- the BatchHandler entry point -------------------------------------------------------
    def handle(self, messages: Sequence[Message], cancelled: Callable[[], bool]) -> BatchResult:
        stats = BatchStats(batch_size=len(messages))
        dead: list[DeadLetter] = []
        work = self._decode_and_route(messages, stats, dead)
        delay, max_delay = self._ledger_backoff
        while True:
            if cancelled():
                return BatchResult(completed=False)
            run_stats = _fresh_run_stats(stats)
            run_dead = list(dead)
            try:
                self._run(work, run_stats, run_dead, cancelled)
            except _Cancelled:
                return BatchResult(completed=False)
            except LedgerUnavailable as exc:
                if self.metrics is not None:
                    self.metrics.set_ledger_up(False)
                log.warning("ledger unavailable; retrying the batch", error=str(exc),
                            retry_in_s=round(delay, 2), batch_size=len(messages))
                self._sleep(delay, cancelled)
                delay = min(delay * 2, max_delay)
                continue
            if self.metrics is not None:
                if delay != self._ledger_backoff[0]:
                    self.metrics.set_ledger_up(True)
                self.metrics.record_batch(run_stats)
            return BatchResult(completed=True, dead_letters=run_dead)

    # -- phase 1: pure, no I/O -----------------------------------------------------------------
    def _decode_and_route(self, messages: Sequence[Message], stats: BatchStats,
                          dead: list[DeadLetter]) -> list[_Work]:
        work: list[_Work] = []
        consumed = stats.consumed
        unmatched = stats.unmatched
        resolve = self.router.resolve
        now_ms = time.time() * 1000.0
        latencies = stats.latency_seconds
        for msg in messages:
            consumed[msg.topic() or ""] += 1
            ts_type, ts_ms = msg.timestamp()
            if ts_type:
                latencies.append(max(0.0, (now_ms - ts_ms) / 1000.0))
            try:
                event = decode_event(msg.value())
            except EventDecodeError as exc:
                stats.dead_letters[exc.error_class] += 1
                dead.append(DeadLetter(msg, exc.error_class, exc.reason))
                continue
            procs = resolve(event.type)
            if not procs:
                unmatched[event.type] += 1
                if self.unmatched == "dead_letter":
                    stats.dead_letters["unmatched"] += 1
                    dead.append(DeadLetter(msg, "unmatched",
                                           f"$.type: no processor matches {event.type!r}"))
                continue
            for proc in procs:
                try:
                    key = proc.idempotency_key(event)
                except Exception as exc:  # a custom key function failed on this event
                    stats.outcomes[(proc.name, "dead_lettered")] += 1
                    stats.dead_letters["key_failed"] += 1
                    dead.append(DeadLetter(msg, "key_failed", _describe(exc), proc.name))
                    continue
                work.append(_Work(msg, event, proc, key))
        return work

    # -- phase 2: ledger + processors ------------------------------------------------------------
    def _run(self, work: list[_Work], stats: BatchStats, dead: list[DeadLetter],
             cancelled: Callable[[], bool]) -> None:
        if not work:
            return
        # A key seen twice in one batch (a redelivery that landed in the same batch) is claimed
        # once; the later copies are duplicates of the first.
        first: dict[str, _Work] = {}
        todo: list[_Work] = []
        outcomes = stats.outcomes
        for w in work:
            if w.key in first:
                outcomes[(w.processor.name, "duplicate")] += 1
            else:
                first[w.key] = w
                todo.append(w)

        session = self._timed("session", self.ledger.session)
        try:
            states = self._claim_all(session, [w.key for w in todo], cancelled)
            done_keys: list[str] = []
            transaction = session.transaction
            timings = stats.processing_seconds
            for w, state in zip(todo, states, strict=True):
                if state is ClaimState.DONE:
                    outcomes[(w.processor.name, "duplicate")] += 1
                    continue
                if self._call(w, session, transaction, stats, dead, timings, cancelled):
                    done_keys.append(w.key)
                    outcomes[(w.processor.name, "ok")] += 1
                else:
                    self._timed("release", session.release, [w.key])
            if done_keys:
                self._timed("mark_done", session.mark_done, done_keys)
            self._timed("commit", session.commit)
        except BaseException:
            _quiet_rollback(session)
            raise

    def _claim_all(self, session: LedgerSession, keys: list[str],
                   cancelled: Callable[[], bool]) -> list[ClaimState]:
        states: list[ClaimState] = self._timed("claim", session.claim, keys)
        delay, max_delay = self._busy_backoff
        while True:
            busy = [i for i, s in enumerate(states) if s is ClaimState.BUSY]
            if not busy:
                return states
            # Another worker holds a lease (its effect may be in flight): wait for it to finish
            # or for its lease to expire, then claim again.
            if cancelled():
                raise _Cancelled
            self._sleep(delay, cancelled)
            delay = min(delay * 2, max_delay)
            again = self._timed("claim", session.claim, [keys[i] for i in busy])
            for i, s in zip(busy, again, strict=True):
                states[i] = s

    def _call(self, w: _Work, session: LedgerSession, transaction: Any | None, stats: BatchStats,
              dead: list[DeadLetter], timings: dict[str, list[float]],
              cancelled: Callable[[], bool]) -> bool:
        """Run one processor on one event with its retry policy. True when the effect is done."""
        proc = w.processor
        msg = w.message
        attempt = 1
        while True:
            if cancelled():
                raise _Cancelled
            ctx = Context(proc, w.event, msg.topic() or "", msg.partition() or 0,
                          msg.offset() or 0, transaction, attempt)
            t0 = time.perf_counter()
            try:
                if transaction is None:
                    proc.func(w.event, ctx)
                else:
                    with session.savepoint():
                        proc.func(w.event, ctx)
            except LedgerUnavailable:
                raise
            except NonRetriableError as exc:
                timings.setdefault(proc.name, []).append(time.perf_counter() - t0)
                self._dead_letter(w, exc.error_class, str(exc), attempt, stats, dead)
                return False
            except Exception as exc:
                timings.setdefault(proc.name, []).append(time.perf_counter() - t0)
                if attempt >= proc.retry.max_attempts:
                    if proc.on_failure == "stop":
                        raise FatalProcessingError(
                            f"processor {proc.name!r} failed {attempt} times on event "
                            f"{w.event.id} ({msg.topic()}[{msg.partition()}]@{msg.offset()}): "
                            f"{_describe(exc)}; on_failure='stop', so the worker stops here"
                        ) from exc
                    self._dead_letter(w, "processor_failed", _describe(exc), attempt, stats, dead)
                    log.error("processor failed; event dead-lettered", processor=proc.name,
                              event_id=w.event.id, event_type=w.event.type,
                              group_id=w.event.group_id, topic=msg.topic(),
                              partition=msg.partition(), offset=msg.offset(), attempts=attempt,
                              error=_describe(exc))
                    return False
                stats.outcomes[(proc.name, "retried")] += 1
                self._sleep(proc.retry.delay(attempt), cancelled)
                attempt += 1
                continue
            timings.setdefault(proc.name, []).append(time.perf_counter() - t0)
            return True

    @staticmethod
    def _dead_letter(w: _Work, error_class: str, reason: str, attempts: int, stats: BatchStats,
                     dead: list[DeadLetter]) -> None:
        stats.outcomes[(w.processor.name, "dead_lettered")] += 1
        stats.dead_letters[error_class] += 1
        dead.append(DeadLetter(w.message, error_class, reason, w.processor.name, attempts))

    def _timed(self, op: str, fn: Callable[..., Any], *args: Any) -> Any:
        if self.metrics is None:
            return fn(*args)
        t0 = time.perf_counter()
        try:
            result = fn(*args)
        except LedgerUnavailable:
            self.metrics.record_ledger_op(op, time.perf_counter() - t0, True)
            raise
        self.metrics.record_ledger_op(op, time.perf_counter() - t0, False)
        return result


def _fresh_run_stats(decoded: BatchStats) -> BatchStats:
    """Counts from decoding stay; counts from a failed ledger attempt are thrown away."""
    stats = BatchStats(batch_size=decoded.batch_size)
    stats.consumed.update(decoded.consumed)
    stats.unmatched.update(decoded.unmatched)
    stats.dead_letters.update(decoded.dead_letters)
    stats.outcomes.update(decoded.outcomes)
    stats.latency_seconds.extend(decoded.latency_seconds)
    return stats


def _quiet_rollback(session: LedgerSession) -> None:
    try:
        session.rollback()
    except Exception as exc:  # the store may be gone; the transaction dies with it
        log.debug("ledger rollback failed", error=str(exc))


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _interruptible_sleep(seconds: float, cancelled: Callable[[], bool]) -> None:
    """Sleep in small steps, returning early once `cancelled()` (noticed within ~50 ms)."""
    deadline = time.monotonic() + seconds
    while not cancelled():
        left = deadline - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, 0.05))
