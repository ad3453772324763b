"""How fast a destination is called: its calls in flight at once and, once it refused calls for
being too fast, its pace (calls per second). Both adapt, AIMD (additive increase, multiplicative
decrease) in the manner of TCP and Netflix's concurrency-limits:

- concurrency: starts at its cap (the processor's `max_concurrency`, else `--max-in-flight`);
  each success adds 1/limit (about +1 per limit's worth of calls), an unavailable failure (429,
  5xx, a timeout...) halves it, down to 1.
- pace: none until the first unavailable failure. Then the calls are paced at 90% of the rate
  the destination accepted over the last second; each second of paced successes adds 3% of the
  rate it was cut from; the next failure cuts it again. A concurrency limit alone does not bound
  a rate (a fast endpoint at 1 call in flight still answers hundreds a second), so a rate
  limiter (429 above R calls/s) needs the pace (measured in docs/processors.md).
- one decrease per window (1 s): the failures of calls already in flight when the first came
  back are one signal, not many.
- a `Retry-After` longer than the window pauses every call of the destination that long; a
  shorter one only delays the refused call (worker.processing.retries.outage_wait).
- rising latency (a gradient, in the manner of Netflix's Gradient2 and TCP Vegas): each
  `latency_window` the average latency of its successful calls is compared with the long-term
  one. More than `latency_tolerance` times it, and the concurrency is cut by their ratio (at most
  halved), down to `latency_floor` of the cap, and it does not grow while the latency stays that
  high: a destination that starts queueing gets fewer calls at once. The long-term latency
  follows a faster destination at once (`latency_down`) and a slower one slowly
  (`latency_up`) while the latency stays within the tolerance; over it, only once the limit is
  at its floor (`latency_adopt`, a few seconds): a destination that is as slow with the fewest
  calls is slower, not queueing, and its latency becomes the new normal.
  The loop's own lateness over the window (worker.processing.loop_lateness) is taken off the
  latency, and while it is more than `lag_share` of it, or the process used more than
  `busy_share` of a core's time, the window says nothing of a rise (it may still lower the
  long-term latency): then the worker, not the destination, may be what is slow. Timers
  understate how late a busy loop resumes calls (it resumes many at once in its longest turns),
  so these bounds are strict: on a saturated loop, 10 ms calls measured 50-150 ms with its
  timers 20-90 ms late.

The state is plain numbers read at scrape time (worker.observability.collectors). Used from one
thread at a time: the effects' event loop (worker.processing.effect_calls). Pure apart from the
clock, which tests replace.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

#: Fewer successes than this in the window before a failure: the destination is down rather
#: than rate-limiting, and its pace is left as it was.
MIN_ACCEPTED = 5


@dataclass(frozen=True, slots=True)
class LimitPolicy:
    decrease: float = 0.5        # concurrency x this on an unavailable failure
    rate_decrease: float = 0.9   # pace := this x the rate accepted over the last window
    rate_step: float = 0.03      # the pace grows by this share of the rate it was cut from, /s
    window: float = 1.0          # seconds: at most one decrease per window; rates measured over it
    burst: float = 0.05          # seconds' worth of pace that may go at once
    latency_window: float = 0.25    # seconds: one latency decision per window ...
    latency_samples: int = 10       # ... of at least this many calls
    latency_tolerance: float = 2.0  # a window's latency over this x the long-term one: a cut
    latency_down: float = 0.5       # a window's weight in the long-term latency: when lower,
    latency_up: float = 0.01        # ... higher within the tolerance,
    latency_adopt: float = 0.05     # ... over it with the limit at its floor
    latency_floor: float = 0.125    # latency cuts stop at this share of the cap
    lag_share: float = 0.1          # the loop's lateness over this share of the latency, or
    busy_share: float = 0.5         # the process's CPU over this share of a core: no say


class AdaptiveLimit:
    def __init__(self, cap: int, policy: LimitPolicy | None = None, *,
                 clock: Callable[[], float] = time.monotonic,
                 lateness: Callable[[], tuple[float, int, float]] | None = None) -> None:
        self.cap = max(1, cap)
        self.policy = policy or LimitPolicy()
        self._clock = clock
        # the loop's own lateness (summed, timers, the process's CPU time) so far
        # (loop_lateness); None: not measured
        self._lateness = lateness
        self._lateness_at = lateness() if lateness is not None else (0.0, 0, 0.0)
        self.limit = float(self.cap)   # calls in flight at once (its floor is the bound)
        self.in_flight = 0
        self.rate: float | None = None  # calls per second; None: not paced
        self._step = 0.0                # the pace's additive increase, calls/s per second
        self._next = 0.0                # pacing: when the next call may go
        self._cut_at = -math.inf        # the last decrease
        self._paced_at = -math.inf      # the last time the pace held a call back
        self._accepted: deque[float] = deque()  # success times within the last window
        self.long_latency: float | None = None  # the long-term latency, seconds (less the lag)
        self.latency_cuts = 0           # cuts for rising latency (a counter)
        self._queueing = False          # the last window's latency was over the tolerance
        self._window_at = clock()       # the latency window: since when, the sum, the count
        self._latency_sum = 0.0
        self._latency_n = 0

    @property
    def concurrency(self) -> int:
        return int(self.limit)

    # -- before a call ------------------------------------------------------------------------
    def pace(self) -> float:
        """Reserve the next call's turn: the seconds to wait before it (0.0: now)."""
        rate = self.rate
        if rate is None:
            return 0.0
        now = self._clock()
        turn = max(self._next, now - self.policy.burst)
        self._next = turn + 1.0 / rate
        if turn <= now:
            return 0.0
        self._paced_at = now
        return turn - now

    def may_enter(self) -> bool:
        return self.in_flight < int(self.limit)

    # -- after a call -------------------------------------------------------------------------
    def success(self, latency: float | None = None) -> None:
        """A call succeeded; `latency`: how long it took, seconds (None: not comparable)."""
        if self.limit < self.cap and not self._queueing:
            self.limit = min(float(self.cap), self.limit + 1.0 / self.limit)
        now = self._clock()
        accepted = self._accepted
        accepted.append(now)
        if accepted[0] < now - self.policy.window:
            self._forget(now)
        rate = self.rate
        if rate is not None and now - self._paced_at < self.policy.window:
            self.rate = rate + self._step / rate  # grows only while the pace binds
        if latency is not None:
            self._latency_sum += latency
            self._latency_n += 1
            if (now - self._window_at >= self.policy.latency_window
                    and self._latency_n >= self.policy.latency_samples):
                self._latency_window(now)

    def _latency_window(self, now: float) -> None:
        """A window of latencies is complete: cut the limit if it rose (the module's doc)."""
        p = self.policy
        short = self._latency_sum / self._latency_n
        lag, busy = self._loop_load(now - self._window_at)
        self._latency_sum, self._latency_n, self._window_at = 0.0, 0, now
        own = max(short - lag, 1e-4)  # the destination's part of it
        long = self.long_latency
        if lag > p.lag_share * short or busy > p.busy_share:
            # The worker is what is slow: this says nothing of a rise of the destination's
            # latency, and the limit grows with the successes. The whole latency is still at
            # least the destination's, so it may lower (or start) the long-term one.
            self._queueing = False
            if long is None or short < long:
                self.long_latency = (short if long is None
                                     else long + (short - long) * p.latency_down)
            return
        if long is None:
            self.long_latency = own
            return
        floor = max(1.0, self.cap * p.latency_floor)
        self._queueing = own > p.latency_tolerance * long
        if own < long:
            self.long_latency = long + (own - long) * p.latency_down
        elif not self._queueing:
            self.long_latency = long + (own - long) * p.latency_up
        elif self.limit <= floor:  # as slow with the fewest calls: slower, not queueing
            self.long_latency = long + (own - long) * p.latency_adopt
        if not self._queueing:
            return  # as fast as it was: the limit grows with the successes
        if self.limit <= floor or now - self._cut_at < p.latency_window:
            return
        self._cut_at = now
        self.latency_cuts += 1
        self.limit = max(floor, self.limit * max(p.decrease, p.latency_tolerance * long / own))

    def _loop_load(self, span: float) -> tuple[float, float]:
        """The loop's average lateness over the last `span` seconds (inf: not one timer ran)
        and the share of a core the process used meanwhile."""
        if self._lateness is None:
            return 0.0, 0.0
        (total, ticks, cpu), (total0, ticks0, cpu0) = self._lateness(), self._lateness_at
        self._lateness_at = (total, ticks, cpu)
        if ticks <= ticks0:
            return math.inf, 1.0
        return (total - total0) / (ticks - ticks0), (cpu - cpu0) / max(span, 1e-3)

    def failure(self, retry_after: float = 0.0) -> None:
        """A call found the destination unavailable (refused, 5xx, timed out)."""
        now = self._clock()
        p = self.policy
        if retry_after > p.window:
            self._next = max(self._next, now + retry_after)
        if now - self._cut_at < p.window:
            return  # the same overload, reported by calls that were already in flight
        self._cut_at = now
        self.limit = max(1.0, self.limit * p.decrease)
        self._forget(now)
        if len(self._accepted) < MIN_ACCEPTED:
            return  # it accepts (next to) nothing: an outage, the circuit's job, not a pace's
        # over the last window, or since the first success in it (the first refusal may come
        # within a fraction of a second of the first call)
        seen = len(self._accepted) / max(p.burst, now - self._accepted[0])
        before = seen if self.rate is None else min(self.rate, seen)
        self.rate = before * p.rate_decrease
        self._step = max(1.0, before * p.rate_step)

    def _forget(self, now: float) -> None:
        accepted, since = self._accepted, now - self.policy.window
        while accepted and accepted[0] < since:
            accepted.popleft()
