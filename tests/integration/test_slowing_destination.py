"""A destination whose latency rises (issue 26: "on 429/Retry-After or rising latency the
destination's in-flight limit shrinks; on success it grows back"), on a real broker with a real
HTTP server on loopback and the real worker process (`python -m worker run --drain`), every
setting at its default (the HTTP forwarder: 64 requests in flight).

The endpoint answers in ~2 ms with no limit at first. Then, for QUEUEING_S, it serves CAPACITY
requests at a time, SERVICE_S each, the others queue (as a database-backed service under load
does): at 64 in flight its latency rises from ~2 ms to ~210 ms while it still serves
CAPACITY / SERVICE_S a second. The worker's adaptive limit (worker.processing.adaptive_limit)
must cut the calls it keeps in flight there, keep the endpoint busy (its CAPACITY slots in use
>= 85% of the time: the cut costs little or no throughput), and grow back once the endpoint is fast
again. Measured at the server; bounded in time."""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from tests.engine.helpers import read_all
from tests.http_helpers import LoopbackServer
from tests.integration.test_destination_outage import (
    finished,
    key,
    metric,
    running,
    topic_with,
    wait_until,
    worker,
)
from tests.kafka_helpers import free_port
from worker.processors.forwarding import DEFAULT_MAX_CONCURRENCY

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(300)]

EVENTS = 50000     # more than the phases take (up to ~15,000 fast, ~6,000 queueing, the rest)
FAST_S = 5.0        # fast from the first request this long
QUEUEING_S = 20.0   # then queueing this long
CAPACITY = 6        # requests served at once while queueing ...
SERVICE_S = 0.02    # ... each this long: 300 requests/s
SETTLE_S = 4.0      # the first seconds of the queueing phase are not measured


class Slowing(LoopbackServer):
    """Fast, then (from `slow_from` to `slow_until`) CAPACITY at a time, SERVICE_S each.
    Records (Idempotency-Key, arrival, requests in the handler at arrival) per request, and
    when each slot was taken and given back."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, float, int]] = []
        self.served: list[tuple[float, float]] = []
        self.inside = 0
        self.slow_from = self.slow_until = float("inf")
        self.lock = threading.Lock()
        self.slots: asyncio.Semaphore | None = None
        super().__init__()

    async def answer(self, request: web.Request) -> web.Response:
        await request.read()
        now = time.monotonic()
        with self.lock:
            if not self.requests:
                self.slow_from, self.slow_until = now + FAST_S, now + FAST_S + QUEUEING_S
            self.inside += 1
            self.requests.append((request.headers.get("Idempotency-Key", ""), now, self.inside))
        try:
            if self.slow_from <= now < self.slow_until:
                if self.slots is None:
                    self.slots = asyncio.Semaphore(CAPACITY)
                async with self.slots:
                    took = time.monotonic()
                    await asyncio.sleep(SERVICE_S)
                    with self.lock:
                        self.served.append((took, time.monotonic()))
            else:
                await asyncio.sleep(0.002)
        finally:
            with self.lock:
                self.inside -= 1
        return web.Response(text="")

    def busy(self, t0: float, t1: float) -> float:
        """The share of [t0, t1) the CAPACITY slots were in use."""
        with self.lock:
            used = sum(max(0.0, min(b, t1) - max(a, t0)) for a, b in self.served)
        return used / (CAPACITY * (t1 - t0))

    def between(self, t0: float, t1: float) -> list[int]:
        """The requests in the handler at each arrival in [t0, t1)."""
        with self.lock:
            return [inside for _, t, inside in self.requests if t0 <= t < t1]


@pytest.fixture
def endpoint() -> Iterator[Slowing]:
    server = Slowing()
    yield server
    server.close()


def test_rising_latency_cuts_the_calls_in_flight_and_they_grow_back(
        kafka_bootstrap: str, endpoint: Slowing, tmp_path: Path) -> None:
    topic = topic_with(kafka_bootstrap, EVENTS)
    port = free_port()
    limits: list[tuple[float, float]] = []  # (time, destination_concurrency_limit)

    def sample() -> bool:
        try:
            value = metric(port, "activity_worker_destination_concurrency_limit",
                           destination="http_forwarder")
        except OSError:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
            assert proc.poll() is None, (
                f"the worker ended after {len(endpoint.requests)} requests, before the "
                "endpoint was fast again: give the test more events")
            raise
        if value is not None:
            limits.append((time.monotonic(), value))
        return time.monotonic() > endpoint.slow_until + 4.0

    with running(worker(kafka_bootstrap, topic, tmp_path, "--processors",
                        "worker.processors.builtin.http_forwarder",
                        "--metrics-address", f"127.0.0.1:{port}",
                        WORKER_FORWARD_URL=endpoint.url("crm"))) as proc:
        wait_until(lambda: bool(endpoint.requests), 60, "the first request")
        wait_until(sample, FAST_S + QUEUEING_S + 30, "the queueing phase and 4 s after it")
        finished(proc, tmp_path, 120)
    fast = endpoint.between(endpoint.slow_from - FAST_S + 1.0, endpoint.slow_from)
    queueing = endpoint.between(endpoint.slow_from + SETTLE_S, endpoint.slow_until)
    served_per_s = len(queueing) / (QUEUEING_S - SETTLE_S)
    busy = endpoint.busy(endpoint.slow_from + SETTLE_S, endpoint.slow_until)
    during = [v for t, v in limits if endpoint.slow_from <= t < endpoint.slow_until]
    after = [v for t, v in limits if t >= endpoint.slow_until + 1.0]
    figures = {"in_flight_fast_median": statistics.median(fast),
               "in_flight_queueing_median": statistics.median(queueing),
               "in_flight_queueing_max": max(queueing),
               "served_per_s_queueing": round(served_per_s, 1),
               "slots_busy_queueing": round(busy, 3),
               "limit_min_queueing": min(during), "limit_max_after": max(after, default=None)}
    print(json.dumps(figures))
    # the limit was cut while the endpoint queued, and the calls kept there with it ...
    assert min(during) <= DEFAULT_MAX_CONCURRENCY / 4, figures
    assert statistics.median(queueing) <= DEFAULT_MAX_CONCURRENCY / 2, figures
    # ... without losing the endpoint's throughput ...
    assert busy >= 0.85, figures
    # ... and it grew back once the endpoint was fast again
    assert after and max(after) == DEFAULT_MAX_CONCURRENCY, figures
    delivered = Counter(k for k, _, _ in endpoint.requests)
    assert set(delivered) == {key("http_forwarder", i) for i in range(EVENTS)}
    assert set(delivered.values()) == {1}
    assert not read_all(kafka_bootstrap, f"{topic}.dlq", 0, timeout=2)
