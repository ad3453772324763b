"""The HTTP endpoints over real sockets: /metrics text format, /readyz, 404s, binding errors."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from worker.errors import ConfigError
from worker.observability.health import HealthState
from worker.observability.http import DEFAULT_ADDRESS, HttpServer, parse_address, serve_http
from worker.observability.metrics import WorkerMetrics
from worker.types import BatchStats


@pytest.fixture
def served() -> Iterator[tuple[HttpServer, WorkerMetrics, HealthState]]:
    metrics, health = WorkerMetrics(), HealthState()
    server = serve_http("127.0.0.1:0", metrics, health)
    try:
        yield server, metrics, health
    finally:
        server.close()


def fetch(server: HttpServer, path: str, method: str = "GET") -> tuple[int, str, bytes]:
    req = urllib.request.Request(f"http://127.0.0.1:{server.port}{path}", method=method)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.headers["Content-Type"], r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read()


def test_metrics_endpoint_serves_prometheus_text(served: tuple[HttpServer, WorkerMetrics,
                                                                HealthState]) -> None:
    server, metrics, _ = served
    s = BatchStats(batch_size=2)
    s.consumed["customer-activity"] += 2
    metrics.record_batch(s)
    status, ctype, body = fetch(server, "/metrics")
    assert status == 200 and ctype.startswith("text/plain; version=")
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    consumed = families["activity_worker_events_consumed"]
    assert [(x.labels, x.value) for x in consumed.samples if x.name.endswith("_total")] == [
        ({"topic": "customer-activity"}, 2.0)]


def test_readyz_reports_reasons_then_ready(served: tuple[HttpServer, WorkerMetrics,
                                                         HealthState]) -> None:
    server, _, health = served
    status, ctype, body = fetch(server, "/readyz")
    assert status == 503 and ctype == "application/json"
    assert b"not connected to Kafka" in body
    health.set_connected(True)
    health.set_ledger_ok(True)
    status, _, body = fetch(server, "/readyz")
    assert status == 200 and json.loads(body)["assigned_partitions"] == 0
    health.set_assigned(1)
    assert json.loads(fetch(server, "/readyz")[2])["assigned_partitions"] == 1
    assert fetch(server, "/healthz")[0] == 200


def test_head_and_unknown_paths(served: tuple[HttpServer, WorkerMetrics, HealthState]) -> None:
    server, _, _ = served
    status, _, body = fetch(server, "/healthz", method="HEAD")
    assert status == 200 and body == b""
    assert fetch(server, "/nope")[0] == 404
    assert fetch(server, "/metrics?x=1")[0] == 200


def test_port_in_use_is_a_clear_config_error(served: tuple[HttpServer, WorkerMetrics,
                                                           HealthState]) -> None:
    server, metrics, health = served
    with pytest.raises(ConfigError, match="choose another address or port"):
        serve_http(f"127.0.0.1:{server.port}", metrics, health)


def test_close_frees_the_port() -> None:
    server = serve_http("127.0.0.1:0", WorkerMetrics(), HealthState())
    port = server.port
    server.close()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


@pytest.mark.parametrize("bad", ["9400", "localhost:", ":9400", "host:99999", "host:http"])
def test_bad_address_is_a_clear_config_error(bad: str) -> None:
    with pytest.raises(ConfigError, match="host:port"):
        parse_address(bad)


def test_address_parsing_and_safe_default() -> None:
    assert parse_address(DEFAULT_ADDRESS) == ("127.0.0.1", 9400)
    assert parse_address("0.0.0.0:9400") == ("0.0.0.0", 9400)
    assert parse_address("[::1]:0") == ("::1", 0)
