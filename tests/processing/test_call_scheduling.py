"""The effects loop's own scheduling pieces: FIFO call slots (worker.processing.call_slots) and
the timing wheel of call timeouts (worker.processing.call_deadlines)."""

from __future__ import annotations

import asyncio
import time

import pytest

from worker.processing.call_deadlines import TICK_S, CallDeadlines, CallTimedOut
from worker.processing.call_slots import CallSlots


def test_slots_are_given_first_come_first_served_and_counted() -> None:
    async def main() -> list[int]:
        slots, order = CallSlots(2), []

        async def call(n: int) -> None:
            await slots.acquire()
            try:
                order.append(n)
                await asyncio.sleep(0.01)
            finally:
                slots.release()

        tasks = [asyncio.create_task(call(n)) for n in range(6)]
        await asyncio.sleep(0)
        assert slots.free == 0 and slots.waiting == 4
        await asyncio.gather(*tasks)
        assert slots.free == 2 and slots.waiting == 0
        return order

    assert asyncio.run(main()) == [0, 1, 2, 3, 4, 5]


def test_a_cancelled_waiter_gives_up_its_place_and_a_slot_given_to_it_passes_on() -> None:
    async def main() -> None:
        slots = CallSlots(1)
        await slots.acquire()
        first = asyncio.create_task(slots.acquire())
        second = asyncio.create_task(slots.acquire())
        await asyncio.sleep(0)
        first.cancel()
        await asyncio.sleep(0)
        slots.release()  # skips the cancelled waiter: the second gets the slot
        await asyncio.wait_for(second, 1)
        assert slots.free == 0 and slots.waiting == 0
        third = asyncio.create_task(slots.acquire())
        await asyncio.sleep(0)
        slots.release()      # given to the third ...
        third.cancel()       # ... cancelled before it ran: the slot is passed on
        with pytest.raises(asyncio.CancelledError):
            await third
        assert slots.free == 1 and slots.waiting == 0

    asyncio.run(main())


def test_a_call_past_its_timeout_is_cancelled_within_a_tick() -> None:
    async def main() -> None:
        deadlines, cancelled = CallDeadlines(), []

        async def slow() -> None:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                cancelled.append(True)
                raise

        t0 = time.perf_counter()
        with pytest.raises(CallTimedOut, match=r"'p' did not return within 0\.05 s"):
            await deadlines.call_within(slow(), 0.05, "p")
        took = time.perf_counter() - t0
        assert cancelled == [True]
        assert 0.05 <= took < 0.05 + TICK_S + 0.2
        task = asyncio.current_task()
        assert task is not None and task.cancelling() == 0  # nothing left for a later await
        await asyncio.sleep(0.01)  # (would raise CancelledError if a cancel were left)
        assert deadlines.pending() == 0

    asyncio.run(main())


def test_calls_in_time_leave_nothing_behind_and_a_real_cancel_stays_one() -> None:
    async def main() -> None:
        deadlines = CallDeadlines()

        async def quick(n: int) -> int:
            await asyncio.sleep(0.001)
            return n

        results = await asyncio.gather(*(deadlines.call_within(quick(n), 30.0, "p")
                                         for n in range(200)))
        assert results == list(range(200)) and deadlines.pending() == 0

        task = asyncio.create_task(deadlines.call_within(asyncio.sleep(10), 30.0, "p"))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert deadlines.pending() == 0

    asyncio.run(main())


def test_timeouts_of_different_lengths_fire_in_their_own_order() -> None:
    async def main() -> list[str]:
        deadlines, fired = CallDeadlines(), []

        async def call(name: str, timeout: float) -> None:
            try:
                await deadlines.call_within(asyncio.sleep(10), timeout, name)
            except CallTimedOut:
                fired.append(name)

        # the long one first: the timer must be re-armed for the shorter one
        await asyncio.gather(call("long", 0.3), call("short", 0.05), call("mid", 0.15))
        return fired

    assert asyncio.run(main()) == ["short", "mid", "long"]
