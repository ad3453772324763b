"""One trace from the webhook to the effect, against a real Jaeger: a signed delivery that
carries a `traceparent` → the ingress (a `send` span, its context written into the record's
headers) → Kafka → the worker (a `process` span per processor call, the child of the record's
context) → the HTTP forwarder, whose request carries the trace on to the receiver. A retried
effect shows as two calls (the failed one an error), a dead-lettered one as an error."""

from __future__ import annotations

import http.server
import os
import secrets
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.engine.helpers import wait_for
from tests.ingress.conftest import Client, IngressProcess, delivery, make_topics
from tests.kafka_helpers import KafkaHelper
from tests.tracing.conftest import REPO, Jaeger

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(3600)]

OK, RETRIED, REFUSED = 1, 2, 3  # the deliveries: their event ids end in these numbers


class Receiver(http.server.ThreadingHTTPServer):
    """The forwarder's destination: answers 200, but 503 to the first call for RETRIED's event
    and 400 to REFUSED's; keeps each request's traceparent per event id."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []  # (event id, traceparent)
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                event = next(f"evcus_{n:08d}" for n in (OK, RETRIED, REFUSED)
                             if f"evcus_{n:08d}".encode() in body)
                first = all(e != event for e, _ in outer.seen)
                outer.seen.append((event, self.headers.get("traceparent", "")))
                status = (503 if event.endswith(str(RETRIED)) and first else
                          400 if event.endswith(str(REFUSED)) else 200)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()


def _parent(span: dict[str, Any]) -> str | None:
    refs = [r for r in span.get("references", []) if r.get("refType") == "CHILD_OF"]
    return refs[0]["spanID"] if refs else None


def _tag(span: dict[str, Any], key: str) -> Any:
    return next((t["value"] for t in span.get("tags", []) if t["key"] == key), None)


def _service(trace: dict[str, Any], span: dict[str, Any]) -> str:
    return str(trace["processes"][span["processID"]]["serviceName"])


def test_one_trace_from_the_delivery_to_the_forwarders_request(
        jaeger: Jaeger, kafka_helper: KafkaHelper, receiver: Receiver, tmp_path: Path) -> None:
    topic, _dlq = make_topics(kafka_helper, partitions=2)
    name = f"aw-{secrets.token_hex(3)}"
    otel = {"OTEL_EXPORTER_OTLP_ENDPOINT": jaeger.otlp, "OTEL_BSP_SCHEDULE_DELAY": "100",
            "PYTHONPATH": str(REPO)}
    # The ingress, with tracing on, as its own process
    ingress = IngressProcess(kafka_helper.bootstrap, topic)
    saved = dict(os.environ)
    os.environ.update(otel, OTEL_SERVICE_NAME=f"{name}-ingress")
    try:
        ingress.start()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    traces: dict[int, str] = {}
    try:
        client = Client(ingress.port)
        for n in (OK, RETRIED, REFUSED):
            traces[n] = secrets.token_hex(16)
            status = client.post(delivery(n), headers={
                "traceparent": f"00-{traces[n]}-{secrets.token_hex(8)}-01"})[0]
            assert status == 200
    finally:
        ingress.stop()  # (its spans are exported at exit)

    # The worker, with tracing on: the HTTP forwarder to the receiver, drained
    env = dict(os.environ, **otel, OTEL_SERVICE_NAME=f"{name}-worker",
               WORKER_FORWARD_URL=receiver.url, WORKER_BUILTIN_PROCESSORS="false")
    run = subprocess.run(
        [sys.executable, "-m", "worker", "run", "--drain", "--topic", topic, "--group", name,
         "--bootstrap-servers", kafka_helper.bootstrap, "--ledger", "memory://",
         "--processors", "worker.processors.builtin.http_forwarder",
         "--metrics-address", "off"],
        cwd=tmp_path, env=env, capture_output=True, timeout=300, check=False)
    assert run.returncode == 0, (run.stdout + run.stderr).decode()[-3000:]

    # The receiver saw each trace carried on by the forwarder
    for n in (OK, RETRIED, REFUSED):
        carried = [tp for e, tp in receiver.seen if e == f"evcus_{n:08d}"]
        assert carried and all(tp.split("-")[1] == traces[n] for tp in carried), receiver.seen

    def complete(n: int, process_spans: int) -> dict[str, Any] | None:
        trace = jaeger.trace(traces[n])
        if trace is None:
            return None
        names = [s["operationName"] for s in trace["spans"]]
        return trace if (names.count("process http_forwarder") == process_spans
                         and names.count(f"send {topic}") == 1) else None

    ok = wait_for(lambda: complete(OK, 1), 60, "the delivered event's trace in Jaeger")
    spans = {s["operationName"]: s for s in ok["spans"]}
    send, process = spans[f"send {topic}"], spans["process http_forwarder"]
    assert _service(ok, send) == f"{name}-ingress"
    assert _service(ok, process) == f"{name}-worker"
    assert _parent(process) == send["spanID"]  # the worker continued the ingress's span
    assert _tag(process, "messaging.system") == "kafka"
    assert _tag(process, "messaging.destination.name") == topic
    assert _tag(process, "messaging.consumer.group.name") == name
    assert _tag(process, "worker.event.id") == f"evcus_{OK:08d}"
    assert _tag(send, "messaging.kafka.message.key") == f"cust_{OK}"
    # the forwarder's request carried the process span on
    carried = next(tp for e, tp in receiver.seen if e == f"evcus_{OK:08d}")
    assert carried.split("-")[2] == process["spanID"]
    # the ingress continued the delivery's own traceparent
    assert _parent(send) is not None

    retried = wait_for(lambda: complete(RETRIED, 2), 60, "the retried effect's trace")
    calls = sorted((s for s in retried["spans"] if s["operationName"] == "process "
                    "http_forwarder"), key=lambda s: s["startTime"])
    assert _tag(calls[0], "error") is True and not _tag(calls[1], "error")
    assert [_tag(s, "worker.attempt") for s in calls] == [1, 2]

    refused = wait_for(lambda: complete(REFUSED, 1), 60, "the dead-lettered effect's trace")
    call = next(s for s in refused["spans"] if s["operationName"] == "process http_forwarder")
    assert _tag(call, "error") is True
