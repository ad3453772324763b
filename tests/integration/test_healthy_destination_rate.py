"""Two destinations, one down (issue 26): the healthy one keeps >= 90% of its normal rate. On a
real broker with real HTTP servers on loopback and the real worker process: the healthy
destination's accepted calls per second are counted at the server first with both up, then,
in the same run, while the other answers 503; bounded in time.

It holds while the worker has room for the down destination's waiting events: each batch waits
in one of the 32 batch threads until its effects are done (worker.processing.batch_window), so
after about 32 batches (here ~15,000 events, ~5 s) the worker pauses consumption for every
destination (offsets are per partition, not per destination). The rate is measured in the
first 4 s of the outage, inside that bound; the per-second counts printed show the pause
after it."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.engine.helpers import read_all
from tests.integration.test_destination_outage import (
    TWO_MODULE,
    Endpoints,
    delivered_once,
    finished,
    running,
    topic_with,
    wait_until,
    worker,
)

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(400)]

EVENTS = 60000
SETTLE_S = 0.5     # after a change, before measuring
MEASURE_S = 4.0    # each rate over this long (the outage's: before the batch threads fill)
MAX_IN_FLIGHT = 512  # the window: 64 x this events in flight, room for the waiting ones



def rate(server: Endpoints, path: str, t0: float) -> float:
    """Accepted calls per second at `path` over [t0, t0 + MEASURE_S]."""
    return server.calls_between(path, t0, t0 + MEASURE_S, status=200) / MEASURE_S


def test_two_destinations_one_down_the_healthy_one_keeps_its_rate(
        kafka_bootstrap: str, endpoints: Endpoints, tmp_path: Path) -> None:
    topic = topic_with(kafka_bootstrap, EVENTS)
    (tmp_path / "two_destinations.py").write_text(TWO_MODULE)
    with running(worker(kafka_bootstrap, topic, tmp_path, "--processors", "two_destinations",
                        "--max-in-flight", str(MAX_IN_FLIGHT), "--metrics-address", "off",
                        CRM_URL=endpoints.url("crm"), MAIL_URL=endpoints.url("mail"))) as proc:
        wait_until(lambda: bool(endpoints.answered("mail", 200)), 60, "the first calls")
        normal_from = time.monotonic() + SETTLE_S
        wait_until(lambda: time.monotonic() > normal_from + MEASURE_S, 30, "normal rate")
        endpoints.modes["crm"] = "down"
        down_at = time.monotonic()
        outage_from = time.monotonic() + SETTLE_S
        wait_until(lambda: time.monotonic() > down_at + 10, 30, "outage rate and after")
        mail_by_then = len(endpoints.answered("mail", 200))
        crm_while_down = len(endpoints.answered("crm", 503))
        assert proc.poll() is None, f"the worker exited; {mail_by_then} events at mail"
        endpoints.modes["crm"] = "up"
        finished(proc, tmp_path, 300)
    normal, during = rate(endpoints, "mail", normal_from), rate(endpoints, "mail", outage_from)
    print(json.dumps({"events": EVENTS, "mail_normal_per_s": round(normal, 1),
                      "mail_while_crm_down_per_s": round(during, 1),
                      "share": round(during / normal, 3), "crm_calls_while_down":
                      crm_while_down, "mail_per_second_from_3s_before_the_outage": [
                          endpoints.calls_between("mail", down_at + s, down_at + s + 1, 200)
                          for s in range(-3, 10)]}))
    # the measurement ran out of events otherwise: raise EVENTS
    assert mail_by_then < EVENTS, "every event was at mail before the end of the measurement"
    assert normal > 0 and during >= 0.9 * normal, (normal, during)
    delivered_once(endpoints, "crm", "crm", EVENTS)
    delivered_once(endpoints, "mail", "mail", EVENTS)
    assert not read_all(kafka_bootstrap, f"{topic}.dlq", 0, timeout=2)
