"""What happens to a batch's dead letters before its offsets may be stored: the guardrail (a bad
deploy stops the worker instead of emptying the topic into the DLQ), then the write — retried,
with consumption paused, for as long as it fails, because an exit would only restart into the
same failure (a crash loop). Letters go to a sink (worker.engine.dead_letter_sink); over Kafka
that is `worker.kafka.dead_letter_producer`, writing the format of
`worker.kafka.dead_letter_format`."""

from __future__ import annotations

import contextlib
import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import structlog

from worker.engine.dead_letter_sink import (
    DeadLetterDelivery,
    DeadLetterError,
    DeadLetterSink,
)
from worker.engine.lifecycle import EXIT_ERROR, EXIT_GUARDRAIL, RunCounts
from worker.observer import WorkerObserver
from worker.types import DeadLetter
from worker.vocabulary import NOT_THE_EVENTS_FAULT

log = structlog.get_logger(__name__)

#: Backoff of a dead-letter write that failed: first wait, doubling up to the last.
RETRY_FIRST_S, RETRY_MAX_S = 0.5, 30.0


class Guardrail:
    """Trips when more than `share` of the last `window` events were dead-lettered (evaluated
    once at least `min_events` are in the window)."""

    def __init__(self, share: float, window: int, min_events: int) -> None:
        self.share = share
        self.window = window
        self.min_events = min(min_events, window)
        self._entries: deque[tuple[int, int]] = deque()
        self.events = 0  # in the window
        self._dead = 0

    def add(self, events: int, dead: int) -> bool:
        self._entries.append((events, dead))
        self.events += events
        self._dead += dead
        while self._entries and self.events - self._entries[0][0] >= self.window:
            e, d = self._entries.popleft()
            self.events -= e
            self._dead -= d
        return self.tripped()

    def tripped(self) -> bool:
        if self.share >= 1.0 or self.events < self.min_events:
            return False
        return self._dead > self.share * self.events

    @property
    def current_share(self) -> float:
        return self._dead / self.events if self.events else 0.0


@dataclass(frozen=True, slots=True)
class Settled:
    """What became of a finished batch's dead letters: whether its offsets may be stored, and
    the exit code and sentence to stop the worker with, if it must stop."""

    stored: bool
    failure: tuple[int, str] | None = None


@dataclass(frozen=True, slots=True)
class Sending:
    """A finished batch's dead letters on their way (`DeadLetterPolicy.start`)."""

    letters: Sequence[DeadLetter]
    dead_events: int
    delivery: DeadLetterDelivery
    shrunk_before: int


class _Failed:
    """A delivery that failed before a letter was produced."""

    def __init__(self, error: DeadLetterError) -> None:
        self._error = error

    def done(self) -> bool:
        raise self._error

    def wait(self, timeout: float) -> bool:
        raise self._error


class DeadLetterPolicy:
    """The guardrail and the dead-letter writes of one engine."""

    def __init__(self, producer: DeadLetterSink | None, guardrail: Guardrail,
                 observer: WorkerObserver | None = None,
                 counts: RunCounts | None = None) -> None:
        self._producer = producer
        self.guardrail = guardrail
        self._observer = observer or WorkerObserver()
        self.counts = counts or RunCounts()

    def settle(self, events: int, letters: Sequence[DeadLetter],
               wait: Callable[[float], bool]) -> Settled:
        """A batch of `events` finished with `letters`: count it in the guardrail, then write
        and confirm the letters (see `write` for `wait`)."""
        started = self.start(events, letters)
        if isinstance(started, Settled):
            return started
        # (the sink's own timeout bounds the wait; a failure: `written` writes them again)
        with contextlib.suppress(DeadLetterError):
            started.delivery.wait(math.inf)
        return self.written(started, wait)

    def start(self, events: int, letters: Sequence[DeadLetter]) -> Settled | Sending:
        """A batch of `events` finished with `letters`: count it in the guardrail, then start
        writing the letters without waiting; `written` says what became of them. The guardrail
        counts bad events only: a `destination_unavailable` letter (an outage past
        --max-outage) is not the event's fault, and an outage must not stop the worker."""
        dead_events = len({id(d.source) for d in letters}) if letters else 0
        bad_events = dead_events if not letters else len(
            {id(d.source) for d in letters if d.error_class not in NOT_THE_EVENTS_FAULT})
        tripped = self.check(events, bad_events)
        if tripped is not None:
            return Settled(False, (EXIT_GUARDRAIL, tripped))
        if not letters:
            return Settled(True)
        producer = self._producer
        if producer is None:
            return Settled(False, (EXIT_ERROR, "events must be dead-lettered but no DLQ "
                                               "producer is configured; set --dlq-topic"))
        shrunk_before = producer.shrunk
        try:
            delivery: DeadLetterDelivery = producer.submit(letters)
        except DeadLetterError as exc:
            delivery = _Failed(exc)
        return Sending(letters, dead_events, delivery, shrunk_before)

    def written(self, sending: Sending, wait: Callable[[float], bool]) -> Settled:
        """The outcome of letters `start` sent, once their delivery is done (or failed): stored;
        or, when it failed, written again with `write`'s retries (see there for `wait`)."""
        producer, observer = self._producer, self._observer
        assert producer is not None
        try:
            ok = sending.delivery.done()
        except DeadLetterError as exc:
            ok = False
            observer.dlq_write(False)
            log.warning("dead letters not acknowledged; writing them again", error=str(exc),
                        letters=len(sending.letters))
        if ok:
            observer.dlq_write(True, producer.shrunk - sending.shrunk_before)
        elif not self.write(sending.letters, wait):
            log.warning("dead letters not written; their batch is not committed and "
                        "comes back", letters=len(sending.letters))
            return Settled(False)  # stopping, or its partitions are gone
        self.counts.dead_letters += len(sending.letters)
        self.counts.dead_lettered_events += sending.dead_events
        return Settled(True)

    @property
    def can_write(self) -> bool:
        return self._producer is not None

    def check(self, events: int, dead_events: int) -> str | None:
        """Count a finished batch; the sentence to stop with when the guardrail trips."""
        g = self.guardrail
        if not g.add(events, dead_events):
            return None
        self._observer.guardrail_tripped()
        return (f"DLQ guardrail tripped: {g.current_share:.0%} of the last {g.events} events "
                f"were dead-lettered (limit {g.share:.0%}); this batch was not dead-lettered "
                "or committed. Check the latest deploy or the producer, then restart (or raise "
                "--dlq-max-share)")

    def write(self, letters: Sequence[DeadLetter], wait: Callable[[float], bool]) -> bool:
        """Write `letters`; True once they are acknowledged. While a write fails, `wait(delay)`
        is called between tries (the engine pauses and serves its consumer there) and says
        whether to go on; False when it says no (stopping, partitions gone). One log line per
        state change; `dlq_write_failing`/`dlq_write_failures_total` and `/readyz` tell."""
        producer = self._producer
        assert producer is not None
        delay, failing, observer = RETRY_FIRST_S, False, self._observer
        while True:
            shrunk_before = producer.shrunk
            try:
                producer.send(letters)
            except DeadLetterError as exc:
                observer.dlq_write(False)
                if not failing:
                    failing = True
                    log.error("dead letters cannot be written; consumption paused, retrying",
                              error=str(exc), letters=len(letters))
                    observer.set_dlq_writable(False)
                if not wait(delay):
                    return False
                delay = min(delay * 2, RETRY_MAX_S)
                continue
            observer.dlq_write(True, producer.shrunk - shrunk_before)
            if failing:
                log.info("dead letters written again; consumption resumes")
                observer.set_dlq_writable(True)
            return True

    def serve(self) -> None:
        if self._producer is not None:
            self._producer.serve()

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close()
