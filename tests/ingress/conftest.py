"""The webhook ingress against a real broker: an in-process one (fast), or `activity-worker
ingress` as a process (to kill it), and signed Voucherify-style deliveries to post to it."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.engine.helpers import wait_for
from tests.kafka_helpers import KafkaHelper, free_port
from worker.ingress.endpoint import EndpointConfig
from worker.ingress.service import DEFAULT_PATH, Ingress, IngressSettings
from worker.ingress.signature import HEADER, sign
from worker.kafka.admin import ensure_topics

REPO = Path(__file__).resolve().parents[2]
SECRET = b"project-secret-key"


def delivery(n: int, *, customer: int | None = None, etype: str = "customer.loyalty.tier.joined"
             ) -> bytes:
    """A webhook delivery as Voucherify sends it (API version v2024-01-01)."""
    cust = f"cust_{n % 50 if customer is None else customer}"
    return json.dumps({
        "id": f"whs_{n:08d}", "project_id": "proj_1", "created_at": "2026-06-01T10:00:00.000Z",
        "type": etype, "object": "event",
        "data": {"customer": {"id": cust, "object": "customer"},
                 "loyalty_tier": {"id": "ltr_1", "points": {"from": 0, "to": 100}}},
        "source": {"id": "wh_1", "object": "webhook", "target_url": "https://example.test/h"},
        "event": {"id": f"evcus_{n:08d}", "type": etype, "created_at": "2026-06-01T10:00:00Z",
                  "entity_id": cust, "group_id": f"v-{n:08d}",
                  "event_source": {"channel": "API"}}}, indent=1).encode()


class Client:
    """One kept-alive HTTP/1.1 connection to the ingress."""

    def __init__(self, port: int, timeout: float = 15.0) -> None:
        self.port, self.timeout = port, timeout
        self._conn: http.client.HTTPConnection | None = None

    def post(self, body: bytes, *, signature: str | None = "sign", path: str = DEFAULT_PATH,
             method: str = "POST", headers: dict[str, str] | None = None
             ) -> tuple[int, bytes, dict[str, str]]:
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        if signature == "sign":
            hdrs[HEADER] = sign(body, SECRET)
        elif signature is not None:
            hdrs[HEADER] = signature
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = http.client.HTTPConnection("127.0.0.1", self.port,
                                                        timeout=self.timeout)
            try:
                self._conn.request(method, path, body=body, headers=hdrs)
                resp = self._conn.getresponse()
                data = resp.read()
                out = (resp.status, data, {k.lower(): v for k, v in resp.getheaders()})
                if resp.getheader("Connection", "").lower() == "close":
                    self.close()
                return out
            except (ConnectionError, http.client.HTTPException, TimeoutError, OSError):
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def metric(port: int, name: str, **labels: str) -> float:
    """One sample of the ingress's /metrics (0 when absent)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        head, _, value = line.rpartition(" ")
        if head == (f"{name}{{{want}}}" if want else name):
            return float(value)
    return 0.0


@dataclass
class RunningIngress:
    ingress: Ingress
    topic: str
    dlq: str
    port: int
    bootstrap: str


def make_topics(kafka_helper: KafkaHelper, partitions: int = 3) -> tuple[str, str]:
    topic = kafka_helper.new_topic(partitions=partitions, prefix="ingress")
    dlq = f"{topic}.dlq"
    ensure_topics({"bootstrap.servers": kafka_helper.bootstrap}, {dlq: 1})
    kafka_helper.created.append(dlq)
    return topic, dlq


def start_ingress(bootstrap: str, topic: str, dlq: str, **endpoint: Any) -> RunningIngress:
    settings = IngressSettings(
        listen="127.0.0.1:0", path=DEFAULT_PATH, max_body=endpoint.pop("max_body", 64 * 1024),
        endpoint=EndpointConfig(topic=topic, dlq_topic=dlq, secrets=(SECRET,), **endpoint),
        kafka={"bootstrap.servers": bootstrap})
    ingress = Ingress(settings)
    server = ingress.start()
    wait_for(lambda: ingress.health.ready, 30, "the ingress ready")
    return RunningIngress(ingress, topic, dlq, server.port, bootstrap)


@pytest.fixture
def ingress(kafka_helper: KafkaHelper) -> Iterator[RunningIngress]:
    topic, dlq = make_topics(kafka_helper)
    running = start_ingress(kafka_helper.bootstrap, topic, dlq)
    try:
        yield running
    finally:
        running.ingress.close()


class IngressProcess:
    """`activity-worker ingress` as a process of its own (to kill -9 it)."""

    def __init__(self, bootstrap: str, topic: str, port: int | None = None) -> None:
        self.bootstrap, self.topic = bootstrap, topic
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = dict(os.environ, PYTHONPATH=str(REPO), WORKER_INGRESS_SECRET=SECRET.decode())
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "worker", "ingress", "--listen", f"127.0.0.1:{self.port}",
             "--topic", self.topic, "--bootstrap-servers", self.bootstrap],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self._ready, 60, "the ingress process ready")

    def _ready(self) -> bool:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            conn.request("GET", "/readyz")
            ok = conn.getresponse().status == 200
            conn.close()
            return ok
        except OSError:
            return False

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def webhook_ids_in(bootstrap: str, topic: str, partitions: int, timeout: float = 30.0
                   ) -> list[str]:
    """The webhook id header of every record of `topic`, read to its end."""
    from confluent_kafka import Consumer, TopicPartition

    from tests.engine.helpers import end_offsets

    ends = end_offsets(bootstrap, topic, partitions)
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"read-{time.time_ns()}",
                  "enable.auto.commit": False})
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    out: list[str] = []
    pos = dict.fromkeys(range(partitions), 0)
    deadline = time.monotonic() + timeout
    try:
        while any(pos[p] < ends[p] for p in pos) and time.monotonic() < deadline:
            for m in c.consume(1000, 0.5):
                if m.error() is not None:
                    continue
                pos[m.partition()] = m.offset() + 1
                hook = dict(m.headers() or []).get("voucherify.webhook_id")
                if hook is not None:
                    out.append(hook.decode())
    finally:
        c.close()
    return out
