"""One bad event must never stop or stall the worker: a hostile-input stream through the real
broker and the real worker (`python -m worker run --drain`), for each ledger.

Each case asserts the worker's own contract: it keeps running and exits 0 from the drain, the
other events of the stream are processed (once), the bad one is in the dead-letter topic with
its reason (or is processed, where it is valid), and the group's committed offsets reach the end
(nothing lost, nothing left behind). The table of cases and outcomes is in docs/hostile-inputs.md.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from tests.kafka_helpers import KafkaHelper, unique_name
from worker.kafka.dead_letter_format import Header

pytestmark = pytest.mark.kafka

REPO = Path(__file__).resolve().parents[2]
BROKER_MAX = 1_048_588  # the broker's default message.max.bytes (the source topic's limit)

PROCESSORS = '''
import base64, json, os, random
from worker.processors import processor

OUT = os.environ["HOSTILE_EFFECTS"]


def _write(*fields):
    fd = os.open(OUT, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(fields) + "\\n").encode())
    finally:
        os.close(fd)


class Boom(BaseException):
    pass


@processor("customer.**", name="effects")
def effects(event, ctx):
    kind = event.type.rpartition(".")[2]
    if kind == "raise_big":
        raise ValueError("response body: " + "x" * 5_000_000)
    if kind == "base_exception":
        raise Boom("a BaseException subclass")
    if kind == "system_exit":
        raise SystemExit(3)
    if kind == "hang":  # until the test lets go (bounded, so a failed test cannot hang)
        import time
        release = OUT + ".release"
        for _ in range(1200):
            if os.path.exists(release):
                break
            time.sleep(0.1)
    _write("effects", event.id)
    if kind == "returns_value":
        return {"unexpected": True}


def _long_key(event):  # 12 KB that PostgreSQL cannot compress under its index row limit
    return base64.b64encode(random.Random(event.id).randbytes(9000)).decode()


@processor("customer.test.long_key", name="long_key", key=_long_key)
def long_key(event, ctx):
    _write("long_key", event.id)
'''


def _event(eid: str, type_: str = "customer.loyalty.tier.joined", **extra: Any) -> dict[str, Any]:
    return {"id": eid, "type": type_, "created_at": "2024-03-11T12:06:34.423Z",
            "group_id": f"v-{eid[-12:]}", "data": {"customer": {"id": "cust_1"}}, **extra}


def _j(doc: Any) -> bytes:
    return json.dumps(doc).encode()


# name -> (key, value, headers, record timestamp or None, expected outcome)
# outcome: "ok" (processed by `effects`), or "dlq:<error class>[:<processor>]"
Case = tuple[bytes | None, bytes | None, list[tuple[str, bytes]] | None, int | None, str]


def cases() -> dict[str, Case]:
    rnd = random.Random(19)
    big_junk = b"not json " * (BROKER_MAX // 9)
    return {
        "value_just_under_the_limit_not_json": (b"k1", big_junk[: BROKER_MAX - 2000], None, None,
                                                "dlq:invalid_json"),
        "value_at_the_limit_not_json": (b"k2", big_junk[: BROKER_MAX - 200], None, None,
                                        "dlq:invalid_json"),
        "valid_event_near_the_limit": (b"k3", _j(_event("evcus_bigname", data={
            "customer": {"id": "cust_1", "name": "n" * (BROKER_MAX - 3000)}})), None, None,
            "ok"),
        "processor_raises_a_5_mb_message": (b"k4", _j(_event("evcus_raisebig",
                                                             "customer.test.raise_big")),
                                            None, None, "dlq:processor_failed:effects"),
        "processor_raises_base_exception": (b"k5", _j(_event("evcus_baseexc",
                                                             "customer.test.base_exception")),
                                            None, None, "dlq:processor_failed:effects"),
        "processor_raises_system_exit": (b"k6", _j(_event("evcus_sysexit",
                                                          "customer.test.system_exit")),
                                         None, None, "dlq:processor_failed:effects"),
        "processor_returns_a_value": (b"k7", _j(_event("evcus_returns",
                                                       "customer.test.returns_value")),
                                      None, None, "ok"),
        "long_custom_key_on_every_ledger": (b"k8", _j(_event("evcus_longkey",
                                                             "customer.test.long_key")),
                                            None, None, "ok+long_key"),
        "id_of_10_kb": (b"k9", _j(_event("evcus_" + "".join(
            rnd.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(10_000)))),
            None, None, "dlq:schema"),
        "group_id_of_10_kb": (b"k10", _j({**_event("evcus_longgroup"), "group_id": "v" * 10_000}),
                              None, None, "dlq:schema"),
        "type_of_1_mb": (b"k11", _j(_event("evcus_bigtype", "customer." + "t" * 1_000_000)),
                         None, None, "dlq:schema"),
        "control_characters_and_emoji": (
            "kéy\x01🔥".encode(), _j(_event("evcus_ctl\x00\x07🔥", "customer.test.ctl\x01🔥")),
            None, None, "ok"),
        "a_thousand_headers": (b"k12", _j(_event("evcus_headers")),
                               [(f"h{i}", b"v" * 20) for i in range(1000)], None, "ok"),
        "non_utf8_header_values_and_bad_json": (b"k13", b"{not json",
                                                [("h", b"\xff\xfe"), ("h2", b"\xc3(")], None,
                                                "dlq:invalid_json"),
        "huge_key_and_bad_json": (b"K" * 500_000, b'{"id": "x', None, None, "dlq:invalid_json"),
        "huge_key_valid_event": (b"Q" * 500_000, _j(_event("evcus_hugekey")), None, None, "ok"),
        "random_bytes": (b"k14", bytes(rnd.randrange(256) for _ in range(3000)), None, None,
                         "dlq:undecodable"),
        "nan_and_infinity_in_data": (b"k15", _j(_event("evcus_nan")).replace(
            b'"cust_1"}', b'"cust_1", "score": NaN, "max": Infinity}'), None, None,
            "dlq:invalid_json"),
        "a_400_digit_number_in_data": (b"k16", _j(_event("evcus_bignum")).replace(
            b'"cust_1"}', b'"cust_1", "metadata": {"n": ' + b"9" * 400 + b"}}"), None, None,
            "ok"),
        "created_at_missing": (b"k17", _j({k: v for k, v in _event("evcus_nots").items()
                                            if k != "created_at"}), None, None, "dlq:schema"),
        "created_at_negative_year": (b"k18", _j(_event("evcus_negts",
                                                        created_at="-0001-01-01T00:00:00Z")),
                                     None, None, "dlq:schema"),
        "created_at_year_9999": (b"k19", _j(_event("evcus_y9999",
                                                    created_at="9999-12-31T23:59:59.999Z")),
                                 None, None, "ok"),
        "record_timestamp_50_minutes_ahead": (b"k20", _j(_event("evcus_recahead")), None,
                                              int(time.time() * 1000) + 50 * 60_000, "ok"),
        "record_timestamp_1970": (b"k21", _j(_event("evcus_rec1970")), None, 1, "ok"),
        "empty_value": (b"k22", b"", None, None, "dlq:invalid_json"),
        "tombstone": (b"k23", None, None, None, "dlq:undecodable"),
    }


def _produce(bootstrap: str, topic: str, records: list[tuple[str, Case]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all",
                         "message.max.bytes": 10_000_000, "linger.ms": 5})
    errors: list[str] = []
    for name, (key, value, headers, ts, _) in records:
        kwargs: dict[str, Any] = {"key": key, "value": value, "headers": headers}
        if ts is not None:
            kwargs["timestamp"] = ts
        producer.produce(topic, on_delivery=lambda err, _m, n=name: err and errors.append(
            f"{n}: {err}"), **kwargs)
        producer.poll(0)
    assert producer.flush(60) == 0
    assert errors == []


def _read_all(bootstrap: str, topic: str) -> list[Any]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_name("read"),
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "fetch.max.bytes": 50_000_000,
                         "max.partition.fetch.bytes": 10_000_000})
    md = consumer.list_topics(topic, timeout=10).topics[topic]
    tps = [TopicPartition(topic, p) for p in md.partitions]
    ends = {tp.partition: consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in tps}
    consumer.assign([TopicPartition(topic, p, 0) for p in ends])
    got: list[Any] = []
    want = sum(ends.values())
    for _ in range(200):
        if len(got) >= want:
            break
        got += [m for m in consumer.consume(100, 0.5) if m.error() is None]
    consumer.close()
    assert len(got) == want, f"read {len(got)} of {want} from {topic}"
    return got


def _committed(bootstrap: str, topic: str, group: str) -> tuple[dict[int, int], dict[int, int]]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    md = consumer.list_topics(topic, timeout=10).topics[topic]
    tps = [TopicPartition(topic, p) for p in md.partitions]
    committed = {tp.partition: tp.offset for tp in consumer.committed(tps, timeout=10)}
    ends = {tp.partition: consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in tps}
    consumer.close()
    return committed, ends


def _worker(tmp: Path, bootstrap: str, topic: str, group: str, ledger: str,
            extra: list[str] | None = None) -> subprocess.CompletedProcess[bytes]:
    (tmp / "hostile_procs.py").write_text(PROCESSORS)
    env = dict(os.environ, PYTHONPATH=f"{tmp}{os.pathsep}{REPO}",
               WORKER_BUILTIN_PROCESSORS="false", HOSTILE_EFFECTS=str(tmp / "effects.jsonl"))
    return subprocess.run(
        [sys.executable, "-m", "worker", "run", "--bootstrap-servers", bootstrap,
         "--topic", topic, "--group", group, "--processors", "hostile_procs",
         "--ledger", ledger, "--metrics-address", "off", "--drain", "--retry-attempts", "2",
         "--retry-backoff", "0.01", "--kafka-config", "max.partition.fetch.bytes=10000000",
         "--kafka-config", "fetch.max.bytes=50000000", *(extra or [])],
        cwd=tmp, env=env, capture_output=True, timeout=600, check=False)


def _create_topics(bootstrap: str, topic: str) -> None:
    from worker.cli import main

    assert main(["topics", "create", topic, "--with-dlq", "--partitions", "3",
                 "--bootstrap-servers", bootstrap]) == 0


@pytest.fixture(params=["sqlite", "memory", "postgres", "redis"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    kind = request.param
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.db'}"
    elif kind == "memory":
        yield "memory://"
    elif kind == "postgres":
        base = request.getfixturevalue("postgres_url")
        sep = "&" if "?" in base else "?"
        yield f"{base}{sep}table=hostile_{uuid.uuid4().hex[:8]}"
    else:
        base = request.getfixturevalue("redis_url")
        sep = "&" if "?" in base else "?"
        yield f"{base}{sep}prefix=hostile-{uuid.uuid4().hex[:8]}:"


def test_a_hostile_stream_is_drained_with_every_bad_event_dead_lettered(
        kafka_helper: KafkaHelper, tmp_path: Path, ledger_url: str) -> None:
    bootstrap = kafka_helper.bootstrap
    topic = unique_name("hostile")
    kafka_helper.created += [topic, f"{topic}.dlq"]
    _create_topics(bootstrap, topic)
    table = cases()
    # good events around and between the hostile ones, so "the others are processed" means
    # something on every partition
    stream: list[tuple[str, Case]] = []
    for i, (name, case) in enumerate(table.items()):
        stream.append((f"good-{i}", (f"g{i}".encode(), _j(_event(f"evcus_good{i:04d}")), None,
                                     None, "ok")))
        stream.append((name, case))
    stream += [(f"good-tail-{i}", (f"t{i}".encode(), _j(_event(f"evcus_tail{i:04d}")), None,
                                   None, "ok")) for i in range(30)]
    _produce(bootstrap, topic, stream)

    group = unique_name("hostile")
    run = _worker(tmp_path, bootstrap, topic, group, ledger_url)
    out = (run.stdout + run.stderr).decode("utf-8", "replace")
    assert run.returncode == 0, out[-4000:]
    assert max(len(line) for line in out.splitlines()) < 20_000, "an unbounded log line"

    effects = Counter(tuple(json.loads(line)) for line in
                      (tmp_path / "effects.jsonl").read_text().splitlines())
    assert set(effects.values()) == {1}, "an effect happened twice"
    expected_ok = {json.loads(c[1] or b"")["id"] for _, c in stream if c[4].startswith("ok")}
    assert {eid for proc, eid in effects if proc == "effects"} == expected_ok
    assert {eid for proc, eid in effects if proc == "long_key"} == {"evcus_longkey"}

    letters = _read_all(bootstrap, f"{topic}.dlq")
    by_source: dict[tuple[int, int], dict[str, bytes]] = {}
    for m in letters:
        h = {k: v for k, v in (m.headers() or []) if k.startswith("worker.")}
        by_source[(int(h[Header.SOURCE_PARTITION]), int(h[Header.SOURCE_OFFSET]))] = h
        assert len(h[Header.ERROR_REASON]) <= 1100, "an unbounded error header"
    consumed = _read_all(bootstrap, topic)
    wanted = {name: case[4] for name, case in stream}
    seen: dict[str, str] = {}
    for m in consumed:
        h = by_source.get((m.partition(), m.offset()))
        if h is None:
            continue
        name = next(n for n, c in stream if c[0] == m.key())  # keys are unique per record
        outcome = f"dlq:{h[Header.ERROR_CLASS].decode()}"
        if h[Header.PROCESSOR]:
            outcome += f":{h[Header.PROCESSOR].decode()}"
        seen[name] = outcome
    assert seen == {n: o for n, o in wanted.items() if o.startswith("dlq:")}

    committed, ends = _committed(bootstrap, topic, group)
    assert committed == ends, "the drain did not commit every partition to its end"


@pytest.mark.parametrize(("value", "timestamp", "code"), [
    (b"x" * (BROKER_MAX + 1), None, KafkaError.MSG_SIZE_TOO_LARGE),
    (b"{}", 253_402_300_799_000, KafkaError.INVALID_TIMESTAMP),  # year 9999: > 1 h ahead
])
def test_what_the_broker_refuses_never_reaches_the_worker(
        kafka_helper: KafkaHelper, value: bytes, timestamp: int | None, code: int) -> None:
    """Over the size limit, or a record timestamp far in the future: the producer's own broker
    refuses it (documented, not the worker's to handle)."""
    topic = kafka_helper.new_topic(prefix="hostile-refused")
    producer = Producer({"bootstrap.servers": kafka_helper.bootstrap,
                         "message.max.bytes": 10_000_000})
    errors: list[Any] = []
    kwargs = {} if timestamp is None else {"timestamp": timestamp}
    producer.produce(topic, value=value, on_delivery=lambda e, _m: errors.append(e), **kwargs)
    producer.flush(30)
    assert [e.code() for e in errors] == [code]


def test_a_dead_letter_too_large_for_its_topic_is_written_shrunk_and_replayed_whole(
        kafka_helper: KafkaHelper, tmp_path: Path) -> None:
    """A DLQ topic made without `topics create --with-dlq` has the source's limit: the letter
    (original value + headers) does not fit. The worker writes it shrunk, `dlq show` says so,
    and `dlq replay` reads the original back from the source topic."""
    bootstrap = kafka_helper.bootstrap
    topic = kafka_helper.new_topic(partitions=1, prefix="hostile-shrink")
    dlq = f"{topic}.dlq"
    from worker.kafka.admin import ensure_topics

    ensure_topics({"bootstrap.servers": bootstrap}, {dlq: 1})
    kafka_helper.created.append(dlq)
    big = b"not json " * ((BROKER_MAX - 50 * 206 - 250) // 9)  # a record just under the limit
    headers = [(f"h{i}", b"v" * 200) for i in range(50)]
    _produce(bootstrap, topic, [
        ("good", (b"a", _j(_event("evcus_shrinkgood")), None, None, "ok")),
        ("big", (b"b", big, headers, None, "dlq")),
        ("good2", (b"c", _j(_event("evcus_shrinkgood2")), None, None, "ok"))])
    run = _worker(tmp_path, bootstrap, topic, unique_name("shrink"), "memory://")
    assert run.returncode == 0, (run.stdout + run.stderr).decode()[-3000:]
    [letter] = _read_all(bootstrap, dlq)
    h = dict(letter.headers())
    assert h[Header.TRUNCATED] == b"true"
    assert int(h[Header.VALUE_BYTES]) == len(big)
    assert len(letter.value()) < len(big) and big.startswith(letter.value())
    assert (h[Header.SOURCE_TOPIC], h[Header.SOURCE_OFFSET]) == (topic.encode(), b"1")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    show = subprocess.run([sys.executable, "-m", "worker", "dlq", "show", dlq,
                           "--bootstrap-servers", bootstrap], capture_output=True, text=True,
                          env=env, timeout=120, check=False)
    assert show.returncode == 0, show.stderr
    assert f"shrunk to fit: {len(letter.value())} of {len(big)} bytes kept" in show.stdout
    target = kafka_helper.new_topic(partitions=1, prefix="hostile-replayed")
    replay = subprocess.run([sys.executable, "-m", "worker", "dlq", "replay", dlq, "--to",
                             target, "--bootstrap-servers", bootstrap], capture_output=True,
                            text=True, env=env, timeout=120, check=False)
    assert replay.returncode == 0, replay.stderr
    assert "1 shrunk letter(s) replayed with their original read back" in replay.stdout
    [again] = _read_all(bootstrap, target)
    assert again.value() == big and again.key() == b"b"
    assert [k for k, _ in again.headers()] == [k for k, _ in headers] + [Header.REPLAYED_FROM]

    # Once the source topic no longer retains the original, a replay says so and skips it.
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for fut in admin.delete_records([TopicPartition(topic, 0, 3)]).values():
        fut.result(30)
    later = subprocess.run([sys.executable, "-m", "worker", "dlq", "replay", dlq, "--to",
                            target, "--group", unique_name("replay-later"),
                            "--bootstrap-servers", bootstrap], capture_output=True, text=True,
                           env=env, timeout=120, check=False)
    assert later.returncode == 0, later.stderr
    assert "1 shrunk letter(s) NOT replayed: their original is no longer retained" in later.stdout
    assert len(_read_all(bootstrap, target)) == 1


def _get(url: str) -> tuple[int, str]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_a_dead_letter_that_cannot_be_written_pauses_the_worker_it_does_not_crash_it(
        kafka_helper: KafkaHelper, tmp_path: Path) -> None:
    """A DLQ topic that refuses every letter (max.message.bytes far below even the worker's
    headers): the worker stays up, pauses, says so on /readyz and in its metrics, and goes on by
    itself once the topic is fixed — no exit, so no crash loop."""
    from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

    from tests.kafka_helpers import free_port
    from worker.kafka.admin import ensure_topics

    bootstrap = kafka_helper.bootstrap
    topic = kafka_helper.new_topic(partitions=1, prefix="hostile-dlqdown")
    dlq = f"{topic}.dlq"
    ensure_topics({"bootstrap.servers": bootstrap}, {dlq: 1},
                  topic_config={dlq: {"max.message.bytes": "100"}})
    kafka_helper.created.append(dlq)
    _produce(bootstrap, topic, [
        ("good", (b"a", _j(_event("evcus_dlqdown1")), None, None, "ok")),
        ("bad", (b"b", b"{bad json", None, None, "dlq")),
        ("good2", (b"c", _j(_event("evcus_dlqdown2")), None, None, "ok"))])
    port = free_port()
    log = (tmp_path / "worker.log").open("wb")
    proc = _spawn(tmp_path, bootstrap, topic, port, log)
    try:
        deadline = time.monotonic() + 60
        metrics = ""
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
            metrics = _get(f"http://127.0.0.1:{port}/metrics")[1] if _port_open(port) else ""
            if "activity_worker_dlq_write_failing 1.0" in metrics:
                break
            time.sleep(0.2)
        assert "activity_worker_dlq_write_failing 1.0" in metrics
        failures = [line for line in metrics.splitlines()
                    if line.startswith("activity_worker_dlq_write_failures_total ")]
        assert failures and float(failures[0].split()[1]) >= 1
        status, body = _get(f"http://127.0.0.1:{port}/readyz")
        assert status == 503 and "dead letters cannot be written" in body
        assert proc.poll() is None

        admin = AdminClient({"bootstrap.servers": bootstrap})
        resource = ConfigResource(ConfigResource.Type.TOPIC, dlq, incremental_configs=[
            ConfigEntry("max.message.bytes", "2000000",
                        incremental_operation=AlterConfigOpType.SET)])
        for fut in admin.incremental_alter_configs([resource]).values():
            fut.result(30)
        assert proc.wait(120) == 0, (tmp_path / "worker.log").read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    [letter] = _read_all(bootstrap, dlq)
    assert dict(letter.headers())[Header.ERROR_CLASS] == b"invalid_json"
    effects = (tmp_path / "effects.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)[1] for line in effects) == ["evcus_dlqdown1", "evcus_dlqdown2"]
    text = (tmp_path / "worker.log").read_text()
    assert text.count("dead letters cannot be written") == 1  # one line per state change
    assert "dead letters written again; consumption resumes" in text


def _spawn(tmp: Path, bootstrap: str, topic: str, port: int, log: Any) -> subprocess.Popen[bytes]:
    """The worker in drain mode with the hostile processors and metrics on `port`."""
    (tmp / "hostile_procs.py").write_text(PROCESSORS)
    env = dict(os.environ, PYTHONPATH=f"{tmp}{os.pathsep}{REPO}",
               WORKER_BUILTIN_PROCESSORS="false", HOSTILE_EFFECTS=str(tmp / "effects.jsonl"))
    return subprocess.Popen(
        [sys.executable, "-m", "worker", "run", "--bootstrap-servers", bootstrap, "--topic",
         topic, "--group", unique_name("hostile"), "--processors", "hostile_procs",
         "--ledger", "memory://", "--metrics-address", f"127.0.0.1:{port}", "--drain"],
        cwd=tmp, env=env, stdout=log, stderr=log)


def _port_open(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_a_processor_that_does_not_return_shows_in_the_metrics_within_seconds(
        kafka_helper: KafkaHelper, tmp_path: Path) -> None:
    """A synchronous processor cannot be cancelled; what the worker owes the operator is to
    make the stall visible: `processor_call_age_seconds` (alert ActivityWorkerProcessorStalled
    past 30 s) while it lasts, and everything goes on once it returns."""
    from tests.kafka_helpers import free_port

    bootstrap = kafka_helper.bootstrap
    topic = kafka_helper.new_topic(partitions=1, prefix="hostile-hang")
    from worker.kafka.admin import ensure_topics

    ensure_topics({"bootstrap.servers": bootstrap}, {f"{topic}.dlq": 1})
    kafka_helper.created.append(f"{topic}.dlq")
    _produce(bootstrap, topic, [
        ("hang", (b"a", _j(_event("evcus_hang", "customer.test.hang")), None, None, "ok")),
        ("after", (b"b", _j(_event("evcus_afterhang")), None, None, "ok"))])
    port = free_port()
    effects = tmp_path / "effects.jsonl"
    log = (tmp_path / "worker.log").open("wb")
    proc = _spawn(tmp_path, bootstrap, topic, port, log)
    try:
        age = 0.0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and age < 2.0:
            assert proc.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
            if _port_open(port):
                for line in _get(f"http://127.0.0.1:{port}/metrics")[1].splitlines():
                    if line.startswith("activity_worker_processor_call_age_seconds "):
                        age = float(line.split()[1])
            time.sleep(0.2)
        assert age >= 2.0, "the stalled call did not show in processor_call_age_seconds"
        status, _ = _get(f"http://127.0.0.1:{port}/healthz")
        assert status == 200  # the poll loop itself is alive: not a restart case
        Path(str(effects) + ".release").touch()
        assert proc.wait(120) == 0, (tmp_path / "worker.log").read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    done = sorted(json.loads(line)[1] for line in effects.read_text().splitlines())
    assert done == ["evcus_afterhang", "evcus_hang"]
