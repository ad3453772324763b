"""kill -9 while partitions are held at parked events (worker.processing.parking; docs/engine.md,
"Parked events"): two forwarders on real HTTP servers on loopback, the real worker process on a
real broker with a Redis ledger. One destination goes down mid-stream; its events park, the
other destination runs far ahead; the worker is killed with SIGKILL. Then:

- the committed offsets never pass an event that was not delivered at both destinations (a
  held partition's commit stays at its first parked event);
- after a restart with the destination back, every event is delivered at both (nothing lost),
  the down one's each exactly once, and no effect whose key was done in the ledger at the kill
  is delivered again (no ledger-protected effect repeats; only calls in flight at the kill
  may)."""

from __future__ import annotations

import json
import signal
import uuid
from collections import Counter
from pathlib import Path

import pytest

from tests.engine.helpers import committed, read_all
from tests.integration.test_destination_outage import (
    TWO_MODULE,
    Endpoints,
    delivered_once,
    finished,
    key,
    running,
    topic_with,
    wait_until,
    worker,
)
from worker.ledger import ClaimState, open_ledger

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(300)]

EVENTS, PARTITIONS = 8000, 4


def test_kill9_while_partitions_are_held_loses_nothing_and_repeats_no_done_effect(
        kafka_bootstrap: str, redis_url: str, endpoints: Endpoints, tmp_path: Path) -> None:
    topic = topic_with(kafka_bootstrap, EVENTS, PARTITIONS)
    (tmp_path / "two_destinations.py").write_text(TWO_MODULE)
    ledger_url = f"{redis_url.rstrip('/')}/0?prefix={uuid.uuid4().hex[:8]}:"
    args = ["--processors", "two_destinations", "--ledger", ledger_url, "--park-after", "1",
            "--max-in-flight", "64", "--metrics-address", "off", "--ledger-lease", "10",
            "--kafka-config", "session.timeout.ms=6000"]
    env = {"CRM_URL": endpoints.url("crm"), "MAIL_URL": endpoints.url("mail")}
    log = tmp_path / "worker.log"
    with running(worker(kafka_bootstrap, topic, tmp_path, *args, **env)) as first:
        wait_until(lambda: len(endpoints.answered("crm", 200)) >= EVENTS // 5, 60,
                   "a fifth of the events delivered")
        endpoints.modes["crm"] = "down"
        wait_until(lambda: "events parked" in log.read_text(errors="replace")
                   and len(endpoints.answered("mail", 200)) >= EVENTS * 3 // 4, 60,
                   "events parked, the other destination far ahead")
        assert first.poll() is None
        at_crm = len(endpoints.answered("crm", 200))
        assert at_crm < EVENTS * 3 // 4  # held back: what follows tests the hold
        first.send_signal(signal.SIGKILL)
        assert first.wait(10) == -signal.SIGKILL
    crm_before = set(endpoints.answered("crm", 200))
    mail_before = Counter(endpoints.answered("mail", 200))
    # the committed offsets never pass an event not delivered at both
    marks = committed(kafka_bootstrap, f"g-{topic}", topic, PARTITIONS)
    for i in range(EVENTS):
        if i // PARTITIONS < marks[i % PARTITIONS]:
            assert key("crm", i) in crm_before, f"committed past event {i} (crm)"
            assert key("mail", i) in mail_before, f"committed past event {i} (mail)"
    # what the ledger says is done at the kill
    ledger = open_ledger(ledger_url)
    session = ledger.session()
    names = [key(p, i) for p in ("crm", "mail") for i in range(EVENTS)]
    states = session.claim(names)
    session.rollback()
    ledger.close()
    done = {k for k, s in zip(names, states, strict=True) if s is ClaimState.DONE}
    assert done <= crm_before | set(mail_before)
    # the other destination's effects went on past the parked ones
    mail_done = {k for k in done if k.startswith("mail:")}
    assert len(mail_done) > len(done - mail_done) + EVENTS // 4

    endpoints.modes["crm"] = "up"
    finished(worker(kafka_bootstrap, topic, tmp_path, *args, **env), tmp_path, 180)
    delivered_once(endpoints, "crm", "crm", EVENTS)
    mail = Counter(endpoints.answered("mail", 200))
    assert set(mail) == {key("mail", i) for i in range(EVENTS)}  # nothing lost
    again = [k for k in done if k.startswith("mail:") and mail[k] > 1]
    assert not again, f"{len(again)} effects done in the ledger at the kill ran again"
    assert not read_all(kafka_bootstrap, f"{topic}.dlq", 0, timeout=2)
    print(json.dumps({"events": EVENTS, "committed_at_kill": marks, "crm_at_kill": at_crm,
                      "mail_at_kill": len(mail_before),
                      "mail_repeated_after_kill": sum(c - 1 for c in mail.values())}))
