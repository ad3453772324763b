"""The pieces of a scale-out scenario on the 3-node cluster: a live stream produced while things
fail, worker processes (`python -m worker run`) started, killed and restarted by name, a watch of
the group's committed offsets, and the effects the workers wrote, checked at the end for what
every scenario asserts: lost = 0, duplicate ledger-protected effects = 0, committed offsets
never went backwards, final lag = 0.

An effect is one row (PostgreSQL ledger: written in the ledger's transaction, in a table without
a unique constraint, so a repeat would show as a second row) or one line in the worker's own
file (Redis ledger), with the worker's name, the partition and the time it happened; the times
give the stall figures (the longest gap in a partition's effects around a failure).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import signal
import statistics
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    TopicPartition,
)

from devtools.generate import EventGenerator
from tests.engine.helpers import read_all, wait_for
from worker.events.envelope import decode_event
from worker.kafka.admin import ensure_topics
from worker.kafka.produce import produce_records

REPO = Path(__file__).resolve().parents[2]
PARTITIONS = 12  # every scenario's topic: 4 partitions a worker

EFFECTS_MODULE = '''
import os, time
from worker.processors import processor

WORKER = os.environ["CLUSTER_WORKER"]
TABLE = os.environ.get("CLUSTER_EFFECTS_TABLE")

if TABLE:
    INSERT = f"INSERT INTO {TABLE} (event_id, worker, part) VALUES (%s, %s, %s)"

    @processor("**", name="effects", requires_transaction=True)
    def effects(event, ctx):
        ctx.transaction.execute(INSERT, (event.id, WORKER, ctx.partition))
else:
    LOG = open(os.path.join(os.environ["CLUSTER_EFFECTS_DIR"], f"{WORKER}-{os.getpid()}.log"),
               "a", buffering=1)

    @processor("**", name="effects")
    def effects(event, ctx):
        LOG.write(f"{event.id} {WORKER} {ctx.partition} {time.time():.6f}\\n")
'''


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@dataclass
class Stream:
    """Events for a topic: `count` generated records (duplicates, and bad ones when asked),
    produced by a background thread at `rate` per second with acks=all while the test breaks
    things; `expected` are the event ids that must each have one effect."""

    bootstrap: str
    topic: str
    count: int
    rate: float
    bad_share: float = 0.0
    expected: set[str] = field(default_factory=set)
    undecodable: set[bytes] = field(default_factory=set)  # dead-lettered by the worker
    produced: int = 0
    error: BaseException | None = None
    _thread: threading.Thread | None = None

    def __post_init__(self) -> None:
        # A seed of its own: the ledger is shared, and another scenario's events would all be
        # duplicates here.
        gen = EventGenerator(seed=uuid.uuid4().int & 0xFFFFFFFF, duplicate_share=0.10,
                             bad_share=self.bad_share)
        self._records = [(r.key, r.value) for r in gen.records(self.count)]
        assert gen.counts.duplicates >= self.count * 0.09  # redeliveries really are in it
        for _key, value in self._records:
            try:
                self.expected.add(decode_event(value).id)
            except Exception:
                self.undecodable.add(value)

    def start(self) -> Stream:
        self._thread = threading.Thread(target=self._produce, name="stream", daemon=True)
        self._thread.start()
        return self

    def _paced(self) -> Iterator[tuple[bytes | None, bytes]]:
        t0 = time.monotonic()
        for i, record in enumerate(self._records):
            if i % 100 == 0:
                ahead = i / self.rate - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(ahead)
            self.produced = i
            yield record
        self.produced = len(self._records)

    def _produce(self) -> None:
        try:
            produce_records(self._paced(), self.topic, self.bootstrap, flush_timeout=180)
        except BaseException as exc:
            self.error = exc

    def wait_produced(self, share: float, timeout: float = 120) -> None:
        wait_for(lambda: self.produced >= share * self.count or self.error, timeout,
                 f"{share:.0%} of the stream produced")
        assert self.error is None, self.error

    def join(self, timeout: float = 240) -> None:
        assert self._thread is not None
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the stream did not finish producing"
        assert self.error is None, f"producing the stream failed: {self.error}"


class OffsetWatch:
    """Samples the group's committed offsets twice a second; any partition whose committed
    offset is ever lower than before is a regression (a commit that went backwards)."""

    def __init__(self, bootstrap: str, group: str, topic: str, partitions: int) -> None:
        self._consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                                   "enable.auto.commit": False})
        self._tps = [TopicPartition(topic, p) for p in range(partitions)]
        self.last: dict[int, int] = {}
        self.regressions: list[tuple[int, int, int, str]] = []  # partition, before, now, when
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="offset-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            try:
                tps = self._consumer.committed(self._tps, timeout=5)
            except Exception:
                continue  # the coordinator may be moving: the next sample tells
            for tp in tps:
                if tp.error is not None or tp.offset < 0:
                    continue
                before = self.last.get(tp.partition, -1)
                if tp.offset < before:
                    self.regressions.append((tp.partition, before, tp.offset,
                                             time.strftime("%H:%M:%S")))
                self.last[tp.partition] = max(before, tp.offset)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._consumer.close()



OFFSETS_TOPIC_PARTITIONS = 50  # the broker's default offsets.topic.num.partitions


def offsets_partition(group: str) -> int:
    """The __consumer_offsets partition that holds `group`'s commits: the absolute value of
    Java's String.hashCode of the group id (0 for Integer.MIN_VALUE), modulo the topic's
    partitions (Kafka's Utils.abs(groupId.hashCode) % partitions)."""
    units = group.encode("utf-16-be")
    h = 0
    for unit in struct.unpack(f">{len(units) // 2}H", units):
        h = (31 * h + unit) & 0xFFFFFFFF
    signed = h - (1 << 32) if h >= 1 << 31 else h
    return (0 if signed == -(1 << 31) else abs(signed)) % OFFSETS_TOPIC_PARTITIONS


@dataclass(frozen=True)
class CommitRecord:
    """One offset commit as the coordinator wrote it to __consumer_offsets."""

    partition: int      # of the scenario's topic
    offset: int
    written_ms: int     # the record's timestamp (the coordinator's clock)
    position: int       # its offset in __consumer_offsets: the order the group saw


def commit_log(bootstrap: str, group: str, topic: str, timeout: float = 30) -> list[CommitRecord]:
    """Every offset commit of `group` for `topic`, in the order the coordinator wrote them: the
    exact history of the group's committed offsets (the watch only samples it)."""
    tp = TopicPartition("__consumer_offsets", offsets_partition(group))
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("commit-log"),
                  "enable.auto.commit": False, "enable.partition.eof": True,
                  "isolation.level": "read_committed"})
    out: list[CommitRecord] = []
    try:
        c.assign([TopicPartition(tp.topic, tp.partition, OFFSET_BEGINNING)])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = c.poll(1.0)
            if m is None:
                continue
            if m.error() is not None:
                if m.error().code() == KafkaError._PARTITION_EOF:
                    break
                continue
            key, value = m.key(), m.value()
            if not key or not value or struct.unpack_from(">h", key)[0] > 1:
                continue  # a group-metadata record, or a tombstone
            at = 2
            fields: list[str] = []
            for _ in range(2):
                (n,) = struct.unpack_from(">h", key, at)
                fields.append(key[at + 2:at + 2 + n].decode())
                at += 2 + n
            if fields != [group, topic]:
                continue
            (part,) = struct.unpack_from(">i", key, at)
            (offset,) = struct.unpack_from(">q", value, 2)
            out.append(CommitRecord(part, offset, m.timestamp()[1], m.offset()))
        else:
            raise AssertionError(f"could not read {tp.topic}[{tp.partition}] in {timeout:.0f}s")
    finally:
        c.close()
    return out


def went_back(log: list[CommitRecord]) -> list[tuple[CommitRecord, CommitRecord]]:
    """Each commit written after a higher one of the same partition, with that higher one."""
    highest: dict[int, CommitRecord] = {}
    out = []
    for record in log:
        top = highest.get(record.partition)
        if top is not None and record.offset < top.offset:
            out.append((top, record))
        elif top is None or record.offset > top.offset:
            highest[record.partition] = record
    return out

@dataclass
class WorkerProc:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def lines(self, event: str) -> list[dict[str, Any]]:
        """The worker's JSON log lines whose event is `event`."""
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            if event in line:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if record.get("event") == event:
                    out.append(record)
        return out


class Workers:
    """Worker processes of one group, by name; each writes its JSON log to <workdir>/<name>.log
    (appended across restarts)."""

    def __init__(self, workdir: Path, bootstrap: str, topic: str, group: str, ledger: str,
                 env: dict[str, str], args: list[str] | None = None) -> None:
        (workdir / "cluster_effects.py").write_text(EFFECTS_MODULE)
        self.workdir = workdir
        self.env = dict(os.environ, PYTHONPATH=f"{workdir}{os.pathsep}{REPO}",
                        WORKER_BUILTIN_PROCESSORS="false", WORKER_BOOTSTRAP_SERVERS=bootstrap,
                        **env)
        # CLUSTER_WORKER_DEBUG=metadata,topic,broker,fetch: librdkafka's debug contexts in each
        # worker's log, to see where a failover's time goes (voluminous: for a diagnosis only).
        debug = os.environ.get("CLUSTER_WORKER_DEBUG")
        self.base = [sys.executable, "-m", "worker", "run", "--topic", topic, "--group", group,
                     "--processors", "cluster_effects", "--ledger", ledger,
                     "--metrics-address", "off", "--batch-size", "500",
                     "--commit-interval", "0.5", *(args or []),
                     *(["--kafka-config", f"debug={debug}"] if debug else [])]
        self.procs: dict[str, WorkerProc] = {}

    def start(self, name: str, *extra: str) -> WorkerProc:
        log = self.workdir / f"{name}.log"
        with log.open("ab") as out:
            proc = subprocess.Popen([*self.base, *extra], cwd=self.workdir,
                                    env={**self.env, "CLUSTER_WORKER": name},
                                    stdout=out, stderr=out)
        self.procs[name] = WorkerProc(name, proc, log)
        return self.procs[name]

    def kill(self, name: str) -> None:
        proc = self.procs[name].proc
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)

    def stop(self, name: str, timeout: float = 60) -> int:
        proc = self.procs[name].proc
        proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout)

    def assert_running(self) -> None:
        for w in self.procs.values():
            assert w.proc.poll() is None, (
                f"worker {w.name} exited with {w.proc.returncode}: "
                f"{w.log.read_text(errors='replace')[-3000:]}")

    def stop_all(self) -> dict[str, int]:
        for w in self.procs.values():
            if w.proc.poll() is None:
                w.proc.send_signal(signal.SIGTERM)
        return {w.name: w.proc.wait(60) for w in self.procs.values()}

    def kill_all(self) -> None:
        for w in self.procs.values():
            if w.proc.poll() is None:
                w.proc.kill()
                w.proc.wait(30)


# --------------------------------------------------------------------------- effects


@dataclass(frozen=True)
class Effect:
    event_id: str
    worker: str
    partition: int
    at: float  # seconds since the epoch
    appended: float | None = None  # when the broker appended its event's first record


class PostgresEffects:
    """The effects table of one scenario, in the ledger's own database."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.table = "effects_" + uuid.uuid4().hex[:10]
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"CREATE TABLE {self.table} (event_id TEXT NOT NULL, worker TEXT, "
                         "part INT, at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp())")

    @property
    def env(self) -> dict[str, str]:
        return {"CLUSTER_EFFECTS_TABLE": self.table}

    def count(self) -> int:
        try:
            with psycopg.connect(self.url, autocommit=True, connect_timeout=3) as conn:
                row = conn.execute(f"SELECT COUNT(*) FROM {self.table}").fetchone()
        except psycopg.Error:
            return -1  # the server is restarting
        return int(row[0]) if row else 0

    def all(self) -> list[Effect]:
        with psycopg.connect(self.url, autocommit=True) as conn:
            rows = conn.execute(f"SELECT event_id, worker, part, EXTRACT(EPOCH FROM at) "
                                f"FROM {self.table}").fetchall()
        return [Effect(r[0], r[1], r[2], float(r[3])) for r in rows]


class FileEffects:
    """Effects written by the workers to files of their own (the Redis ledger scenario)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    @property
    def env(self) -> dict[str, str]:
        return {"CLUSTER_EFFECTS_DIR": str(self.directory)}

    def all(self) -> list[Effect]:
        out = []
        for path in self.directory.glob("*.log"):
            for line in path.read_text().splitlines():
                parts = line.split()
                if len(parts) == 4:
                    out.append(Effect(parts[0], parts[1], int(parts[2]), float(parts[3])))
        return out

    def count(self) -> int:
        return len(self.all())


def lag(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    """Per partition: end offset minus the group's committed offset."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        tps = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        out = {}
        for tp in tps:
            _low, high = c.get_watermark_offsets(TopicPartition(topic, tp.partition), timeout=10)
            out[tp.partition] = high - max(tp.offset, 0)
        return out
    finally:
        c.close()


#: Answers of the group coordinator that only say "ask again": it is moving (a preferred
#: leader election of __consumer_offsets after a broker's return) or loading.
_COORDINATOR_MOVING = (KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
                       KafkaError.COORDINATOR_NOT_AVAILABLE, KafkaError._TIMED_OUT)


def lag_answered(bootstrap: str, group: str, topic: str, partitions: int,
                 timeout: float = 30) -> dict[int, int]:
    """`lag`, asked again while the group's coordinator is moving (up to `timeout` s)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return lag(bootstrap, group, topic, partitions)
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if getattr(err, "code", lambda: None)() not in _COORDINATOR_MOVING \
                    or time.monotonic() > deadline:
                raise
        time.sleep(0.5)


def create_topics(bootstrap: str, topic: str, partitions: int) -> None:
    """The topic (broker default replication: 3 on the cluster) and its dead-letter topic. The
    topic's records carry the time the broker appended them (LogAppendTime), so an effect's
    delay can be told from a pause of the producer."""
    ensure_topics({"bootstrap.servers": bootstrap}, {topic: partitions, f"{topic}.dlq": 1},
                  topic_config={topic: {"message.timestamp.type": "LogAppendTime"}})


@dataclass
class Scenario:
    """One scenario's topic, stream (already producing), workers (none started yet), offset
    watch and effects."""

    stream: Stream
    workers: Workers
    watch: OffsetWatch
    effects: PostgresEffects | FileEffects
    group: str

    def finish(self, timeout: float = 300) -> Outcome:
        return finish(self.stream, self.workers, self.watch, self.effects, self.group,
                      PARTITIONS, timeout)


#: The heartbeat interval of a KIP-848 group given a session timeout of its own (the broker's
#: default is 5 s: a step of a reassignment waits for the members' next heartbeat).
KIP848_HEARTBEAT_MS = 1000


def set_group_session(bootstrap: str, group: str, session_ms: int,
                      heartbeat_ms: int = KIP848_HEARTBEAT_MS) -> None:
    """Give a consumer-protocol (KIP-848) group its own session timeout and heartbeat interval:
    group configs, set on the broker (the client may not set them under KIP-848). The local
    launcher's brokers allow down to 3 s and 0.5 s (Kafka's own minimums are 45 s and 5 s)."""
    from confluent_kafka.admin import (  # type: ignore[attr-defined]
        AdminClient,
        AlterConfigOpType,
        ConfigEntry,
        ConfigResource,
    )

    resource = ConfigResource(ConfigResource.Type.GROUP, group, incremental_configs=[
        ConfigEntry("consumer.session.timeout.ms", str(session_ms),
                    incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("consumer.heartbeat.interval.ms", str(heartbeat_ms),
                    incremental_operation=AlterConfigOpType.SET)])
    admin = AdminClient({"bootstrap.servers": bootstrap})
    try:
        admin.incremental_alter_configs([resource])[resource].result(30)
    except Exception as exc:
        raise AssertionError(
            f"could not set group {group}'s session timeout to {session_ms} ms ({exc}): a "
            "cluster started by an older launcher refuses less than 45 s; restart it "
            "(deploy/local/kafka down/up --nodes 3 with the suite's port and data dir)") from None


def protocol_args(protocol: str, bootstrap: str, group: str,
                  session_ms: int | None = None) -> list[str]:
    """The worker's arguments for `protocol` ("classic" or "consumer"), with the group's
    session timeout when one is given: the client's own under the classic protocol, a group
    config on the broker under KIP-848."""
    args = ["--group-protocol", protocol]
    if session_ms is not None:
        if protocol == "classic":
            args += ["--kafka-config", f"session.timeout.ms={session_ms}"]
        else:
            set_group_session(bootstrap, group, session_ms)
    return args


def begin(bootstrap: str, ledger: str, effects: PostgresEffects | FileEffects, workdir: Path,
          prefix: str, events: int, rate: float, *, bad_share: float = 0.0,
          args: list[str] | None = None, protocol: str = "classic",
          session_ms: int | None = None) -> Scenario:
    topic, group = unique(prefix), unique(prefix)
    create_topics(bootstrap, topic, PARTITIONS)
    stream = Stream(bootstrap, topic, events, rate, bad_share)
    workers = Workers(workdir, bootstrap, topic, group, ledger, effects.env,
                      [*protocol_args(protocol, bootstrap, group, session_ms), *(args or [])])
    watch = OffsetWatch(bootstrap, group, topic, PARTITIONS)
    stream.start()
    return Scenario(stream, workers, watch, effects, group)


@dataclass
class Outcome:
    effects: list[Effect]
    per_worker: Counter[str]
    duplicates: dict[str, int]
    missing: set[str]
    dead_letters: list[Any]


def finish(stream: Stream, workers: Workers, watch: OffsetWatch,
           effects: PostgresEffects | FileEffects, group: str, partitions: int,
           timeout: float = 300) -> Outcome:
    """Wait for the stream to be produced and consumed (lag 0 on every partition and one effect
    per expected event), stop the workers, and check what every scenario asserts."""
    stream.join()
    deadline = time.monotonic() + timeout
    expected = len(stream.expected)
    while True:
        workers.assert_running()
        now_lag = lag_answered(stream.bootstrap, group, stream.topic, partitions)
        if sum(now_lag.values()) == 0 and effects.count() >= expected:
            break
        assert time.monotonic() < deadline, (
            f"not drained in {timeout:.0f}s: lag {now_lag}, {effects.count()} of {expected} "
            "effects")
        time.sleep(0.5)
    codes = workers.stop_all()
    watch.stop()
    assert all(code == 0 for code in codes.values()), codes
    appended = appended_at(stream)
    rows = [dataclasses.replace(e, appended=appended.get(e.event_id)) for e in effects.all()]
    counts = Counter(e.event_id for e in rows)
    duplicates = {k: n for k, n in counts.items() if n > 1}
    missing = stream.expected - counts.keys()
    assert duplicates == {}, f"{len(duplicates)} effects happened more than once"
    assert missing == set(), f"{len(missing)} events have no effect (lost)"
    assert counts.keys() == stream.expected
    history = commit_log(stream.bootstrap, group, stream.topic)
    assert history, "no commit of the group found in __consumer_offsets"
    backwards = went_back(history)
    assert backwards == [], "committed offsets went backwards in the coordinator's log: " + (
        "; ".join(f"{stream.topic}[{new.partition}] {old.offset}->{new.offset} (written at "
                  f"{time.strftime('%H:%M:%S', time.localtime(new.written_ms / 1000))}, "
                  f"{(new.written_ms - old.written_ms) / 1000:.1f}s after the higher one)"
                  for old, new in backwards[:10]))
    assert watch.regressions == [], (
        f"committed offsets went backwards as sampled, though the coordinator's log of commits "
        f"never did (a stale read while the coordinator moved?): {watch.regressions}")
    assert sum(lag_answered(stream.bootstrap, group, stream.topic, partitions).values()) == 0
    letters = dead_letters(stream)
    assert {m.value() for m in letters} == stream.undecodable, "dead letters lost"
    return Outcome(rows, Counter(e.worker for e in rows), duplicates, missing, letters)


def dead_letters(stream: Stream) -> list[Any]:
    """The records of the stream's dead-letter topic (each carries the original bytes)."""
    return read_all(stream.bootstrap, f"{stream.topic}.dlq", len(stream.undecodable), 60)


def _gaps(effects: Iterable[Effect], partitions: Callable[[int], bool],
          time_of: Callable[[Effect], float], moment: float, horizon: float
          ) -> Iterator[tuple[Effect, Effect]]:
    """Consecutive effects of each selected partition, in the order of `time_of`, whose gap
    began at most 2 s before `moment` and at most `horizon` s after it."""
    by_part: dict[int, list[Effect]] = {}
    for e in effects:
        if partitions(e.partition):
            by_part.setdefault(e.partition, []).append(e)
    for part in by_part.values():
        part.sort(key=time_of)
        for a, b in itertools.pairwise(part):
            if moment - 2.0 <= time_of(a) <= moment + horizon:
                yield a, b


def stall_after(effects: list[Effect], moment: float,
                partitions: Callable[[int], bool] = lambda _p: True,
                horizon: float = 60.0) -> float:
    """The longest time a (selected) partition's consumption stood still while an event was
    waiting, over the gaps between effects that began at most 2 s before `moment` and at most
    `horizon` s after it: the stall that what happened at `moment` caused.

    A partition's events are appended and take effect in offset order, so the event that ends
    a gap is the oldest one that was waiting: the stall is the gap less the part of it before
    that event was appended (the producer's own pause while a leader moved is not the
    consumer's). Effects without an append time count the whole gap."""
    return max((b.at - (a.at if b.appended is None else max(a.at, b.appended))
                for a, b in _gaps(effects, partitions, lambda e: e.at, moment, horizon)),
               default=0.0)


def produce_pause_after(effects: list[Effect], moment: float,
                        partitions: Callable[[int], bool] = lambda _p: True,
                        horizon: float = 60.0) -> float:
    """The longest time nothing was appended to a (selected) partition, over the gaps that
    began at most 2 s before `moment` and at most `horizon` s after it: the producer's side of
    a failure (acks=all, so while a leader moves nothing is appended)."""
    def appended(e: Effect) -> float:
        assert e.appended is not None
        return e.appended

    known = [e for e in effects if e.appended is not None]
    return max((appended(b) - appended(a)
                for a, b in _gaps(known, partitions, appended, moment, horizon)), default=0.0)


def latency_before(effects: list[Effect], moment: float, window: float = 10.0) -> float:
    """The median time from append to effect over the effects of the `window` s before
    `moment`: how far behind the stream the workers already were. A stall figure is about the
    failure only when this is small; with the workers behind, a partition's effects also wait
    behind the other partitions' backlog."""
    waits = [e.at - e.appended for e in effects
             if e.appended is not None and moment - window <= e.at <= moment]
    return median(waits)


def appended_at(stream: Stream, timeout: float = 120) -> dict[str, float]:
    """When the broker appended each event's first record (the topic uses LogAppendTime)."""
    out: dict[str, float] = {}
    for m in read_all(stream.bootstrap, stream.topic, stream.count, timeout):
        try:
            event_id = decode_event(m.value()).id
        except Exception:
            continue
        at = m.timestamp()[1] / 1000
        if out.get(event_id, at) >= at:
            out[event_id] = at
    return out


def throughput_gap(effects: list[Effect], start: float, end: float) -> float:
    """The longest gap between consecutive effects of the whole group within [start, end]."""
    times = sorted(e.at for e in effects if start <= e.at <= end)
    return max((b - a for a, b in itertools.pairwise(times)), default=0.0)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def report(name: str, **figures: float | int | str) -> None:
    """One line of figures for the scenario (in the pytest output with -s, and in a file the
    docs' figures are copied from)."""
    line = f"{name}: " + ", ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}"
                                   for k, v in figures.items())
    print(line)
    out = REPO / ".local" / "cluster-figures.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a") as fh:
        fh.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {line}\n")


def partition_leaders(bootstrap: str, topic: str) -> dict[int, int]:
    """Each partition's leader (a broker id), from the cluster's metadata."""
    from confluent_kafka.admin import AdminClient

    md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=10)
    return {p.id: p.leader for p in md.topics[topic].partitions.values()}


def leaders(bootstrap: str, topic: str) -> Counter[int]:
    """How many of the topic's partitions each broker leads."""
    return Counter(partition_leaders(bootstrap, topic).values())


#: The partitions of Kafka's internal topics (offsets.topic.num.partitions and
#: transaction.state.log.num.partitions, both at their default in the project's launcher).
INTERNAL_TOPIC_PARTITIONS = 50


def _java_hash(text: str) -> int:
    """Java's String.hashCode, as a signed 32-bit int (ASCII names)."""
    h = 0
    for ch in text:
        h = (31 * h + ord(ch)) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def internal_partition(key: str) -> int:
    """The partition of `__consumer_offsets` (a group id) or `__transaction_state` (a
    transactional.id) that holds `key`: its leader is the key's coordinator (Kafka's
    `Utils.abs(key.hashCode()) % partitions`)."""
    h = _java_hash(key)
    return (0 if h == -(1 << 31) else abs(h)) % INTERNAL_TOPIC_PARTITIONS


def coordinator_by_hash(bootstrap: str, internal_topic: str, key: str) -> int:
    """The broker that leads `key`'s partition of an internal topic (its coordinator), read
    from the metadata; the topic must exist."""
    return partition_leaders(bootstrap, internal_topic)[internal_partition(key)]


def coordinator(bootstrap: str, group: str) -> int:
    """The broker id of the group's coordinator."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    result = admin.describe_consumer_groups([group], request_timeout=10)[group].result(timeout=15)
    return int(result.coordinator.id)
