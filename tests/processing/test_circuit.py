"""The circuit breaker's state machine (worker.processing.circuit) on a fake clock: closed → open
after N
unavailable failures in a row, no calls while open, half-open after the backoff (exponential,
jittered, capped, at least Retry-After), a probe's success closes it, its failure opens it again
for longer; --max-outage measured from the first opening; one log line per state change."""

from __future__ import annotations

import pytest
import structlog

from worker.processing.circuit import MAX_RETRY_AFTER_S, Circuit, CircuitPolicy, Circuits
from worker.vocabulary import CircuitState


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def circuit(clock: Clock, draw: float = 0.5, **policy: float) -> Circuit:
    return Circuit("crm", CircuitPolicy(**policy), clock=clock,  # type: ignore[arg-type]
                   rand=lambda: draw)


def open_it(c: Circuit, n: int = 5) -> None:
    for _ in range(n):
        c.failure()


def test_it_opens_after_n_unavailable_failures_in_a_row_only() -> None:
    clock = Clock()
    c = circuit(clock)
    open_it(c, 4)
    c.success()  # the destination answered: the count starts again
    open_it(c, 4)
    assert c.state is CircuitState.CLOSED and c.admit() == 0.0
    c.failure()
    assert c.state is CircuitState.OPEN
    assert c.admit() == pytest.approx(1.0)  # first_backoff, draw 0.5 = no jitter


def test_no_call_while_open_then_one_probe_and_its_success_closes() -> None:
    clock = Clock()
    c = circuit(clock)
    open_it(c)
    clock.now += 0.5
    assert c.admit() == pytest.approx(0.5)
    clock.now += 0.5
    assert c.admit() == 0.0 and c.state is CircuitState.HALF_OPEN  # the probe
    assert c.admit() > 0.0  # a second caller waits for the probe's answer
    c.success()
    assert c.state is CircuitState.CLOSED and c.admit() == 0.0 and c.down_since is None


def test_a_failed_probe_opens_it_again_for_longer_up_to_the_cap() -> None:
    clock = Clock()
    c = circuit(clock, first_backoff=1.0, multiplier=2.0, max_backoff=5.0)
    open_it(c)
    waits = []
    for _ in range(5):
        wait = c.admit()
        waits.append(round(wait, 6))
        clock.now += wait
        assert c.admit() == 0.0  # half-open: the probe
        c.failure()              # fails: open again
        assert c.state is CircuitState.OPEN
    assert waits == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_the_backoff_is_jittered_within_its_share() -> None:
    policy = CircuitPolicy(first_backoff=10.0, jitter=0.2)
    assert policy.backoff(0, 0.0) == pytest.approx(8.0)
    assert policy.backoff(0, 0.999999) == pytest.approx(12.0, abs=1e-4)
    assert policy.backoff(1, 0.5) == pytest.approx(20.0)


def test_retry_after_lengthens_the_backoff_and_is_bounded() -> None:
    clock = Clock()
    c = circuit(clock)
    open_it(c, 4)
    c.failure(retry_after=42.0)
    assert c.admit() == pytest.approx(42.0)
    # a call that was in flight when it opened asks for more: honoured, no new opening
    c.failure(retry_after=60.0)
    assert c.admit() == pytest.approx(60.0) and c.opened == 1
    c2 = circuit(clock)
    open_it(c2, 4)
    c2.failure(retry_after=10**9)
    assert c2.admit() == pytest.approx(MAX_RETRY_AFTER_S)


def test_failures_while_open_do_not_extend_it() -> None:
    clock = Clock()
    c = circuit(clock)
    open_it(c, 50)  # 5 open it, 45 calls that were in flight come back failed
    assert c.opened == 1 and c.admit() == pytest.approx(1.0)


def test_max_outage_counts_from_the_first_opening_across_probes() -> None:
    clock = Clock()
    c = circuit(clock)
    assert not c.outage_over(10.0)
    open_it(c)
    for _ in range(3):
        clock.now += c.admit()
        assert c.admit() == 0.0
        c.failure()
    assert c.down_seconds() == pytest.approx(1.0 + 2.0 + 4.0)
    assert not c.outage_over(10.0) and c.outage_over(7.0) and not c.outage_over(None)
    clock.now += c.admit()
    c.admit()
    c.success()
    assert c.down_seconds() == 0.0 and not c.outage_over(0.001)


def test_ask_gives_up_past_the_bound_and_counts_a_held_back_call_once() -> None:
    clock = Clock()
    c = circuit(clock, first_backoff=10.0)
    assert c.ask(5.0, first=True) == 0.0  # closed
    open_it(c)
    assert c.ask(5.0, first=True) == pytest.approx(5.0)  # wakes at the bound, not at 10 s
    assert c.ask(5.0, first=False) == pytest.approx(5.0) and c.refused == 1
    clock.now += 5.0
    assert c.ask(5.0, first=False) is None
    clock.now += 5.0
    assert c.ask(5.0, first=False) == 0.0  # the probe still goes (and may close it)


def test_a_cancelled_probe_frees_its_slot() -> None:
    clock = Clock()
    c = circuit(clock)
    open_it(c)
    clock.now += 1.0
    assert c.admit() == 0.0 and c.admit() > 0.0
    c.release_probe()
    assert c.admit() == 0.0


def test_a_probe_that_never_reports_back_frees_its_slot_after_a_while() -> None:
    clock = Clock()
    c = circuit(clock)
    open_it(c)
    clock.now += 1.0
    assert c.admit() == 0.0  # the probe; its caller is then cancelled without a word
    clock.now += 59.0
    assert c.admit() > 0.0
    clock.now += 2.0
    assert c.admit() == 0.0 and c.state is CircuitState.HALF_OPEN


def test_one_log_line_per_state_change_never_per_call() -> None:
    clock = Clock()
    c = circuit(clock)
    with structlog.testing.capture_logs() as logs:
        open_it(c, 200)
        for _ in range(100):
            assert c.ask(None, first=True)
        clock.now += 1.0
        c.admit()
        c.success()
        for _ in range(100):
            c.success()
    assert [(e["state"], e["log_level"]) for e in logs] == [
        ("open", "warning"), ("half_open", "info"), ("closed", "info")]
    assert logs[-1]["refused"] == 100 and logs[-1]["down_for_s"] == pytest.approx(1.0)


def test_the_registry_tracks_which_destinations_are_down() -> None:
    clock = Clock()
    seen: list[tuple[str, str]] = []
    circuits = Circuits(clock=clock, max_outage=30.0)
    circuits.listen(lambda c: seen.append((c.name, str(c.state))))
    crm, mail = circuits.add("crm"), circuits.add("mail", 8)
    assert circuits.add("crm") is crm and mail.concurrency_limit == 8
    assert not circuits.waiting()
    open_it(crm)
    assert circuits.not_closed == {"crm"} and circuits.waiting()
    clock.now += crm.admit()
    crm.admit()
    crm.success()
    assert not circuits.not_closed
    assert seen == [("crm", "open"), ("crm", "half_open"), ("crm", "closed")]


def test_a_failure_share_over_the_window_opens_it_without_n_in_a_row() -> None:
    clock = Clock()
    c = circuit(clock)
    for _ in range(9):  # every other call fails: never 5 in a row, but half of them
        c.success()
        clock.now += 0.1
        c.failure()
        clock.now += 0.1
        assert c.state is CircuitState.CLOSED  # fewer than share_min_calls (20) calls so far
    c.success()
    c.failure()
    assert c.state is CircuitState.OPEN  # 10 of 20 calls within the window


def test_a_small_failure_share_or_an_old_one_does_not_open_it() -> None:
    clock = Clock()
    c = circuit(clock)
    for _ in range(100):  # 1 in 10 fails, for 100 s
        for _ in range(9):
            c.success()
        c.failure()
        clock.now += 1.0
    assert c.opened == 0
    c = circuit(clock)
    for _ in range(9):
        c.failure()
        c.success()
        clock.now += 25.0  # far apart: each failure starts a new window
    assert c.opened == 0


def test_successes_counted_after_a_sync_batch_dilute_the_share() -> None:
    clock = Clock()
    c = circuit(clock)
    c.count_successes(100)
    for _ in range(30):
        c.failure()
        c.success()
    assert c.opened == 0  # 30 of 160 calls
    c = circuit(clock)
    for _ in range(15):
        c.failure()
        c.success()
    assert c.opened == 1  # 11 of 21 calls (no batch reported its successes)
