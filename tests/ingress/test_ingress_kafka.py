"""The webhook ingress on the real broker: what each kind of request is answered and counted
as, what is stored (the raw bytes, the customer key, the headers), what goes to the dead-letter
topic, and that a 2xx is only ever given for a record that is in Kafka — under a broker that
stops answering, and a `kill -9` of the ingress under load."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from confluent_kafka import Consumer, TopicPartition

from tests.engine.helpers import wait_for
from tests.ingress.conftest import (
    Client,
    IngressProcess,
    RunningIngress,
    delivery,
    make_topics,
    metric,
    start_ingress,
    webhook_ids_in,
)
from tests.kafka_helpers import KafkaHelper
from worker.ingress.metrics import REQUESTS
from worker.ingress.service import DEFAULT_PATH
from worker.ingress.signature import sign

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(300)]


def _records(bootstrap: str, topic: str, n: int, partitions: int = 3) -> list[object]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"r-{time.time_ns()}",
                  "enable.auto.commit": False})
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    out: list[object] = []
    deadline = time.monotonic() + 30
    try:
        while len(out) < n and time.monotonic() < deadline:
            out += [m for m in c.consume(100, 0.5) if m.error() is None]
    finally:
        c.close()
    return out


def test_every_kind_of_request_has_its_answer_and_its_count(ingress: RunningIngress) -> None:
    client = Client(ingress.port)
    body = delivery(1)
    cases = [
        ("stored", client.post(body), 200),
        ("unauthorized", client.post(body, signature=None), 401),
        ("unauthorized", client.post(body, signature=sign(body, b"another")), 401),
        ("unauthorized", client.post(body, signature="xyz"), 401),
        ("unauthorized", client.post(body.replace(b"cust_1", b"cust_2"),
                                     signature=sign(body, b"project-secret-key")), 401),
        ("too_large", client.post(b"x" * (64 * 1024 + 1)), 413),
        ("dead_lettered", client.post(b"not json at all"), 200),
        ("dead_lettered", client.post(b"[1, 2, 3]"), 200),
    ]
    for outcome, (status, text, _headers), expected in cases:
        assert status == expected, (outcome, status, text)
    # not a delivery to this endpoint: the server's own answers
    assert client.post(body, path="/elsewhere")[0] == 404
    assert client.post(b"", method="GET")[0] == 405
    expected_counts = {"stored": 1, "unauthorized": 4, "too_large": 1, "dead_lettered": 2,
                       "unavailable": 0, "refused": 2}  # the 404 and the 405
    for outcome, n in expected_counts.items():
        assert metric(ingress.port, REQUESTS + "_total", outcome=outcome) == n, outcome
    assert metric(ingress.port, "activity_worker_ingress_signatures_total", match="wrong") == 2
    assert metric(ingress.port, "activity_worker_ingress_signatures_total",
                  match="missing") == 1
    assert metric(ingress.port, "activity_worker_ingress_signatures_total",
                  match="malformed") == 1
    assert metric(ingress.port, "activity_worker_ingress_ready") == 1

    [stored] = _records(ingress.bootstrap, ingress.topic, 1)
    assert stored.value() == body  # type: ignore[attr-defined]
    assert stored.key() == b"cust_1"  # type: ignore[attr-defined]
    headers = dict(stored.headers())  # type: ignore[attr-defined]
    assert headers["voucherify.webhook_id"] == b"whs_00000001"
    assert headers["voucherify.event_type"] == b"customer.loyalty.tier.joined"
    assert headers["ingress.signed"] == b"raw" and headers["ingress.received_at"]
    letters = _records(ingress.bootstrap, ingress.dlq, 2, partitions=1)
    assert sorted(m.value() for m in letters) == [  # type: ignore[attr-defined]
        b"[1, 2, 3]", b"not json at all"]
    classes = sorted(dict(m.headers())["worker.error.class"]  # type: ignore[attr-defined]
                     for m in letters)
    assert classes == [b"invalid_json", b"not_an_object"]


def test_a_chunked_body_or_no_length_is_refused_and_the_connection_closed(
        ingress: RunningIngress) -> None:
    for head in (b"Transfer-Encoding: chunked\r\n", b""):
        with socket.create_connection(("127.0.0.1", ingress.port), timeout=5) as s:
            s.sendall(b"POST " + DEFAULT_PATH.encode() + b" HTTP/1.1\r\nHost: x\r\n" + head
                      + b"\r\n")
            answer = s.recv(4096)
            assert answer.startswith(b"HTTP/1.1 411 "), answer


def test_compact_signed_deliveries_are_stored(ingress: RunningIngress) -> None:
    import json

    body = delivery(7)  # indented, as sent; signed on its compact form
    signed = sign(json.dumps(json.loads(body), separators=(",", ":")).encode(),
                  b"project-secret-key")
    status, _, _ = Client(ingress.port).post(body, signature=signed)
    assert status == 200
    assert metric(ingress.port, "activity_worker_ingress_signatures_total", match="compact") == 1


@pytest.fixture
def private_ingress(private_kafka: object, kafka_helper: KafkaHelper) -> Iterator[RunningIngress]:
    """An ingress on the tests' private broker, which a test may freeze."""
    from tests.kafka_helpers import KafkaHelper as Helper

    helper = Helper(private_kafka.plain_bootstrap)  # type: ignore[attr-defined]
    topic, dlq = make_topics(helper)
    running = start_ingress(helper.bootstrap, topic, dlq, store_timeout=3.0)
    try:
        yield running
    finally:
        running.ingress.close()
        helper.delete_created()


def test_a_stopped_broker_gets_503s_never_a_2xx_and_the_ingress_recovers_by_itself(
        private_ingress: RunningIngress, private_kafka: object) -> None:
    answered: dict[str, int] = {}
    stop = threading.Event()
    lock = threading.Lock()

    def load(worker: int) -> None:
        client = Client(private_ingress.port, timeout=20)
        n = worker * 1_000_000
        while not stop.is_set():
            n += 1
            status, _, headers = client.post(delivery(n))
            with lock:
                answered[f"whs_{n:08d}"] = status
            if status == 503:
                assert headers.get("retry-after"), headers
                time.sleep(0.05)

    pid = private_kafka.pid  # type: ignore[attr-defined]
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(load, w) for w in range(1, 5)]
        wait_for(lambda: sum(s == 200 for s in answered.values()) > 200, 30, "deliveries stored")
        os.kill(pid, signal.SIGSTOP)
        frozen_at = time.monotonic()
        try:
            wait_for(lambda: sum(s == 503 for s in answered.values()) >= 8, 30,
                     "503s while the broker is stopped")
            with lock:
                during = dict(answered)
        finally:
            os.kill(pid, signal.SIGCONT)
        frozen_for = time.monotonic() - frozen_at
        with lock:
            marked = len(answered)
        wait_for(lambda: sum(s == 200 for k, s in list(answered.items())[marked:]) > 100, 60,
                 "deliveries stored again after the broker came back")
        stop.set()
        for f in futures:
            f.result(60)
    assert frozen_for > 3
    ok = {k for k, s in answered.items() if s == 200}
    stored = set(webhook_ids_in(private_ingress.bootstrap, private_ingress.topic, 3))
    assert ok <= stored, f"{len(ok - stored)} deliveries answered 200 are not in Kafka"
    assert metric(private_ingress.port, REQUESTS + "_total", outcome="unavailable") >= 8
    assert {s for s in during.values()} <= {200, 503}


def test_kill_9_under_load_loses_no_delivery_that_was_answered_2xx(
        kafka_helper: KafkaHelper) -> None:
    topic, _dlq = make_topics(kafka_helper)
    proc = IngressProcess(kafka_helper.bootstrap, topic)
    answered: dict[str, int] = {}
    lock = threading.Lock()
    stop = threading.Event()

    def load(worker: int) -> None:
        client = Client(proc.port, timeout=10)
        n = worker * 1_000_000
        while not stop.is_set():
            n += 1
            try:
                status, _, _ = client.post(delivery(n))
            except OSError:  # killed: the delivery's answer never came; Voucherify retries
                time.sleep(0.05)
                continue
            with lock:
                answered[f"whs_{n:08d}"] = status

    proc.start()
    try:
        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(load, w) for w in range(1, 5)]
            for _ in range(3):
                before = sum(s == 200 for s in answered.values())
                wait_for(lambda b=before: sum(s == 200 for s in answered.values()) > b + 300,
                         60, "deliveries stored")
                proc.kill()
                proc.start()
            stop.set()
            for f in futures:
                f.result(60)
    finally:
        proc.stop()
    ok = {k for k, s in answered.items() if s == 200}
    assert len(ok) > 900
    stored = set(webhook_ids_in(kafka_helper.bootstrap, topic, 3))
    assert ok <= stored, f"{len(ok - stored)} deliveries answered 200 are not in Kafka"


def test_the_demo_generator_delivers_through_the_front_door(ingress: RunningIngress) -> None:
    """`generate --ingress` (what ./scripts/run-demo sends): every delivery signed and answered
    200; the bad ones the worker cannot decode are the ingress's dead letters."""
    import subprocess
    import sys

    from tests.ingress.conftest import REPO, SECRET

    run = subprocess.run(
        [sys.executable, "-m", "worker", "generate", "--count", "300", "--seed", "3",
         "--bad-share", "0.05", "--duplicate-share", "0.1", "--webhook-share", "1",
         "--ingress", f"http://127.0.0.1:{ingress.port}{DEFAULT_PATH}",
         "--secret", SECRET.decode()],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    assert "{200: 300}" in run.stderr
    stored = metric(ingress.port, REQUESTS + "_total", outcome="stored")
    dead = metric(ingress.port, REQUESTS + "_total", outcome="dead_lettered")
    assert stored + dead == 300 and dead > 0 and stored > 250


def test_unsigned_mode_is_for_loopback_only_and_a_secret_is_required(
        kafka_helper: KafkaHelper) -> None:
    from worker.errors import ConfigError
    from worker.ingress.endpoint import EndpointConfig
    from worker.ingress.service import Ingress, IngressSettings

    def settings(listen: str, **endpoint: object) -> IngressSettings:
        return IngressSettings(listen=listen, path=DEFAULT_PATH, max_body=1024,
                               endpoint=EndpointConfig(topic="t", dlq_topic="t.dlq",
                                                       **endpoint),  # type: ignore[arg-type]
                               kafka={"bootstrap.servers": kafka_helper.bootstrap})

    with pytest.raises(ConfigError, match="loopback only"):
        Ingress(settings("0.0.0.0:0", secrets=(), unsigned=True))
    with pytest.raises(ConfigError, match="no webhook secret"):
        Ingress(settings("127.0.0.1:0", secrets=()))
    topic, dlq = make_topics(kafka_helper)
    running = start_ingress(kafka_helper.bootstrap, topic, dlq, unsigned=True)
    try:
        assert Client(running.port).post(delivery(3), signature=None)[0] == 200
        assert metric(running.port, "activity_worker_ingress_signatures_total",
                      match="unsigned") == 1
    finally:
        running.ingress.close()
