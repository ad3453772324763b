"""`activity-worker status` against the real broker: two workers in one group on a 3-partition
topic, one partition held back by a gated processor. What `status --json` prints matches what
the broker says (the test asks it itself), the JSON round-trips, the table shows the same, and
the exit code follows the thresholds and the group's members."""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import ConsumerGroupTopicPartitions

from devtools.generate import EventGenerator
from tests.console.conftest import REPO, StartWorker
from tests.kafka_helpers import KafkaHelper, unique_name
from worker.group_status import Assigned, GroupStatus, StatusExit, from_json, to_json

pytestmark = pytest.mark.kafka

GATED = 2


def _status(bootstrap: str, group: str, topic: str, *extra: str
            ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker", "status", "--group", group, "--topic", topic,
         "--bootstrap-servers", bootstrap, *extra],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False)


def listed_status(partitions: list[Assigned]) -> list[tuple[str, int]]:
    return [(a.topic, a.partition) for a in partitions]


def _wait_for(what: str, probe: Callable[[], Any], deadline_s: float = 90.0) -> Any:
    deadline = time.monotonic() + deadline_s
    seen: Any = None
    while time.monotonic() < deadline:
        seen = probe()
        if seen:
            return seen
        time.sleep(0.5)
    raise AssertionError(f"{what} not reached in {deadline_s:.0f}s; last seen: {seen!r}")


@pytest.mark.parametrize("protocol", ["classic", "consumer"])
def test_status_shows_members_assignment_and_lag(kafka_helper: KafkaHelper,
                                                  start_worker: StartWorker,
                                                  tmp_path: Path, protocol: str) -> None:
    bootstrap = kafka_helper.bootstrap
    gate = tmp_path / "gate"
    gate.write_text("closed")
    env = {"CONSOLE_GATE_FILE": str(gate), "CONSOLE_GATE_PARTITION": str(GATED),
           "WORKER_BUILTIN_PROCESSORS": "false"}
    procs = ("--processors", "tests.console.console_processors")
    group = unique_name("status")
    # A static member stays in the group for its session timeout after it stops: keep it short
    # (classic; a KIP-848 group takes it from the broker, 45 s by default).
    session = ["--kafka-config", "session.timeout.ms=6000"] if protocol == "classic" else []
    a = start_worker(None, group, *procs, "--group-protocol", protocol,
                     "--kafka-config", "client.id=worker-a", *session,
                     "--group-instance-id", "instance-a", partitions=3, env=env)
    b = start_worker(a.topic, group, *procs, "--group-protocol", protocol,
                     "--kafka-config", "client.id=worker-b", env=env)
    topic = a.topic

    def settled() -> GroupStatus | None:
        out = _status(bootstrap, group, topic, "--json")
        if out.returncode not in (0, 3) or not out.stdout:
            return None
        st = from_json(out.stdout)
        held = sum(len(m.partitions) for m in st.members)
        return st if st.state == "stable" and len(st.members) == 2 and held == 3 else None

    _wait_for("a stable group of 2 members holding 3 partitions", settled)

    gen = EventGenerator(seed=3)
    values = [r.value for r in gen.records(60) if r.kind == "ok"
              and not r.type.startswith("customer.order.")][:30]
    produced_at = time.time()
    for p in range(3):
        kafka_helper.produce(topic, values[p * 10:(p + 1) * 10], key=f"k{p}", partition=p)

    def caught_up() -> GroupStatus | None:
        st = from_json(_status(bootstrap, group, topic, "--json").stdout)
        done = {p.partition: p.committed for p in st.partitions}
        return st if done[0] == 10 and done[1] == 10 else None

    _wait_for("partitions 0 and 1 committed to their end", caught_up)
    time.sleep(1.5)  # let the held partition's next record age past a second
    out = _status(bootstrap, group, topic, "--json")
    assert out.returncode == StatusExit.OK, out.stderr
    st = from_json(out.stdout)
    assert to_json(st).decode() == out.stdout.strip()  # --json round-trips

    # What the broker says, asked directly.
    desc = kafka_helper.admin.describe_consumer_groups([group])[group].result(30)
    def listed(assignment: Any) -> list[tuple[str, int]] | None:
        return None if assignment is None else sorted(
            (tp.topic, tp.partition) for tp in assignment.topic_partitions)

    truth = {m.client_id: (m.host, m.group_instance_id, listed(m.assignment),
                           listed(m.target_assignment) if protocol == "consumer" else None)
             for m in desc.members}
    shown = {m.client_id: (m.host, m.instance_id, listed_status(m.partitions),
                           None if m.target is None else listed_status(m.target))
             for m in st.members}
    assert shown == truth
    assert set(shown) == {"worker-a", "worker-b"} and shown["worker-a"][1] == "instance-a"
    assert st.protocol == protocol and st.state == desc.state.name.lower() == "stable"
    if protocol == "consumer":  # a settled KIP-848 group: each holds its target
        assert all(m.target == m.partitions and not m.in_flight for m in st.members)
    committed = kafka_helper.admin.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group)])[group].result(30).topic_partitions
    assert {p.partition: p.committed for p in st.partitions} == {
        tp.partition: tp.offset for tp in committed if tp.offset >= 0} | {GATED: None}
    lags = {p.partition: p.lag for p in st.partitions}
    assert lags == {0: 0, 1: 0, GATED: 10}
    held = next(p for p in st.partitions if p.partition == GATED)
    assert held.end == 10 and held.next_timestamp is not None
    assert abs(held.next_timestamp - produced_at) < 5
    assert held.lag_seconds is not None and 1.0 <= held.lag_seconds <= time.time() - produced_at
    owner = st.owner(held.member_id)
    assert owner is not None and (topic, GATED) in truth[owner.client_id][2]
    assert [(d.topic, d.exists, d.depth) for d in st.dlq] == [(f"{topic}.dlq", True, 0)]

    # The table says the same; the thresholds set the exit code.
    table = _status(bootstrap, group, topic)
    assert table.returncode == 0
    assert "worker-a" in table.stdout and "instance-a" in table.stdout
    assert f"protocol {protocol}" in table.stdout
    assert ("TARGET" in table.stdout) == (protocol == "consumer")
    assert f"{topic}  {GATED}" in table.stdout.replace("   ", "  ")
    over = _status(bootstrap, group, topic, "--max-lag", "5")
    assert over.returncode == StatusExit.UNHEALTHY
    assert f"{topic}[{GATED}] lags 10 events (limit 5)" in over.stderr
    assert _status(bootstrap, group, topic, "--max-lag", "10").returncode == StatusExit.OK
    assert _status(bootstrap, group, topic, "--max-lag-seconds", "0.5").returncode == \
        StatusExit.UNHEALTHY
    watch = subprocess.Popen(
        [sys.executable, "-m", "worker", "status", "--group", group, "--topic", topic,
         "--bootstrap-servers", bootstrap, "--json", "--watch", "0.5", "--max-lag", "5"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    lines: queue.Queue[str] = queue.Queue()
    assert watch.stdout is not None
    threading.Thread(target=lambda: [lines.put(x) for x in watch.stdout or ()],
                     daemon=True).start()
    try:
        refreshes = [from_json(lines.get(timeout=30)) for _ in range(2)]  # JSON Lines
        assert refreshes[1].taken_at > refreshes[0].taken_at
    finally:
        watch.send_signal(signal.SIGINT)
        assert watch.wait(30) == StatusExit.UNHEALTHY  # the last refresh's verdict

    # The gate opens: the group catches up; the workers stop: no members, exit 3.
    gate.unlink()
    _wait_for("the held partition caught up", lambda: next(
        p for p in from_json(_status(bootstrap, group, topic, "--json").stdout).partitions
        if p.partition == GATED).lag == 0)
    for w in (a, b):
        w.proc.terminate()
        w.proc.wait(60)
    if protocol == "consumer":
        # KIP-848: a static member that stops leaves for now, not for good; it stays a member
        # (its instance id) for the broker's session timeout, the dynamic one is gone at once.
        left = _wait_for("worker-b gone, the static worker-a kept", lambda: (
            lambda st: st if [m.client_id for m in st.members] == ["worker-a"] else None)(
            from_json(_status(bootstrap, group, topic, "--json").stdout)))
        assert left.members[0].instance_id == "instance-a"
        return
    gone = _wait_for("the group emptied", lambda: (lambda r: r if r.returncode == 3 else None)(
        _status(bootstrap, group, topic)))
    assert "has no members" in gone.stderr


def test_a_kip848_group_reconciling_shows_each_member_s_target(
        kafka_helper: KafkaHelper, start_worker: StartWorker) -> None:
    """A second worker joins a consumer-protocol group: until the first has revoked what the
    broker's assignor moved away from it, the group is reconciling (librdkafka calls the state
    UNKNOWN) and a member's target differs from what it holds."""
    from worker.kafka.group_view import GroupInspector

    group = unique_name("status848")
    a = start_worker(None, group, "--group-protocol", "consumer",
                     "--kafka-config", "client.id=worker-a", partitions=4)
    inspector = GroupInspector({"bootstrap.servers": kafka_helper.bootstrap})
    try:
        _wait_for("worker-a holding all 4 partitions", lambda: (
            lambda st: st.state == "stable" and len(st.members) == 1
            and len(st.members[0].partitions) == 4)(inspector.status(group, [a.topic])))
        start_worker(a.topic, group, "--group-protocol", "consumer",
                     "--kafka-config", "client.id=worker-b")
        seen = _wait_for("the group reconciling", lambda: (
            lambda st: st if st.state == "reconciling" else None)(
            inspector.status(group, [a.topic], time_lag=False)), 30)
        moving = [m for m in seen.members if m.in_flight]
        assert moving, seen
        for m in moving:
            assert m.target is not None and m.target != m.partitions
        owned_now = {(x.topic, x.partition) for m in seen.members for x in m.partitions}
        targets = [(x.topic, x.partition) for m in seen.members for x in m.target or []]
        assert sorted(targets) == [(a.topic, p) for p in range(4)]  # each has one target owner
        assert owned_now <= set(targets)
        settled = _wait_for("the group stable again, 2 partitions each", lambda: (
            lambda st: st if st.state == "stable" and sorted(
                len(m.partitions) for m in st.members) == [2, 2] else None)(
            inspector.status(group, [a.topic], time_lag=False)))
        assert all(not m.in_flight for m in settled.members)
    finally:
        inspector.close()
