"""A destination's adaptive concurrency and pace (worker.processing.adaptive_limit) on a fake
clock: AIMD between 1 and the cap, one decrease per window, a pace only once the destination
refused calls while accepting others, paced at 90% of what it accepted, growing only while the
pace binds; a long Retry-After pauses every call."""

from __future__ import annotations

import asyncio

import pytest

from worker.processing.adaptive_limit import AdaptiveLimit, LimitPolicy


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def accept(limit: AdaptiveLimit, clock: Clock, per_second: int, seconds: float) -> None:
    for _ in range(int(per_second * seconds)):
        clock.now += 1.0 / per_second
        limit.success()


def test_concurrency_halves_on_a_failure_once_per_window_and_grows_back_to_the_cap() -> None:
    clock = Clock()
    limit = AdaptiveLimit(32, clock=clock)
    assert limit.concurrency == 32 and limit.rate is None and limit.pace() == 0.0
    limit.failure()
    limit.failure()  # the same overload, from a call that was already in flight
    assert limit.concurrency == 16
    clock.now += 1.1
    limit.failure()
    assert limit.concurrency == 8
    for _ in range(5):
        clock.now += 1.1
        limit.failure()
    assert limit.concurrency == 1  # its floor
    limit.success()
    assert limit.concurrency == 2  # +1/limit a success: about +1 a limit's worth of calls
    for _ in range(2000):
        limit.success()
    assert limit.concurrency == 32  # the cap


def test_may_enter_counts_the_calls_in_flight_against_the_limit() -> None:
    limit = AdaptiveLimit(2, clock=Clock())
    assert limit.may_enter()
    limit.in_flight = 2
    assert not limit.may_enter()
    limit.in_flight = 0
    assert AdaptiveLimit(0, clock=Clock()).concurrency == 1


def test_an_outage_sets_no_pace_a_rate_limit_does() -> None:
    clock = Clock()
    limit = AdaptiveLimit(32, clock=clock)
    clock.now += 5.0
    limit.failure()  # nothing accepted in the last second: down, not rate-limiting
    assert limit.rate is None and limit.pace() == 0.0
    clock.now += 5.0
    accept(limit, clock, 200, 1.0)
    limit.failure()
    assert limit.rate == pytest.approx(0.9 * 200, rel=0.02)


def test_the_pace_spaces_the_calls_with_a_small_burst() -> None:
    clock = Clock()
    limit = AdaptiveLimit(32, LimitPolicy(burst=0.05), clock=clock)
    accept(limit, clock, 100, 1.0)
    limit.failure()
    rate = limit.rate
    assert rate is not None and rate == pytest.approx(90.0, rel=0.02)
    waits = [limit.pace() for _ in range(20)]
    free = sum(1 for w in waits if w == 0.0)
    assert free == int(0.05 * rate) + 1  # the burst goes at once
    assert waits[-1] == pytest.approx(19 / rate - 0.05, rel=0.01)  # then 1/rate apart


def test_the_pace_grows_only_while_it_binds_and_a_new_refusal_cuts_it() -> None:
    clock = Clock()
    limit = AdaptiveLimit(32, clock=clock)
    accept(limit, clock, 200, 1.0)
    limit.failure()
    cut = limit.rate
    assert cut is not None
    accept(limit, clock, 100, 3.0)  # demand below the pace: it never held a call back
    assert limit.rate == cut
    for _ in range(int(cut * 2)):   # demand above it: every call waits its turn
        clock.now += limit.pace()
        limit.success()
    grown = limit.rate
    assert grown is not None and cut * 1.04 < grown < cut * 1.08  # +3% of 200 a second
    clock.now += 0.5
    limit.failure()
    assert limit.rate is not None and limit.rate < grown


def test_a_long_retry_after_pauses_every_call_a_short_one_does_not() -> None:
    clock = Clock()
    limit = AdaptiveLimit(32, clock=clock)
    accept(limit, clock, 200, 1.0)
    limit.failure(retry_after=1.0)
    assert limit.pace() < 0.1
    limit.failure(retry_after=10.0)
    assert limit.pace() == pytest.approx(10.0, abs=0.1)


def test_the_effects_wait_for_room_first_come_first_in_and_a_cancelled_one_passes_it_on(
        ) -> None:
    from collections import deque

    from worker.processing.effect_calls import EffectCalls

    async def scenario() -> None:
        gate = AdaptiveLimit(1, clock=Clock())
        waiters: deque[asyncio.Future[None]] = deque()
        gate.in_flight = 1  # a call is in flight
        second = asyncio.create_task(EffectCalls._enter(gate, waiters))
        third = asyncio.create_task(EffectCalls._enter(gate, waiters))
        await asyncio.sleep(0)
        assert len(waiters) == 2 and not second.done()
        EffectCalls._leave(gate, waiters)  # the call ends: the first waiter is given the room
        second.cancel()  # ... and cancelled before it ran: the next must get the room instead
        await asyncio.wait_for(third, 5)
        assert second.cancelled() and gate.in_flight == 1 and not waiters

    asyncio.run(scenario())



def answer(limit: AdaptiveLimit, clock: Clock, per_second: int, seconds: float,
           latency: float) -> None:
    for _ in range(int(per_second * seconds)):
        clock.now += 1.0 / per_second
        limit.success(latency)


def test_rising_latency_cuts_the_concurrency_down_to_its_floor_and_it_grows_back() -> None:
    clock = Clock()
    limit = AdaptiveLimit(64, clock=clock)
    answer(limit, clock, 200, 5.0, 0.005)  # the normal: 5 ms
    assert limit.concurrency == 64 and limit.latency_cuts == 0
    answer(limit, clock, 200, 0.26, 0.100)  # it queues: 20x the normal
    assert limit.concurrency == 32  # at most halved a window
    answer(limit, clock, 200, 0.5, 0.100)
    assert limit.concurrency == 8 and limit.latency_cuts == 3  # its floor: 1/8 of the cap
    answer(limit, clock, 200, 2.0, 0.100)  # no growth while the latency stays that high
    assert limit.concurrency == 8 and limit.latency_cuts == 3
    # latency that stays high becomes the normal (in about 25 s): the limit grows back
    answer(limit, clock, 200, 60.0, 0.100)
    assert limit.long_latency is not None and limit.long_latency > 0.05
    assert limit.concurrency == 64


def test_the_long_term_latency_follows_a_faster_destination_at_once() -> None:
    clock = Clock()
    limit = AdaptiveLimit(64, clock=clock)
    answer(limit, clock, 200, 5.0, 0.100)
    answer(limit, clock, 200, 2.0, 0.010)
    assert limit.long_latency == pytest.approx(0.010, rel=0.1)
    assert limit.latency_cuts == 0


def test_latency_within_the_tolerance_cuts_nothing() -> None:
    clock = Clock()
    limit = AdaptiveLimit(64, clock=clock)
    answer(limit, clock, 200, 5.0, 0.010)
    answer(limit, clock, 200, 5.0, 0.019)  # less than twice the normal
    assert limit.concurrency == 64 and limit.latency_cuts == 0


def test_a_window_needs_enough_calls_and_latency_of_failed_calls_is_not_counted() -> None:
    clock = Clock()
    limit = AdaptiveLimit(64, clock=clock)
    for _ in range(100):  # answers without a comparable latency (errors) count nothing
        clock.now += 0.1
        limit.success()
    answer(limit, clock, 5, 1.9, 0.010)  # 9 calls: not yet a window
    assert limit.long_latency is None
    answer(limit, clock, 5, 0.2, 0.010)
    assert limit.long_latency == pytest.approx(0.010)


class Lateness:
    """A loop late by `seconds` at each of its timers (20 a second of the fake clock)."""

    def __init__(self, clock: Clock) -> None:
        self.clock, self.seconds, self.busy = clock, 0.0, 0.1
        self.total, self.ticks, self.cpu, self.at = 0.0, 0, 0.0, clock.now

    def __call__(self) -> tuple[float, int, float]:
        while self.at + 0.05 <= self.clock.now:
            self.at += 0.05
            self.total += self.seconds
            self.ticks += 1
            self.cpu += 0.05 * self.busy
        return self.total, self.ticks, self.cpu


def test_the_loops_own_lateness_is_not_the_destinations_latency() -> None:
    clock = Clock()
    lag = Lateness(clock)
    limit = AdaptiveLimit(64, clock=clock, lateness=lag)
    answer(limit, clock, 200, 5.0, 0.010)
    lag.seconds = 0.2  # the worker's loop runs 200 ms late: its calls "take" 210 ms
    answer(limit, clock, 200, 5.0, 0.210)
    assert limit.concurrency == 64 and limit.latency_cuts == 0
    assert limit.long_latency == pytest.approx(0.010, rel=0.05)  # the lag taken off
    lag.seconds = 0.02  # late by less than a tenth of a risen latency: that rise is the
    answer(limit, clock, 200, 0.26, 0.250)  # destination's
    assert limit.latency_cuts == 1 and limit.concurrency == 32


def test_a_busy_loop_says_nothing_of_the_destination() -> None:
    clock = Clock()
    lag = Lateness(clock)
    limit = AdaptiveLimit(64, clock=clock, lateness=lag)
    answer(limit, clock, 200, 5.0, 0.100)
    lag.busy = 0.7  # the process uses 70% of a core: the loop resumes calls late, by more
    answer(limit, clock, 200, 5.0, 0.300)  # than its timers show
    assert limit.latency_cuts == 0 and limit.concurrency == 64
    lag.busy = 0.3
    answer(limit, clock, 200, 0.26, 0.300)
    assert limit.latency_cuts == 1


def test_a_window_without_one_timer_of_the_loop_decides_nothing() -> None:
    clock = Clock()
    limit = AdaptiveLimit(64, clock=clock, lateness=lambda: (0.0, 0, 0.0))  # none ran
    answer(limit, clock, 200, 5.0, 0.010)
    answer(limit, clock, 200, 5.0, 0.500)
    assert limit.latency_cuts == 0 and limit.concurrency == 64


def test_the_loop_lateness_is_timed_on_the_loop() -> None:
    import threading
    import time

    from worker.processing.loop_lateness import LoopLateness

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    lateness = LoopLateness()
    try:
        lateness.start(loop)
        deadline = time.monotonic() + 5
        while lateness()[1] < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        idle_total, idle_ticks, idle_cpu = lateness()
        assert idle_ticks >= 4 and idle_total / idle_ticks < 0.02
        def spin() -> None:  # the loop's thread busy for half a second
            end = time.thread_time() + 0.5
            while time.thread_time() < end:
                pass

        loop.call_soon_threadsafe(spin)
        while lateness()[1] < idle_ticks + 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        total, ticks, cpu = lateness()
        assert ticks > idle_ticks and total - idle_total >= 0.3  # a timer ran >= 0.3 s late
        assert cpu - idle_cpu >= 0.4  # the process's CPU time
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
