"""Fixtures for the observability tests.

`scrape_target` returns the host:port that the private Prometheus scrapes. By default it is a
`serve_http` endpoint whose WorkerMetrics are fed realistic values by `Feeder`; a variant that
scrapes the real running worker overrides this one fixture (same name, closer conftest or
module) and returns that worker's --metrics-address.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.observability.feeder import Feeder
from tests.observability.promserver import ALERTS, INSTALL_HINT, PrometheusServer, find_binary
from worker.observability.health import HealthState
from worker.observability.http import serve_http
from worker.observability.metrics import WorkerMetrics


def require_binary(name: str) -> str:
    path = find_binary(name)
    if path is None:
        msg = f"{name} not found: {INSTALL_HINT}"
        if os.environ.get("CI"):
            pytest.fail(msg)  # in CI a missing install step must not turn into a skip
        pytest.skip(msg)
    return path


@pytest.fixture(scope="module")
def scrape_target() -> Iterator[str]:
    metrics = WorkerMetrics()
    health = HealthState()
    server = serve_http("127.0.0.1:0", metrics, health)
    feeder = Feeder(metrics, health).start()
    try:
        yield server.address
    finally:
        feeder.stop()
        server.close()


@pytest.fixture(scope="module")
def ingress_target() -> Iterator[str]:
    """An ingress's metrics (the ingress alert rules need its series): one request of each
    outcome, ready."""
    from worker.ingress.metrics import IngressMetrics
    from worker.ingress.service import IngressHealth
    from worker.vocabulary import IngressOutcome

    metrics, health = IngressMetrics(), IngressHealth()
    for outcome in IngressOutcome:
        metrics.outcome[outcome].inc()
    metrics.ready.set(1)
    server = serve_http("127.0.0.1:0", metrics, health)
    try:
        yield server.address
    finally:
        server.close()


@pytest.fixture(scope="module")
def prometheus(scrape_target: str, ingress_target: str) -> Iterator[PrometheusServer]:
    binary = require_binary("prometheus")
    prom = PrometheusServer(scrape_target, rule_files=[ALERTS], binary=binary,
                            extra_jobs={"activity-worker-ingress": ingress_target})
    try:
        prom.wait_target_up()
        yield prom
    finally:
        prom.close()
