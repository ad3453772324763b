"""The dead-letter policy without a broker: the guardrail's sentence, and a write that fails
retried with backoff while the engine waits (the real-broker side is in
tests/integration/test_hostile_inputs.py)."""

from __future__ import annotations

from typing import Any

from worker.engine.dead_letter_policy import DeadLetterPolicy, Guardrail, Settled
from worker.engine.dead_letter_sink import DeadLetterError
from worker.engine.lifecycle import EXIT_GUARDRAIL
from worker.observer import WorkerObserver
from worker.types import DeadLetter, LocalMessage


class FlakyProducer:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.sent: list[int] = []
        self.shrunk = 0

    def send(self, letters: Any) -> None:
        if self.failures:
            self.failures -= 1
            raise DeadLetterError("DLQ topic refuses (test)")
        self.sent.append(len(letters))
        self.shrunk += 1

    def submit(self, letters: Any) -> Any:
        try:
            self.send(letters)
        except DeadLetterError as exc:
            return Refused(exc)
        return Acknowledged()


class Acknowledged:
    def done(self) -> bool:
        return True

    def wait(self, timeout: float) -> bool:
        return True


class Refused:
    """Letters produced and then not acknowledged (their delivery reports said so)."""

    def __init__(self, error: DeadLetterError) -> None:
        self.error = error

    def done(self) -> bool:
        raise self.error

    def wait(self, timeout: float) -> bool:
        raise self.error


class Seen(WorkerObserver):
    def __init__(self) -> None:
        self.writes: list[tuple[bool, int]] = []
        self.trips = 0
        self.writable: list[bool] = []

    def dlq_write(self, ok: bool, shrunk: int = 0) -> None:
        self.writes.append((ok, shrunk))

    def guardrail_tripped(self) -> None:
        self.trips += 1

    def set_dlq_writable(self, ok: bool) -> None:
        self.writable.append(ok)


LETTERS = [DeadLetter(LocalMessage(b"x"), "invalid_json", "$: bad")]


def test_a_failing_write_is_retried_with_backoff_until_it_succeeds() -> None:
    seen, producer, waits = Seen(), FlakyProducer(failures=4), []
    policy = DeadLetterPolicy(producer, Guardrail(1.0, 10, 1), seen)  # type: ignore[arg-type]
    assert policy.write(LETTERS, lambda d: waits.append(d) or True)
    assert waits == [0.5, 1.0, 2.0, 4.0]
    assert producer.sent == [1]
    assert seen.writes == [(False, 0)] * 4 + [(True, 1)]
    assert seen.writable == [False, True]  # once per state change


def test_a_write_gives_up_when_the_engine_says_so() -> None:
    policy = DeadLetterPolicy(FlakyProducer(failures=10**6), Guardrail(1.0, 10, 1))  # type: ignore[arg-type]
    waits: list[float] = []
    assert not policy.write(LETTERS, lambda d: waits.append(d) or len(waits) < 3)
    assert waits == [0.5, 1.0, 2.0]


def test_the_guardrail_trips_with_a_sentence() -> None:
    seen = Seen()
    policy = DeadLetterPolicy(None, Guardrail(share=0.5, window=100, min_events=10),
                              seen)
    assert policy.check(10, 2) is None
    tripped = policy.check(10, 9)
    assert tripped is not None and "55% of the last 20 events" in tripped
    assert seen.trips == 1 and not policy.can_write


def test_letters_sent_ahead_and_refused_are_written_again() -> None:
    """The engine sends a batch's letters without waiting (worker.engine.finishing); when
    their delivery fails, `written` writes them again with `write`'s retries."""
    seen, producer, waits = Seen(), FlakyProducer(failures=2), []
    policy = DeadLetterPolicy(producer, Guardrail(1.0, 10, 1), seen)  # type: ignore[arg-type]
    sending = policy.start(1, LETTERS)
    assert not isinstance(sending, Settled)
    assert policy.written(sending, lambda d: waits.append(d) or True) == Settled(True)
    assert waits == [0.5]  # the first write again failed, the second went through
    assert producer.sent == [1]
    assert seen.writes == [(False, 0), (False, 0), (True, 1)]
    assert policy.counts.dead_letters == 1 and policy.counts.dead_lettered_events == 1


def test_a_tripped_guardrail_sends_nothing_ahead() -> None:
    producer = FlakyProducer(failures=0)
    policy = DeadLetterPolicy(producer, Guardrail(0.5, 4, 2))  # type: ignore[arg-type]
    settled = policy.start(2, [DeadLetter(LocalMessage(b"y"), "schema", "$: bad"),
                               DeadLetter(LocalMessage(b"z"), "schema", "$: bad")])
    assert isinstance(settled, Settled) and not settled.stored
    assert settled.failure is not None and settled.failure[0] == EXIT_GUARDRAIL
    assert producer.sent == []
