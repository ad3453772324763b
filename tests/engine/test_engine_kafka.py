"""Engine semantics against the real broker (KAFKA_BOOTSTRAP_SERVERS, default 127.0.0.1:9092).

Each test makes its own topics and group. Processes are really killed (SIGKILL/SIGTERM); waits
are on conditions with deadlines.
"""

from __future__ import annotations

import itertools
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.engine.fakes import ExactResolver, FakeLedger
from tests.engine.helpers import (
    Running,
    committed,
    create_topic,
    event_json,
    produce,
    read_all,
    wait_for,
)
from worker.engine.lifecycle import EXIT_FATAL_PROCESSING, EXIT_GUARDRAIL, EXIT_OK
from worker.engine.loop import Engine, EngineConfig
from worker.errors import NonRetriableError
from worker.kafka.config import build_consumer_config, producer_config
from worker.kafka.confluent_consumer import ConfluentConsumer
from worker.kafka.dead_letter_producer import DeadLetterProducer
from worker.observer import WorkerObserver
from worker.processing.pipeline import Pipeline
from worker.processors.api import Processor, RetryPolicy
from worker.types import BatchResult, Message, TopicPartition

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]
SEQ = itertools.count()


# -- helpers ---------------------------------------------------------------------------------
class Recorder:
    """A handler that records every message it touches (with a global sequence number) and
    which batches completed."""

    window = None  # one batch at a time (worker.types.BatchHandler)

    def __init__(self, name: str, delay_per_msg: float = 0.0) -> None:
        self.name = name
        self.delay = delay_per_msg
        self.touched: list[tuple[int, int, int]] = []  # (seq, partition, offset)
        self.completed: list[tuple[int, int]] = []
        self.lock = threading.Lock()

    def handle(self, messages: Sequence[Message], cancelled: Callable[[], bool]) -> BatchResult:
        for m in messages:
            if cancelled():
                return BatchResult(completed=False)
            with self.lock:
                self.touched.append((next(SEQ), m.partition() or 0, m.offset() or 0))
            if self.delay:
                time.sleep(self.delay)
        with self.lock:
            self.completed.extend((m.partition() or 0, m.offset() or 0) for m in messages)
        return BatchResult(completed=True)


class RecordingMetrics(WorkerObserver):
    """Records rebalance callbacks in the same global sequence as Recorder."""

    def __init__(self) -> None:
        self.events: list[tuple[int, str, list[int]]] = []
        self.commits: list[tuple[int, int]] = []
        self.guardrail = 0
        self.dlq_writes: list[bool] = []
        self.assigned: set[int] = set()

    def partitions_assigned(self, tps: Sequence[TopicPartition]) -> None:
        self.events.append((next(SEQ), "assigned", [tp.partition for tp in tps]))
        self.assigned |= {tp.partition for tp in tps}

    def partitions_revoked(self, tps: Sequence[TopicPartition]) -> None:
        self.events.append((next(SEQ), "revoked", [tp.partition for tp in tps]))
        self.assigned -= {tp.partition for tp in tps}

    def partitions_lost(self, tps: Sequence[TopicPartition]) -> None:
        self.events.append((next(SEQ), "lost", [tp.partition for tp in tps]))
        self.assigned -= {tp.partition for tp in tps}

    def record_commit(self, tp: TopicPartition, offset: int) -> None:
        self.commits.append((tp.partition, offset))

    def guardrail_tripped(self) -> None:
        self.guardrail += 1

    def dlq_write(self, ok: bool, shrunk: int = 0) -> None:
        self.dlq_writes.append(ok)


def engine_for(bootstrap: str, topic: str, group: str, handler: Any, *,
               dlq_topic: str | None = None, metrics: Any = None,
               overrides: dict[str, str] | None = None, protocol: str | None = None,
               **cfg: Any) -> Engine:
    config = build_consumer_config(bootstrap, group, overrides, group_protocol=protocol)
    dlq = DeadLetterProducer(producer_config(config), dlq_topic) if dlq_topic else None
    cfg.setdefault("poll_timeout", 0.1)
    cfg.setdefault("commit_interval", 0.2)
    cfg.setdefault("install_signals", False)
    return Engine(ConfluentConsumer(config), handler, EngineConfig(topics=[topic], **cfg), dlq=dlq,
                  observers=[metrics] if metrics is not None else [])


def spawn_worker(bootstrap: str, topic: str, group: str, out: Path, *args: str
                 ) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.engine.run_engine", "--bootstrap", bootstrap,
         "--topic", topic, "--group", group, "--out", str(out), *args],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def lines(path: Path) -> list[tuple[int, int]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        p, o = line.split()
        out.append((int(p), int(o)))
    return out


def batches_started(out: Path) -> int:
    started = Path(str(out) + ".started")
    return len(started.read_text().splitlines()) if started.exists() else 0


def total_committed(bootstrap: str, group: str, topic: str, partitions: int) -> int:
    return sum(max(0, o) for o in committed(bootstrap, group, topic, partitions).values())


# -- crash / commit --------------------------------------------------------------------------
def test_crash_without_commit_redelivers(engine_bootstrap: str, unique_name: Any,
                                         tmp_path: Path) -> None:
    """Processed but uncommitted events come back after a SIGKILL, and are processed again."""
    b, topic, group = engine_bootstrap, unique_name("topic"), unique_name("group")
    create_topic(b, topic, 3)
    produce(b, topic, [(i % 3, None, event_json(i)) for i in range(120)])
    out = tmp_path / "processed"
    # Static membership: the restarted worker takes the killed one's place without waiting
    # for its session to expire.
    proc = spawn_worker(b, topic, group, out, "--commit-interval", "3600",
                        "--instance-id", "w1")
    wait_for(lambda: len(lines(out)) >= 120, 30, "first run processed everything")
    proc.kill()
    proc.wait(10)
    assert total_committed(b, group, topic, 3) == 0

    proc = spawn_worker(b, topic, group, out, "--instance-id", "w1")
    try:
        wait_for(lambda: len(lines(out)) >= 240, 30, "the same events processed again")
        wait_for(lambda: total_committed(b, group, topic, 3) == 120, 30, "commit")
    finally:
        proc.kill()
        proc.wait(10)
    seen = lines(out)
    assert sorted(seen[:120]) == sorted(seen[120:])  # exactly the same events, redelivered


def test_crash_after_commit_does_not_redeliver(engine_bootstrap: str, unique_name: Any,
                                               tmp_path: Path) -> None:
    b, topic, group = engine_bootstrap, unique_name("topic"), unique_name("group")
    create_topic(b, topic, 3)
    produce(b, topic, [(i % 3, None, event_json(i)) for i in range(120)])
    out = tmp_path / "processed"
    proc = spawn_worker(b, topic, group, out, "--commit-interval", "0.1", "--instance-id", "w1")
    wait_for(lambda: total_committed(b, group, topic, 3) == 120, 30, "all committed")
    proc.kill()
    proc.wait(10)
    assert len(lines(out)) == 120

    proc = spawn_worker(b, topic, group, out, "--commit-interval", "0.1", "--instance-id", "w1")
    try:
        produce(b, topic, [(i % 3, None, event_json(i)) for i in range(120, 150)])
        wait_for(lambda: total_committed(b, group, topic, 3) == 150, 30, "new events committed")
    finally:
        proc.kill()
        proc.wait(10)
    seen = lines(out)
    assert len(seen) == 150 and len(set(seen)) == 150  # only the 30 new ones were processed


# -- shutdown ----------------------------------------------------------------------------------
def test_sigterm_finishes_batch_commits_and_exits_zero(engine_bootstrap: str, unique_name: Any,
                                                       tmp_path: Path) -> None:
    b, topic, group = engine_bootstrap, unique_name("topic"), unique_name("group")
    create_topic(b, topic, 2)
    produce(b, topic, [(i % 2, None, event_json(i)) for i in range(400)])
    out = tmp_path / "processed"
    # 1 s per 50-event batch, commits only at shutdown: SIGTERM lands mid-batch.
    proc = spawn_worker(b, topic, group, out, "--delay", "1.0", "--commit-interval", "3600")
    wait_for(lambda: len(lines(out)) >= 50, 30, "a first batch")
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0
    assert time.monotonic() - t0 < 5
    done = lines(out)
    assert 50 <= len(done) < 400
    # Everything processed (including the batch in flight at SIGTERM) is committed, no more.
    per_part = committed(b, group, topic, 2)
    for part in (0, 1):
        offsets = sorted(o for p, o in done if p == part)
        assert per_part[part] == (offsets[-1] + 1 if offsets else -1001)
        assert offsets == list(range(len(offsets)))


def test_shutdown_bound_cancels_slow_batch(engine_bootstrap: str, unique_name: Any,
                                           tmp_path: Path) -> None:
    """A batch that cannot finish within --shutdown-timeout is cancelled; exit 0, no commit of
    it."""
    b, topic, group = engine_bootstrap, unique_name("topic"), unique_name("group")
    create_topic(b, topic, 1)
    produce(b, topic, [(0, None, event_json(i)) for i in range(10)])
    out = tmp_path / "processed"
    proc = spawn_worker(b, topic, group, out, "--delay", "60", "--shutdown-timeout", "3")
    wait_for(lambda: batches_started(out) >= 1, 30, "the 60 s batch in flight")
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    assert time.monotonic() - t0 < 3.5
    assert lines(out) == []
    assert committed(b, group, topic, 1)[0] < 0


def test_second_signal_exits_at_once(engine_bootstrap: str, unique_name: Any,
                                     tmp_path: Path) -> None:
    b, topic, group = engine_bootstrap, unique_name("topic"), unique_name("group")
    create_topic(b, topic, 1)
    produce(b, topic, [(0, None, event_json(i)) for i in range(10)])
    out = tmp_path / "processed"
    # A handler that ignores cancellation and takes 60 s: only the second signal ends it.
    proc = spawn_worker(b, topic, group, out, "--delay", "60", "--ignore-cancel",
                        "--shutdown-timeout", "60")
    wait_for(lambda: batches_started(out) >= 1, 30, "the 60 s batch in flight")
    proc.send_signal(signal.SIGTERM)
    assert proc.stderr is not None
    first = proc.stderr.readline()  # written by the first signal's handler
    assert b"SIGTERM received" in first
    assert proc.poll() is None  # still finishing the batch
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(5)
    assert time.monotonic() - t0 < 2
    assert code == 128 + signal.SIGTERM
    assert committed(b, group, topic, 1)[0] < 0
    assert b"second SIGTERM" in (proc.stderr.read() if proc.stderr else b"")


# -- rebalances --------------------------------------------------------------------------------
@pytest.mark.parametrize("protocol", ["classic", "consumer"])
def test_join_and_leave_while_events_flow(engine_bootstrap: str, unique_name: Any,
                                          protocol: str) -> None:
    """Worker B joins and worker A leaves while events are produced: every event processed, no
    event of a revoked partition touched by its old owner after the revoke, committed offsets
    never go backwards."""
    b, topic, group = engine_bootstrap, unique_name("topic"), unique_name("group")
    parts, total = 6, 3000
    create_topic(b, topic, parts)

    stop_monitor = threading.Event()
    backwards: list[str] = []
    snapshots: list[dict[int, int]] = []

    def monitor() -> None:
        last: dict[int, int] = {}
        while not stop_monitor.is_set():
            now = committed(b, group, topic, parts)
            snapshots.append(now)
            for p, off in now.items():
                if off >= 0 and off < last.get(p, -1):
                    backwards.append(f"partition {p}: {last[p]} -> {off}")
                last[p] = max(off, last.get(p, -1))
            time.sleep(0.05)

    def producer() -> None:
        for chunk in range(30):
            produce(b, topic, [(i % parts, None, event_json(i))
                               for i in range(chunk * 100, chunk * 100 + 100)])
            time.sleep(0.1)

    mon = threading.Thread(target=monitor, daemon=True)
    mon.start()
    prod = threading.Thread(target=producer, daemon=True)
    prod.start()

    rec_a, rec_b = Recorder("a", 0.001), Recorder("b", 0.001)
    met_a, met_b = RecordingMetrics(), RecordingMetrics()
    kw: dict[str, Any] = {"protocol": protocol, "batch_size": 50, "revoke_timeout": 2.0,
                          "pause_after": 0.02}
    a = Running(engine_for(b, topic, group, rec_a, metrics=met_a, **kw))
    wait_for(lambda: len(rec_a.completed) >= 300, 30, "A processing")
    bw = Running(engine_for(b, topic, group, rec_b, metrics=met_b, **kw))
    wait_for(lambda: len(rec_b.completed) >= 100, 60, "B got partitions and processed")
    assert a.stop() == EXIT_OK
    wait_for(lambda: len(met_b.assigned) == parts, 60, "B owns every partition")
    prod.join(30)

    def all_done() -> bool:
        with rec_a.lock, rec_b.lock:
            return len(set(rec_a.completed) | set(rec_b.completed)) >= total

    wait_for(all_done, 60, "every event processed")
    wait_for(lambda: total_committed(b, group, topic, parts) == total, 30, "all committed")
    assert bw.stop() == EXIT_OK
    stop_monitor.set()
    mon.join(5)

    expected = {(p, o) for p in range(parts) for o in range(total // parts)}
    assert set(rec_a.completed) | set(rec_b.completed) == expected
    assert not backwards, backwards
    assert len(snapshots) > 5
    # Someone revoked something from A (B joined, then A left).
    assert any(kind == "revoked" for _, kind, _ in met_a.events)
    for rec, met in ((rec_a, met_a), (rec_b, met_b)):
        late = late_touches(rec, met)
        assert not late, f"{rec.name} processed {late[:3]} after revoking their partitions"


def late_touches(rec: Recorder, met: RecordingMetrics) -> list[tuple[int, int, int]]:
    """Messages `rec` touched on a partition after revoking/losing it (before regaining it)."""
    late = []
    for seq, kind, tps in met.events:
        if kind not in ("revoked", "lost"):
            continue
        for part in tps:
            back = min((s for s, k, t in met.events if k == "assigned" and part in t and s > seq),
                       default=1 << 62)
            late += [(s, p, o) for s, p, o in rec.touched if p == part and seq < s < back]
    return late


@pytest.mark.parametrize("revoke_timeout", [10.0, 0.05], ids=["wait", "cancel"])
def test_revoke_during_inflight_batch(engine_bootstrap: str, unique_name: Any,
                                      revoke_timeout: float) -> None:
    """B joins while A is inside a slow batch: A either finishes it within revoke_timeout or
    cancels it; either way A touches no event of the revoked partition afterwards, and every
    event is processed. The eager `range` assignor is used here so that the revoke surely
    covers the partition of the in-flight batch (cooperative revokes only some partitions)."""
    b, topic, group = engine_bootstrap, unique_name("topic"), unique_name("group")
    create_topic(b, topic, 2)
    produce(b, topic, [(i % 2, None, event_json(i)) for i in range(160)])
    rec_a, rec_b = Recorder("a", 0.05), Recorder("b", 0.0)  # A: 1 s per batch
    met_a, met_b = RecordingMetrics(), RecordingMetrics()
    kw: dict[str, Any] = {"batch_size": 20, "revoke_timeout": revoke_timeout, "pause_after": 0.02,
                          "overrides": {"partition.assignment.strategy": "range",
                                        "heartbeat.interval.ms": "500"}}
    a = Running(engine_for(b, topic, group, rec_a, metrics=met_a, **kw))
    wait_for(lambda: len(rec_a.completed) >= 20 and len(rec_a.touched) > len(rec_a.completed),
             30, "A inside its second batch")
    bw = Running(engine_for(b, topic, group, rec_b, metrics=met_b, **kw))
    wait_for(lambda: any(k == "revoked" for _, k, _ in met_a.events), 30, "A revoked")

    def all_done() -> bool:
        with rec_a.lock, rec_b.lock:
            return len(set(rec_a.completed) | set(rec_b.completed)) >= 160

    wait_for(all_done, 60, "every event processed")
    assert a.stop() == EXIT_OK
    assert bw.stop() == EXIT_OK
    assert late_touches(rec_a, met_a) == []
    assert total_committed(b, group, topic, 2) == 160
    if revoke_timeout < 1:
        assert a.engine.counts.cancelled_batches >= 1


def test_backpressure_keeps_membership_beyond_max_poll_interval(
        engine_bootstrap: str, unique_name: Any) -> None:
    """A batch that takes longer than max.poll.interval.ms does not cost the partitions: the
    loop keeps polling with the partitions paused."""
    b, topic, group = engine_bootstrap, unique_name("topic"), unique_name("group")
    create_topic(b, topic, 2)
    produce(b, topic, [(i % 2, None, event_json(i)) for i in range(20)])
    rec = Recorder("slow", delay_per_msg=0.4)  # 20 events, one batch: 8 s
    met = RecordingMetrics()
    run = Running(engine_for(b, topic, group, rec, metrics=met, batch_size=100,
                             overrides={"max.poll.interval.ms": "6000",
                                        "session.timeout.ms": "6000"}))
    wait_for(lambda: total_committed(b, group, topic, 2) == 20, 40, "slow batch committed")
    # More events after the slow batch are still consumed by the same member.
    produce(b, topic, [(i % 2, None, event_json(i)) for i in range(20, 22)])
    wait_for(lambda: total_committed(b, group, topic, 2) == 22, 40, "follow-up committed")
    assert run.stop() == EXIT_OK
    kinds = [k for _, k, _ in met.events]
    assert "lost" not in kinds
    assert kinds.count("assigned") == 1 and kinds.count("revoked") == 1  # the final leave


# -- dead letters, retries, guardrail (the real Pipeline) ----------------------------------
class Calls:
    def __init__(self) -> None:
        self.ok: list[tuple[int, int, str]] = []
        self.attempts: dict[str, int] = {}
        self.lock = threading.Lock()


def make_pipeline(processors: list[Processor]) -> Pipeline:
    return Pipeline(processors, FakeLedger(), router=ExactResolver(processors))


def dlq_headers(msg: Any) -> dict[str, bytes]:
    return dict(msg.headers() or [])


def test_poison_pills_go_to_dlq_and_the_rest_is_processed(engine_bootstrap: str,
                                                          unique_name: Any) -> None:
    b, topic, group = engine_bootstrap, unique_name("topic"), unique_name("group")
    dlq = topic + ".dlq"
    create_topic(b, topic, 2)
    create_topic(b, dlq, 1)
    calls = Calls()

    def count(event: Any, ctx: Any) -> None:
        with calls.lock:
            calls.ok.append((ctx.partition, ctx.offset, event.id))

    procs = [Processor(name="count", patterns=("customer.order.paid",), func=count)]
    records: list[tuple[int, bytes | None, bytes | None]] = []
    for i in range(100):
        records.append((i % 2, f"k{i}".encode(), event_json(i)))
    records[10] = (0, b"bad-json", b"{not json")
    records[33] = (1, b"bad-schema", b'{"id":"evcus_1","type":"customer.order.paid",'
                   b'"group_id":"v-1","created_at":7}')
    produce(b, topic, records, headers=[("trace", b"abc")])

    run = Running(engine_for(b, topic, group, make_pipeline(procs), dlq_topic=dlq, drain=True,
                             dlq_window=50, guardrail_min_events=10))
    assert run.join(60) == EXIT_OK
    assert len(calls.ok) == 98
    assert total_committed(b, group, topic, 2) == 100
    dead = read_all(b, dlq, 2)
    assert len(dead) == 2
    by_key = {m.key(): m for m in dead}
    bad = by_key[b"bad-json"]
    h = dlq_headers(bad)
    assert bad.value() == b"{not json"
    assert h["trace"] == b"abc"
    assert h["worker.error.class"] == b"invalid_json"
    assert h["worker.source.topic"] == topic.encode()
    assert h["worker.source.partition"] == b"0"
    assert h["worker.source.offset"] == b"5"  # record 10 is the 6th on partition 0
    assert h["worker.attempts"] == b"1"
    assert h["worker.failed_at"].endswith(b"Z")
    assert "worker.processor" in h
    hs = dlq_headers(by_key[b"bad-schema"])
    assert hs["worker.error.class"] == b"schema"
    assert b"$.created_at" in hs["worker.error.reason"]


def test_guardrail_stops_instead_of_emptying_the_topic(engine_bootstrap: str,
                                                       unique_name: Any) -> None:
    b, topic, group = engine_bootstrap, unique_name("topic"), unique_name("group")
    dlq = topic + ".dlq"
    create_topic(b, topic, 1)
    create_topic(b, dlq, 1)
    good = [(0, None, event_json(i)) for i in range(60)]
    bad = [(0, None, b"garbage") for _ in range(300)]
    produce(b, topic, good + bad)
    procs = [Processor(name="count", patterns=("customer.order.paid",),
                       func=lambda e, c: None)]
    met = RecordingMetrics()
    run = Running(engine_for(b, topic, group, make_pipeline(procs), dlq_topic=dlq, drain=True,
                             metrics=met, batch_size=20, dlq_max_share=0.5,
                             dlq_window=100, guardrail_min_events=40))
    assert run.join(60) == EXIT_GUARDRAIL
    assert met.guardrail == 1
    done = total_committed(b, group, topic, 1)
    assert 60 <= done < 360
    dead = read_all(b, dlq, 1, timeout=3)
    assert len(dead) < 300
    # What was dead-lettered is exactly what was committed past.
    assert len(dead) == done - 60


def test_retry_then_succeed_and_exhausted_to_dlq_with_order(engine_bootstrap: str,
                                                            unique_name: Any) -> None:
    b, topic, group = engine_bootstrap, unique_name("topic"), unique_name("group")
    dlq = topic + ".dlq"
    create_topic(b, topic, 2)
    create_topic(b, dlq, 1)
    calls = Calls()
    flaky_ids = {f"evcus_{i:020d}" for i in range(0, 60, 7)}   # fail twice, then succeed
    doomed_ids = {f"evcus_{i:020d}" for i in (5, 44)}           # always fail

    def flaky(event: Any, ctx: Any) -> None:
        with calls.lock:
            n = calls.attempts[event.id] = calls.attempts.get(event.id, 0) + 1
        if event.id in doomed_ids:
            raise RuntimeError("downstream says no")
        if event.id in flaky_ids and n < 3:
            raise ConnectionError("transient")
        with calls.lock:
            calls.ok.append((ctx.partition, ctx.offset, event.id))

    def other(event: Any, ctx: Any) -> None:
        if event.id == "evcus_00000000000000000044":
            raise NonRetriableError("other: bad")

    procs = [Processor(name="flaky", patterns=("customer.order.paid",), func=flaky,
                       retry=RetryPolicy(max_attempts=3, initial_backoff=0.01, max_backoff=0.05)),
             Processor(name="other", patterns=("customer.order.paid",), func=other)]
    produce(b, topic, [(i % 2, f"k{i}".encode(), event_json(i)) for i in range(60)])
    run = Running(engine_for(b, topic, group, make_pipeline(procs), dlq_topic=dlq, drain=True,
                             batch_size=10, guardrail_min_events=1000))
    assert run.join(60) == EXIT_OK
    assert total_committed(b, group, topic, 2) == 60
    ok_ids = [i for _, _, i in calls.ok]
    assert flaky_ids <= set(ok_ids)                     # retried, then succeeded
    assert all(calls.attempts[i] == 3 for i in flaky_ids - doomed_ids)
    assert not doomed_ids & set(ok_ids)
    assert len(ok_ids) == 58
    for part in (0, 1):                                 # per-partition order kept
        offs = [o for p, o, _ in calls.ok if p == part]
        assert offs == sorted(offs)
    dead = read_all(b, dlq, 3)
    got = sorted((dlq_headers(m)["worker.processor"], m.key()) for m in dead)
    assert got == [(b"flaky", b"k44"), (b"flaky", b"k5"), (b"other", b"k44")]
    for m in dead:
        h = dlq_headers(m)
        if h["worker.processor"] == b"flaky":
            assert h["worker.attempts"] == b"3"
            assert h["worker.error.class"] == b"processor_failed"
            assert b"downstream says no" in h["worker.error.reason"]


def test_on_failure_stop_exits_nonzero_without_committing_past(engine_bootstrap: str,
                                                               unique_name: Any) -> None:
    b, topic, group = engine_bootstrap, unique_name("topic"), unique_name("group")
    create_topic(b, topic, 1)
    produce(b, topic, [(0, None, event_json(i)) for i in range(30)])

    def boom(event: Any, ctx: Any) -> None:
        if ctx.offset == 25:
            raise RuntimeError("cannot")

    procs = [Processor(name="strict", patterns=("customer.order.paid",), func=boom,
                       on_failure="stop", retry=RetryPolicy(max_attempts=2, initial_backoff=0.01))]
    run = Running(engine_for(b, topic, group, make_pipeline(procs), batch_size=10, drain=True))
    assert run.join(60) == EXIT_FATAL_PROCESSING
    assert committed(b, group, topic, 1)[0] == 20  # batches before the failing one only


# -- drain, KIP-848 ---------------------------------------------------------------------------
def test_drain_with_kip848_consumer_protocol(engine_bootstrap: str, unique_name: Any) -> None:
    b, topic, group = engine_bootstrap, unique_name("topic"), unique_name("group")
    create_topic(b, topic, 3)
    produce(b, topic, [(i % 3, None, event_json(i)) for i in range(300)])
    rec = Recorder("kip848")
    run = Running(engine_for(b, topic, group, rec, protocol="consumer", drain=True))
    assert run.join(60) == EXIT_OK
    assert len(set(rec.completed)) == 300
    assert total_committed(b, group, topic, 3) == 300


def test_drain_again_with_nothing_left_exits_at_once(engine_bootstrap: str,
                                                    unique_name: Any) -> None:
    b, topic, group = engine_bootstrap, unique_name("topic"), unique_name("group")
    create_topic(b, topic, 2)
    produce(b, topic, [(i % 2, None, event_json(i)) for i in range(50)])
    first = Recorder("first")
    assert Running(engine_for(b, topic, group, first, drain=True)).join(60) == EXIT_OK
    assert len(first.completed) == 50
    again = Recorder("again")
    assert Running(engine_for(b, topic, group, again, drain=True)).join(30) == EXIT_OK
    assert again.completed == []


def test_max_events_stops_after_n(engine_bootstrap: str, unique_name: Any) -> None:
    b, topic, group = engine_bootstrap, unique_name("topic"), unique_name("group")
    create_topic(b, topic, 1)
    produce(b, topic, [(0, None, event_json(i)) for i in range(100)])
    rec = Recorder("max")
    run = Running(engine_for(b, topic, group, rec, max_events=42, batch_size=10))
    assert run.join(60) == EXIT_OK
    assert len(rec.completed) == 42
    assert committed(b, group, topic, 1)[0] == 42
