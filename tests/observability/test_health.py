"""HealthState liveness/readiness rules on a controllable clock, and /healthz flipping when a
real poll-loop thread is blocked and recovering when it runs again."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from worker.observability.health import HealthState
from worker.observability.http import serve_http
from worker.observability.metrics import WorkerMetrics


class FakeClock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def health(clock: FakeClock) -> HealthState:
    return HealthState(poll_stale_after=10, commit_stall_after=60, clock=clock)


def test_live_at_start_and_stale_without_heartbeats(health: HealthState, clock: FakeClock) -> None:
    assert health.liveness() == (True, [])
    clock.now += 10
    assert health.liveness()[0]  # exactly at the bound is still live
    clock.now += 0.5
    ok, reasons = health.liveness()
    assert not ok and "poll loop has not run for 10.5s" in reasons[0]
    health.heartbeat()
    assert health.liveness() == (True, [])


def test_commits_must_advance_when_there_is_traffic(health: HealthState,
                                                    clock: FakeClock) -> None:
    health.record_traffic()
    for _ in range(7):  # the loop keeps polling, traffic keeps coming, nothing commits
        clock.now += 9
        health.heartbeat()
        health.record_traffic()
    ok, reasons = health.liveness()
    assert not ok and reasons == [reasons[0]] and "no commit has advanced" in reasons[0]
    health.record_commit_advance()
    assert health.liveness() == (True, [])


def test_commits_waiting_for_a_down_destination_keep_the_worker_live(
        health: HealthState, clock: FakeClock) -> None:
    """A restart does not bring a destination back: /healthz stays 200 while one is down."""
    down = [True]
    health.watch_destinations(lambda: down[0])
    health.record_traffic()
    for _ in range(20):
        clock.now += 9
        health.heartbeat()
    assert health.liveness() == (True, [])
    down[0] = False  # back, and still no commit advances: a stuck processor after all
    assert not health.liveness()[0]


def test_idle_worker_with_old_commit_stays_live(health: HealthState, clock: FakeClock) -> None:
    health.record_traffic()
    health.record_commit_advance()
    for _ in range(100):  # 15 minutes without traffic
        clock.now += 9
        health.heartbeat()
    assert health.liveness() == (True, [])


def test_readiness_needs_connection_and_ledger_not_partitions(health: HealthState) -> None:
    ok, reasons = health.readiness()
    assert not ok and reasons == ["not connected to Kafka", "ledger unreachable"]
    health.set_connected(True)
    health.set_ledger_ok(True)
    assert health.readiness() == (True, [])  # no partitions: still ready
    assert health.details() == {"assigned_partitions": 0}
    health.set_assigned(3)
    assert health.readiness() == (True, []) and health.details() == {"assigned_partitions": 3}
    health.set_ledger_ok(False)
    assert health.readiness() == (False, ["ledger unreachable"])
    health.set_ledger_ok(True)
    health.set_dlq_writable(False)
    assert health.readiness() == (False, ["dead letters cannot be written (consumption "
                                          "paused)"])


def test_bounds_must_be_positive() -> None:
    with pytest.raises(ValueError):
        HealthState(poll_stale_after=0)


class PollLoop:
    """A stand-in for the engine's poll loop: heartbeat each iteration; block() parks it."""

    def __init__(self, health: HealthState) -> None:
        self.health = health
        self._run = threading.Event()
        self._run.set()
        self._stop = threading.Event()
        self.parked = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            if not self._run.is_set():
                self.parked.set()
                self._run.wait()  # blocked, like a processor stuck in a call
                self.parked.clear()
            self.health.heartbeat()
            self._stop.wait(0.01)  # a poll(timeout)

    def start(self) -> None:
        self._thread.start()

    def block(self) -> None:
        self._run.clear()

    def unblock(self) -> None:
        self._run.set()

    def stop(self) -> None:
        self._stop.set()
        self._run.set()
        self._thread.join(timeout=5)


def _get(url: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _wait_status(url: str, want: int, timeout: float = 10.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    status, body = _get(url)
    while status != want and time.monotonic() < deadline:
        time.sleep(0.05)
        status, body = _get(url)
    assert status == want, (status, body)
    return body


@pytest.fixture
def loop_and_url() -> Iterator[tuple[PollLoop, str]]:
    health = HealthState(poll_stale_after=0.3, commit_stall_after=60)
    server = serve_http("127.0.0.1:0", WorkerMetrics(), health)
    loop = PollLoop(health)
    loop.start()
    try:
        yield loop, f"http://127.0.0.1:{server.port}/healthz"
    finally:
        loop.stop()
        server.close()


def test_healthz_turns_unhealthy_while_poll_loop_is_blocked_and_recovers(
        loop_and_url: tuple[PollLoop, str]) -> None:
    loop, url = loop_and_url
    assert _wait_status(url, 200) == {"status": "ok", "reasons": []}
    loop.block()
    assert loop.parked.wait(5)
    body = _wait_status(url, 503)
    assert body["status"] == "fail"
    assert "poll loop has not run" in str(body["reasons"])
    loop.unblock()
    assert _wait_status(url, 200) == {"status": "ok", "reasons": []}
