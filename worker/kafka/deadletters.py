"""What happens to a batch's dead letters before its offsets may be stored: the guardrail (a bad
deploy stops the worker instead of emptying the topic into the DLQ), then the write — retried,
with consumption paused, for as long as it fails, because an exit would only restart into the
same failure (a crash loop). The record format is `worker.kafka.letters`; the producer that
writes it, `worker.kafka.dlq`."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import structlog

from worker.kafka.dlq import DeadLetterError, DeadLetterProducer
from worker.types import DeadLetter

log = structlog.get_logger("worker.engine")

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


class DeadLetterPolicy:
    """The guardrail and the dead-letter writes of one engine."""

    def __init__(self, producer: DeadLetterProducer | None, guardrail: Guardrail, *,
                 metrics: Any = None, health: Any = None) -> None:
        self._producer = producer
        self.guardrail = guardrail
        self._metrics = metrics
        self._health = health

    @property
    def can_write(self) -> bool:
        return self._producer is not None

    def check(self, events: int, dead_events: int) -> str | None:
        """Count a finished batch; the sentence to stop with when the guardrail trips."""
        g = self.guardrail
        if not g.add(events, dead_events):
            return None
        if self._metrics is not None:
            self._metrics.guardrail_tripped()
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
        delay, failing, metrics, health = RETRY_FIRST_S, False, self._metrics, self._health
        while True:
            shrunk_before = producer.shrunk
            try:
                producer.send(letters)
            except DeadLetterError as exc:
                if metrics is not None:
                    metrics.dlq_write(False)
                if not failing:
                    failing = True
                    log.error("dead letters cannot be written; consumption paused, retrying",
                              error=str(exc), letters=len(letters))
                    if health is not None:
                        health.set_dlq_writable(False)
                if not wait(delay):
                    return False
                delay = min(delay * 2, RETRY_MAX_S)
                continue
            if metrics is not None:
                metrics.dlq_write(True, producer.shrunk - shrunk_before)
            if failing:
                log.info("dead letters written again; consumption resumes")
                if health is not None:
                    health.set_dlq_writable(True)
            return True

    def serve(self) -> None:
        if self._producer is not None:
            self._producer.serve()

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close()
