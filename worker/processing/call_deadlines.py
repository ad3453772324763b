"""Processor call timeouts on the effects' event loop, as a timing wheel: one timer for all the
calls in flight, not a task and a timer per call (`asyncio.wait_for` makes both, about a third
of an async effect's cost when calls are short).

A call's deadline goes into the bucket of its TICK_S slot; a timer armed at the earliest bucket
cancels the task of every call still running in it, so a call is cancelled at most TICK_S after
its timeout. The call sees a CancelledError at the await it was in, and `call_within` turns
that into CallTimedOut (a real cancellation, of the batch or the loop, stays one)."""

from __future__ import annotations

import asyncio
import heapq
import math
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")

#: How late a timed-out call may be cancelled.
TICK_S = 0.01


class CallTimedOut(TimeoutError):
    """A processor call ran past its timeout and was cancelled."""


class _Deadline:
    __slots__ = ("task", "timed_out")

    def __init__(self, task: asyncio.Task[object] | None) -> None:
        self.task = task
        self.timed_out = False


class CallDeadlines:
    def __init__(self) -> None:
        self._buckets: dict[int, set[_Deadline]] = {}
        self._due: list[int] = []  # the buckets' slots, a heap
        self._timer: asyncio.TimerHandle | None = None
        self._timer_slot = 0

    def pending(self) -> int:
        """Calls with a deadline running."""
        return sum(len(b) for b in self._buckets.values())

    async def call_within(self, call: Awaitable[T], timeout: float, name: str) -> T:
        """Await `call` in the current task, cancelling it past `timeout` seconds; raises
        CallTimedOut then (`name`: the processor's, for its message)."""
        loop = asyncio.get_running_loop()
        deadline = _Deadline(asyncio.current_task())
        slot = math.ceil((loop.time() + timeout) / TICK_S)
        bucket = self._buckets.get(slot)
        if bucket is None:
            bucket = self._buckets[slot] = set()
            heapq.heappush(self._due, slot)
            if self._timer is None or slot < self._timer_slot:
                self._arm(loop, slot)
        bucket.add(deadline)
        try:
            result = await call
        except asyncio.CancelledError:
            if not deadline.timed_out:
                raise
            task = deadline.task
            if task is not None and task.uncancel() > 0:
                raise  # cancelled for another reason as well
            raise CallTimedOut(f"processor {name!r} did not return within {timeout:g} s; "
                               "cancelled") from None
        else:
            if deadline.timed_out and deadline.task is not None:
                deadline.task.uncancel()  # the call swallowed the cancellation and returned
            return result
        finally:
            if not deadline.timed_out:
                bucket.discard(deadline)
                if not bucket and self._buckets.get(slot) is bucket:
                    del self._buckets[slot]  # (its slot stays on the heap: skipped there)

    def _arm(self, loop: asyncio.AbstractEventLoop, slot: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_slot = slot
        self._timer = loop.call_at(slot * TICK_S, self._expire, loop)

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        now = loop.time()
        due, buckets = self._due, self._buckets
        while due and due[0] * TICK_S <= now:
            for deadline in buckets.pop(heapq.heappop(due), ()):
                deadline.timed_out = True
                if deadline.task is not None:
                    deadline.task.cancel()
        while due and due[0] not in buckets:
            heapq.heappop(due)  # emptied buckets: every call in them returned in time
        if due:
            self._arm(loop, due[0])
