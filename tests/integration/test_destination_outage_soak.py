"""A 10-minute outage with a `kill -9` of the worker in the middle (issue 26; a soak test: run
with --soak). Real broker, a real HTTP server on loopback, the real worker process with a Redis
ledger: the endpoint answers 503 for 10 minutes mid-stream; after 5 minutes the waiting worker
is killed with SIGKILL and started again, and waits on. After the recovery: exit 0, no dead
letter, every event delivered exactly once (counted by Idempotency-Key at the server), and the
calls that reached the down endpoint stay few (two first waves, then the probes)."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from tests.engine.helpers import read_all
from tests.http_helpers import Endpoints
from tests.integration.test_destination_outage import (
    MAX_IN_FLIGHT,
    delivered_once,
    finished,
    forwarding,
    running,
    topic_with,
    wait_until,
    worker,
)

pytestmark = [pytest.mark.kafka, pytest.mark.soak, pytest.mark.timeout(1200)]

EVENTS = 3000
OUTAGE_S = 600.0



def test_a_10_minute_outage_with_a_kill_9_in_the_middle_loses_nothing_and_doubles_nothing(
        kafka_bootstrap: str, redis_url: str, endpoints: Endpoints, tmp_path: Path) -> None:
    topic = topic_with(kafka_bootstrap, EVENTS)
    # a killed member holds its partitions until its session expires: keep that short
    args, env = forwarding(redis_url, endpoints, "--kafka-config", "session.timeout.ms=6000")
    with running(worker(kafka_bootstrap, topic, tmp_path, *args, **env)) as first:
        wait_until(lambda: len(endpoints.answered("crm", 200)) >= EVENTS // 3, 120,
                   "a third of the events delivered")
        endpoints.modes["crm"] = "down"
        down_at = time.monotonic()
        while time.monotonic() - down_at < OUTAGE_S / 2:
            assert first.poll() is None, "the worker exited during the outage"
            time.sleep(1)
        first.send_signal(signal.SIGKILL)
        assert first.wait(10) == -signal.SIGKILL
    delivered_before = len(endpoints.answered("crm", 200))
    with running(worker(kafka_bootstrap, topic, tmp_path, *args, **env)) as second:
        while time.monotonic() - down_at < OUTAGE_S:
            assert second.poll() is None, "the restarted worker exited during the outage"
            time.sleep(1)
        up_at = time.monotonic()
        endpoints.modes["crm"] = "up"
        finished(second, tmp_path, 180)
    to_down = endpoints.calls_between("crm", down_at, up_at)
    print(json.dumps({"events": EVENTS, "outage_s": OUTAGE_S, "killed_after_s": OUTAGE_S / 2,
                      "delivered_before_the_outage": delivered_before,
                      "calls_to_down_endpoint": to_down,
                      "exit_after_recovery_s": round(time.monotonic() - up_at, 1)}))
    delivered_once(endpoints, "crm", "http_forwarder", EVENTS)
    assert not read_all(kafka_bootstrap, f"{topic}.dlq", 0, timeout=2)
    # two first waves (each at most --max-in-flight) and ~20 probes per worker in 5 minutes
    # (a backoff doubling from 1 s up to 30 s)
    assert to_down <= 2 * (MAX_IN_FLIGHT + 10) + 2 * 25, to_down
