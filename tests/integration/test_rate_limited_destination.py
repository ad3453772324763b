"""A rate-limited destination (issue 26), on a real broker with a real HTTP server on loopback and
the real worker process (`python -m worker run --drain`): the endpoint admits 200 requests/s (a
token bucket) and answers 429 with `Retry-After: 1` above that. The worker's adaptive limit
(worker.processing.adaptive_limit) must settle at >= 90% of the limit with <= 5% of the calls
refused, no dead letter, every event delivered once. Measured at the server, per second, in the
steady state (after a warm-up), bounded in time."""

from __future__ import annotations

import json
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
    running,
    topic_with,
    wait_until,
    worker,
)

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(300)]

LIMIT = 200.0      # requests/s the endpoint admits
BURST = 20.0       # its bucket's size (0.1 s of the limit)
EVENTS = 8000      # ~40 s at the limit
WARM_UP_S = 10.0   # the first seconds: the worker finds the limit
STEADY_S = 20.0    # then measured over this long


class RateLimited(LoopbackServer):
    """Admits LIMIT requests/s (a token bucket of BURST), answers 429 with Retry-After: 1 above
    that. Records (Idempotency-Key, status, monotonic time) of each request."""

    def __init__(self) -> None:
        self.tokens = BURST
        self.refilled = time.monotonic()
        self.requests: list[tuple[str, int, float]] = []
        self.lock = threading.Lock()
        super().__init__()

    async def answer(self, request: web.Request) -> web.Response:
        await request.read()
        now = time.monotonic()
        with self.lock:
            self.tokens = min(BURST, self.tokens + (now - self.refilled) * LIMIT)
            self.refilled = now
            admitted = self.tokens >= 1.0
            if admitted:
                self.tokens -= 1.0
            status = 200 if admitted else 429
            self.requests.append((request.headers.get("Idempotency-Key", ""), status, now))
        if admitted:
            return web.Response(text="")
        return web.Response(status=429, text="slow down", headers={"Retry-After": "1"})

    def between(self, t0: float, t1: float) -> Counter[int]:
        with self.lock:
            return Counter(s for _, s, t in self.requests if t0 <= t < t1)

    def first_at(self) -> float:
        with self.lock:
            return self.requests[0][2]


@pytest.fixture
def endpoint() -> Iterator[RateLimited]:
    server = RateLimited()
    yield server
    server.close()


def test_a_rate_limited_endpoint_is_called_near_its_limit_with_few_refusals(
        kafka_bootstrap: str, endpoint: RateLimited, tmp_path: Path) -> None:
    topic = topic_with(kafka_bootstrap, EVENTS)
    with running(worker(kafka_bootstrap, topic, tmp_path, "--processors",
                        "worker.processors.builtin.http_forwarder", "--metrics-address", "off",
                        WORKER_FORWARD_URL=endpoint.url("crm"),
                        WORKER_FORWARD_TIMEOUT="5")) as proc:
        wait_until(lambda: bool(endpoint.requests), 60, "the first request")
        t0 = endpoint.first_at() + WARM_UP_S
        wait_until(lambda: time.monotonic() > t0 + STEADY_S, WARM_UP_S + STEADY_S + 5,
                   "the steady state measured")
        finished(proc, tmp_path, 120)
    seconds = [endpoint.between(t0 + s, t0 + s + 1) for s in range(int(STEADY_S))]
    steady = endpoint.between(t0, t0 + STEADY_S)
    accepted_per_s = steady[200] / STEADY_S
    refused_share = steady[429] / max(1, steady[200] + steady[429])
    total = endpoint.between(0.0, time.monotonic() + 1)
    print(json.dumps({"limit_per_s": LIMIT, "accepted_per_s": round(accepted_per_s, 1),
                      "refused_share": round(refused_share, 4),
                      "per_second_accepted": [c[200] for c in seconds],
                      "per_second_refused": [c[429] for c in seconds],
                      "whole_run": {"accepted": total[200], "refused": total[429]}}))
    assert accepted_per_s >= 0.9 * LIMIT, accepted_per_s
    assert refused_share <= 0.05, refused_share
    delivered = Counter(k for k, s, _ in endpoint.requests if s == 200)
    assert set(delivered) == {key("http_forwarder", i) for i in range(EVENTS)}
    assert set(delivered.values()) == {1}
    assert not read_all(kafka_bootstrap, f"{topic}.dlq", 0, timeout=2)
