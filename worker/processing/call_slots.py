"""Slots for calls in flight on one event loop, first come first served: what
`asyncio.Semaphore` does, without its cost when thousands wait (Python 3.11's `acquire` asks
`locked()`, which walks every waiter while a slot is free; with 10,000 ordering keys ready and
1,000 slots that walk ran on nearly every call)."""

from __future__ import annotations

import asyncio
from collections import deque


class CallSlots:
    __slots__ = ("_waiters", "free", "waiting")

    def __init__(self, slots: int) -> None:
        self.free = slots
        self.waiting = 0  # calls waiting for a slot
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def acquire(self) -> None:
        """Take a slot, waiting in line for one. A slot given back goes straight to the first
        waiter (`free` stays 0), so a free slot means nobody waits and the fast path is one
        compare."""
        if self.free > 0:
            self.free -= 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self.waiting += 1
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # given a slot just as it was cancelled: pass it on
            raise
        finally:
            self.waiting -= 1

    def release(self) -> None:
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():  # (a cancelled waiter is done: skipped)
                waiter.set_result(None)
                return
        self.free += 1
