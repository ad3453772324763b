"""A circuit breaker per destination: what a processor's effects wait on while the system it calls
(a CRM, an e-mail platform, a webhook) is unavailable, instead of spending retry attempts and
dead-lettering the stream.

- closed: calls go through. `failures_to_open` unavailable failures in a row open it, and so
  does a failure share: at least `share_to_open` of the calls (and `share_min_calls` of them or
  more) failing unavailable over the last `share_window` seconds (two windows, the current and
  the previous one, weighed as one: no clock read per success).
- open: no calls. After a backoff (exponential with jitter, capped, at least the destination's
  `Retry-After`) it turns half-open.
- half-open: up to `probes` calls at once; a success closes it, an unavailable failure opens it
  again with the next, longer backoff.

Which failures count is decided by `worker.processing.retries.unavailable` (RetryLater, timeouts,
connection errors); any other outcome means the destination answered, and counts as a success.
A failure reported while the circuit is open (a call that was in flight when it opened) changes
nothing but a later `Retry-After`.

The circuit only decides; the callers wait (worker.processing.effects on its event loop,
worker.processing.pipeline in
the handler thread for sync processors). One log line per state change, never one per call.
Pure apart from the clock and the random source, both injectable (tests use a fake clock).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from worker.processing.adaptive_limit import AdaptiveLimit
from worker.vocabulary import CircuitState

log = structlog.get_logger(__name__)

CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN

#: The longest wait a Retry-After may ask for (seconds): a bad header must not park a
#: destination for a day.
MAX_RETRY_AFTER_S = 300.0
#: A probe that has not reported back after this long (its caller was cancelled before it
#: called, by a revoke or a shutdown) no longer holds its slot: another call may probe.
PROBE_STALE_S = 60.0


@dataclass(frozen=True, slots=True)
class CircuitPolicy:
    failures_to_open: int = 5     # unavailable failures in a row that open a closed circuit
    first_backoff: float = 1.0    # seconds open before the first probe
    multiplier: float = 2.0       # each failed probe multiplies the backoff
    max_backoff: float = 30.0     # ... up to this (a Retry-After may ask for more)
    jitter: float = 0.2           # each backoff is drawn from +-20% around its value
    probes: int = 1               # calls at once while half-open
    share_to_open: float = 0.5    # ... or this share of unavailable failures among the calls
    share_window: float = 10.0    # ... over about this many seconds
    share_min_calls: int = 20     # ... of at least this many calls

    def backoff(self, reopened: int, draw: float) -> float:
        """The backoff after the circuit opened `reopened` + 1 times in a row; `draw` in [0, 1)."""
        base = min(self.first_backoff * self.multiplier ** min(reopened, 64), self.max_backoff)
        return max(0.0, base * (1.0 + self.jitter * (2.0 * draw - 1.0)))


class Circuit:
    """One destination's circuit. Thread-safe: async effects, the sync batch thread and the
    metrics scrape may all touch it."""

    def __init__(self, name: str, policy: CircuitPolicy | None = None, *,
                 concurrency_limit: int = 0,
                 clock: Callable[[], float] = time.monotonic,
                 rand: Callable[[], float] = random.random,
                 on_change: Callable[[Circuit], None] | None = None) -> None:
        self.name = name
        self.policy = policy or CircuitPolicy()
        self.concurrency_limit = concurrency_limit  # its cap (0: no own limit)
        # an async destination's concurrency and pace (worker.processing.effect_calls)
        self.adaptive: AdaptiveLimit | None = None
        self._clock = clock
        self._rand = rand
        self._on_change = on_change
        self._lock = threading.Lock()
        self.state: CircuitState = CLOSED  # read without the lock on the hot path
        self.failures = 0                  # unavailable failures in a row while closed
        # the failure share while closed: calls and unavailable failures since `_window_at`,
        # and in the window before it
        self._window_at = clock()
        self._calls = 0
        self._failed = 0
        self._before = (0, 0)
        self.down_since: float | None = None  # when it last left closed (None while closed)
        self.retry_at = 0.0                # open: when it turns half-open
        self._reopened = 0                 # times it opened again since it left closed
        self._probes_out = 0
        self._probed_at = 0.0
        self.refused = 0                   # calls held back while not closed (a counter)
        self.opened = 0                    # times it opened (a counter)
        self.parked = 0                    # events parked for it (a counter;
        #                                    worker.processing.parking)
        self.held = 0                      # partitions with an event parked for it, now

    # -- the callers -----------------------------------------------------------------------
    def admit(self) -> float:
        """0.0 when a call may go now (a probe slot is taken when half-open); else the seconds
        to wait before asking again (or sooner, when the state changes)."""
        if self.state is CLOSED:
            return 0.0
        with self._lock:
            state = self.state
            if state is CLOSED:
                return 0.0
            now = self._clock()
            if state is OPEN:
                if now < self.retry_at:
                    return self.retry_at - now
                self._set(HALF_OPEN, now)
                self._probes_out = 0
            if self._probes_out and now - self._probed_at > PROBE_STALE_S:
                self._probes_out = 0  # its caller went away without a word
            if self._probes_out < self.policy.probes:
                self._probes_out += 1
                self._probed_at = now
                return 0.0
            # every probe is out: its answer wakes the waiters; ask again by then anyway
            return max(0.05, self.policy.first_backoff)

    def probe_due(self) -> bool:
        """Whether a call would be let through now (closed, its backoff over, or a probe slot
        free), without taking a slot: when parked events are read again."""
        if self.state is CLOSED:
            return True
        with self._lock:
            state, now = self.state, self._clock()
            if state is OPEN:
                return now >= self.retry_at
            if state is HALF_OPEN:
                return (self._probes_out < self.policy.probes
                        or now - self._probed_at > PROBE_STALE_S)
            return True

    def ask(self, bound: float | None, first: bool) -> float | None:
        """For a caller waiting to call: 0.0 to call now; None when the destination has been
        unavailable for `bound` seconds (--max-outage) or more; else the seconds to wait
        before asking again (the callers also wake when the state changes). `first`: the
        call's first ask (a held-back call is counted in `refused` once)."""
        wait = self.admit()
        if wait <= 0.0:
            return 0.0
        if self.outage_over(bound):
            return None
        if first:
            self.refused += 1
        if bound is not None:
            wait = min(wait, max(0.01, bound - self.down_seconds()))
        return wait

    def success(self) -> None:
        """The destination answered (whatever the answer said about the event)."""
        if self.state is CLOSED:
            self._calls += 1  # (unlocked: a lost count only shifts the share a little)
            if self.failures:
                self.failures = 0
            return
        with self._lock:
            if self.state is CLOSED:
                return
            now = self._clock()
            seconds = now - (self.down_since or now)
            self.failures = 0
            self._reopened = 0
            self._probes_out = 0
            self.down_since = None
            self._window_at, self._calls, self._failed, self._before = now, 0, 0, (0, 0)
            self._set(CLOSED, now, down_for_s=round(seconds, 3), refused=self.refused)

    def failure(self, retry_after: float = 0.0) -> None:
        """A call found the destination unavailable; `retry_after`: what it asked for."""
        with self._lock:
            now = self._clock()
            wait = min(max(0.0, retry_after), MAX_RETRY_AFTER_S)
            state = self.state
            if state is CLOSED:
                self.failures += 1
                if self.failures < self.policy.failures_to_open and not self._share_failed(now):
                    return
                self.down_since = now
                self._reopened = 0
            elif state is OPEN:  # a call that was in flight when it opened: no new backoff
                self.retry_at = max(self.retry_at, now + wait)
                return
            else:  # a probe failed
                self._probes_out = max(0, self._probes_out - 1)
                self._reopened += 1
            backoff = max(self.policy.backoff(self._reopened, self._rand()), wait)
            self.retry_at = now + backoff
            self.opened += 1
            self._set(OPEN, now, retry_in_s=round(backoff, 3), failures=self.failures)

    def count_successes(self, n: int) -> None:
        """`n` calls answered (the sync path reports its batch's once, after the batch)."""
        if self.state is CLOSED:
            self._calls += n

    def _share_failed(self, now: float) -> bool:
        """(Locked, closed) Count an unavailable failure in the share; True when the share of
        the calls that failed unavailable reached `share_to_open` over the last window."""
        p = self.policy
        age = now - self._window_at
        if age >= p.share_window:
            self._before = (self._calls, self._failed) if age < 2 * p.share_window else (0, 0)
            self._window_at, self._calls, self._failed = now, 0, 0
        self._calls += 1
        self._failed += 1
        calls, failed = self._calls + self._before[0], self._failed + self._before[1]
        return calls >= p.share_min_calls and failed >= p.share_to_open * calls

    def release_probe(self) -> None:
        """A probe ended without an answer either way (cancelled): its slot is free again."""
        with self._lock:
            if self.state is HALF_OPEN and self._probes_out:
                self._probes_out -= 1

    # -- read by the metrics and the waiting callers ---------------------------------------
    def down_seconds(self) -> float:
        """Seconds since the circuit left closed; 0.0 while closed."""
        since = self.down_since
        return 0.0 if since is None else max(0.0, self._clock() - since)

    def current_limit(self) -> int:
        """Calls in flight at once at most, now (the adaptive limit's, else the cap)."""
        adaptive = self.adaptive
        return self.concurrency_limit if adaptive is None else adaptive.concurrency

    def current_pace(self) -> float:
        """Calls per second at most, now; 0.0: not paced."""
        adaptive = self.adaptive
        return 0.0 if adaptive is None or adaptive.rate is None else adaptive.rate

    def outage_over(self, bound: float | None) -> bool:
        """True when the destination has been unavailable for `bound` seconds or more."""
        since = self.down_since
        return bound is not None and since is not None and self._clock() - since >= bound

    def _set(self, state: CircuitState, now: float, **fields: object) -> None:
        before, self.state = self.state, state
        if state is OPEN and before is CLOSED:
            log.warning("destination unavailable; its calls wait", destination=self.name,
                        state=str(state), **fields)
        elif state is CLOSED:
            log.info("destination available again; its calls resume", destination=self.name,
                     state=str(state), **fields)
        else:
            log.info("destination circuit changed", destination=self.name,
                     state=str(state), before=str(before), **fields)
        if self._on_change is not None:
            self._on_change(self)


class Circuits:
    """Every destination's circuit, by name. `not_closed` is the set of the names of circuits
    that are not closed: the sync path checks it per call (an empty set's truth test)."""

    def __init__(self, policy: CircuitPolicy | None = None, *,
                 max_outage: float | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 rand: Callable[[], float] = random.random) -> None:
        self.policy = policy or CircuitPolicy()
        self.max_outage = max_outage
        self._clock = clock
        self._rand = rand
        self._by_name: dict[str, Circuit] = {}
        self.not_closed: set[str] = set()
        self._listeners: list[Callable[[Circuit], None]] = []

    def add(self, name: str, concurrency_limit: int = 0) -> Circuit:
        circuit = self._by_name.get(name)
        if circuit is None:
            circuit = self._by_name[name] = Circuit(
                name, self.policy, concurrency_limit=concurrency_limit, clock=self._clock,
                rand=self._rand, on_change=self._changed)
        elif concurrency_limit and not circuit.concurrency_limit:
            circuit.concurrency_limit = concurrency_limit
        return circuit

    def __getitem__(self, name: str) -> Circuit:
        return self._by_name[name]

    def all(self) -> list[Circuit]:
        return list(self._by_name.values())

    def waiting(self) -> bool:
        """True while some destination is not closed (its events wait: the worker is fine)."""
        return bool(self.not_closed)

    def listen(self, callback: Callable[[Circuit], None]) -> None:
        """Call `callback(circuit)` on each state change (from the thread that caused it)."""
        self._listeners.append(callback)

    def _changed(self, circuit: Circuit) -> None:
        if circuit.state is CLOSED:
            self.not_closed.discard(circuit.name)
        else:
            self.not_closed.add(circuit.name)
        for callback in self._listeners:
            callback(circuit)
