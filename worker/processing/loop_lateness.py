"""How late the effects' event loop runs what is due: a timer every TICK seconds, the sum of
their lateness and their count (a reader takes the average over its own window from two
readings). Each timer is measured one turn of the loop after it fired, as a coroutine resumes:
a call's answer (a timer, a socket) wakes its task, which runs in the loop's next turn; on a
saturated loop those two turns are most of the lateness.

Why: an async effect's measured latency is the destination's time plus the loop's own delay in
resuming the call once its answer is there. Under load that delay is the worker's, not the
destination's (0.2-0.5 s for 10 ms calls was measured on a busy 2-core machine), and a latency
signal that reads it as the destination's queueing throttles a healthy destination. The
adaptive limit (worker.processing.adaptive_limit) takes this figure off the latency it sees, and
decides nothing from latency while it is more than a small share of it."""

from __future__ import annotations

import asyncio
import time

#: Seconds between two timers.
TICK = 0.05


class LoopLateness:
    def __init__(self) -> None:
        self.total = 0.0  # the timers' lateness, seconds, summed
        self.ticks = 0    # the timers that ran
        self.busy = 0.0   # the process's CPU time at the last timer, seconds
        self._loop: asyncio.AbstractEventLoop | None = None
        self._due = 0.0

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start timing `loop` (called once, from a thread other than the loop's)."""
        self._loop = loop
        loop.call_soon_threadsafe(self._next)

    def __call__(self) -> tuple[float, int, float]:
        """(the lateness summed, the timers, the process's CPU time) so far."""
        return self.total, self.ticks, self.busy

    def _next(self) -> None:
        loop = self._loop
        assert loop is not None
        self._due = loop.time() + TICK
        loop.call_at(self._due, self._tick)

    def _tick(self) -> None:
        loop = self._loop
        assert loop is not None
        loop.call_soon(self._resumed)

    def _resumed(self) -> None:
        loop = self._loop
        assert loop is not None
        self.total += max(0.0, loop.time() - self._due)
        self.ticks += 1
        self.busy = time.process_time()
        self._next()
