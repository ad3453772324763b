"""Two destinations, one down (issue 26): the healthy one keeps >= 90% of its normal rate over a
long outage of the other. On a real broker with real HTTP servers on loopback and the real
worker process: the healthy destination's accepted calls per second are counted at the server,
first with both up, then, in the same run, while the other answers 503 for OUTAGE_S seconds,
measured from a few seconds into the outage (past --park-after) to its end; then the other
comes back and the run drains: every event delivered exactly once at both destinations
(counted by Idempotency-Key at the server), no dead letter, few calls to the down endpoint.

It holds because the down destination's effects park (worker.processing.parking): their
batches complete, the engine holds each partition's offset at its first parked event and
reads the partitions again from there once per probe cycle (docs/engine.md, "Parked
events"), so nothing waits in memory and consumption never stops for the healthy one."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.engine.helpers import produce, read_all
from tests.integration.test_destination_outage import (
    TWO_MODULE,
    Endpoints,
    delivered_once,
    event,
    finished,
    running,
    topic_with,
    wait_until,
    worker,
)

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(600)]

EVENTS = 200_000
SETTLE_S = 0.5     # after the first calls, before measuring the normal rate
NORMAL_S = 5.0     # the normal rate, over this long
OUTAGE_S = 36.0    # the other destination answers 503 this long
FROM_S = 6.0       # the rate during the outage: from this far into it (--park-after is 5 s)
MAX_IN_FLIGHT = 512
#: every done mark kept (2 per event; the default max_keys=100,000 would forget some, and the
#: events read again after a park would be delivered again)
LEDGER = "memory://?max_keys=1000000"


PRODUCE_CHUNK = 50_000  # (the producer's local queue holds 100,000)


def big_topic(bootstrap: str, n: int, partitions: int = 4) -> str:
    """topic_with's topic and events, produced in chunks."""
    topic = topic_with(bootstrap, PRODUCE_CHUNK, partitions)
    for start in range(PRODUCE_CHUNK, n, PRODUCE_CHUNK):
        produce(bootstrap, topic, [(i % partitions, f"cust_{i % 300}".encode(), event(i))
                                   for i in range(start, min(n, start + PRODUCE_CHUNK))])
    return topic


def rate(server: Endpoints, path: str, t0: float, t1: float) -> float:
    """Accepted calls per second at `path` over [t0, t1]."""
    return server.calls_between(path, t0, t1, status=200) / (t1 - t0)


def test_two_destinations_one_down_the_healthy_one_keeps_its_rate(
        kafka_bootstrap: str, endpoints: Endpoints, tmp_path: Path) -> None:
    topic = big_topic(kafka_bootstrap, EVENTS)
    (tmp_path / "two_destinations.py").write_text(TWO_MODULE)
    with running(worker(kafka_bootstrap, topic, tmp_path, "--processors", "two_destinations",
                        "--max-in-flight", str(MAX_IN_FLIGHT), "--metrics-address", "off",
                        "--ledger", LEDGER, CRM_URL=endpoints.url("crm"),
                        MAIL_URL=endpoints.url("mail"))) as proc:
        wait_until(lambda: bool(endpoints.answered("mail", 200)), 60, "the first calls")
        normal_from = time.monotonic() + SETTLE_S
        wait_until(lambda: time.monotonic() > normal_from + NORMAL_S, 30, "normal rate")
        endpoints.modes["crm"] = "down"
        down_at = time.monotonic()
        wait_until(lambda: time.monotonic() > down_at + OUTAGE_S, OUTAGE_S + 10, "the outage")
        mail_by_then = len(endpoints.answered("mail", 200))
        crm_while_down = len(endpoints.answered("crm", 503))
        assert proc.poll() is None, f"the worker exited; {mail_by_then} events at mail"
        endpoints.modes["crm"] = "up"
        up_at = time.monotonic()
        log = finished(proc, tmp_path, 300)
    drained_s = time.monotonic() - up_at
    normal = rate(endpoints, "mail", normal_from, normal_from + NORMAL_S)
    during = rate(endpoints, "mail", down_at + FROM_S, down_at + OUTAGE_S)
    print(json.dumps({
        "events": EVENTS, "mail_normal_per_s": round(normal, 1),
        "mail_while_crm_down_per_s": round(during, 1), "share": round(during / normal, 3),
        "measured_s": OUTAGE_S - FROM_S, "crm_calls_while_down": crm_while_down,
        "parks_logged": log.count("events parked"),
        "rereads_logged": log.count("reading parked events again"),
        "drained_after_recovery_s": round(drained_s, 1),
        "mail_per_second_from_3s_before_the_outage": [
            endpoints.calls_between("mail", down_at + s, down_at + s + 1, 200)
            for s in range(-3, int(OUTAGE_S))]}))
    # the measurement ran out of events otherwise: raise EVENTS
    assert mail_by_then < EVENTS, "every event was at mail before the end of the outage"
    assert normal > 0 and during >= 0.9 * normal, (normal, during)
    # the first wave (calls in flight when it went down), then a probe per backoff
    assert crm_while_down <= MAX_IN_FLIGHT + 30, crm_while_down
    assert log.count("events parked") >= 1 and log.count("reading parked events again") >= 1
    delivered_once(endpoints, "crm", "crm", EVENTS)
    delivered_once(endpoints, "mail", "mail", EVENTS)
    assert not read_all(kafka_bootstrap, f"{topic}.dlq", 0, timeout=2)
