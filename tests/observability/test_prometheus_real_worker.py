"""The same Prometheus checks, scraping the real worker (`python -m worker run`) instead of the
fed endpoint: this module overrides `scrape_target` and imports the checks that apply.

The worker consumes a topic that `activity-worker generate` keeps writing to (all 74 types, 5%
bad events, 5% duplicates, at a steady rate) with a SQLite ledger, the processors of
tests/observability/obs_processors.py (built-ins off), librdkafka statistics every second, and
its HTTP server on a free loopback port.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kafka_helpers import KafkaHelper
from tests.observability.promserver import REPO, PrometheusServer, free_port, http_get

# The checks are collected again here, where `scrape_target` is the real worker.
from tests.observability.test_prometheus import (  # noqa: F401
    test_dashboard_variables_find_the_job,
    test_every_alert_expression_returns_data,
    test_every_dashboard_expression_returns_data,
    test_prometheus_loaded_every_alert_rule_with_runbook,
    test_scrape_target_is_up,
)

pytestmark = [pytest.mark.prometheus, pytest.mark.kafka]


def _stop(proc: subprocess.Popen[bytes], timeout: float = 40.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def scrape_target(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[str]:
    kafka = KafkaHelper(kafka_bootstrap)
    topic = kafka.new_topic(partitions=3, prefix="obs-real")
    kafka.new_topic(partitions=1, prefix="obs-real-dlq")
    dlq = kafka.created[-1]
    tmp: Path = tmp_path_factory.mktemp("real-worker")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "WORKER_BUILTIN_PROCESSORS": "false"}
    gen = subprocess.Popen(
        [sys.executable, "-m", "worker", "generate", "--count", "100000", "--rate", "200",
         "--seed", "5", "--bad-share", "0.05", "--duplicate-share", "0.05", "--topic", topic,
         "--bootstrap-servers", kafka_bootstrap, "--quiet"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=open(tmp / "gen.log", "wb"),  # noqa: SIM115
        stdin=subprocess.DEVNULL)
    port = free_port()
    worker_log = open(tmp / "worker.log", "wb")  # noqa: SIM115
    worker = subprocess.Popen(
        [sys.executable, "-m", "worker", "run", "--bootstrap-servers", kafka_bootstrap,
         "--topic", topic, "--group", f"{topic}-group", "--dlq-topic", dlq,
         "--ledger", f"sqlite:///{tmp / 'ledger.db'}", "--metrics-address", f"127.0.0.1:{port}",
         "--processors", "tests.observability.obs_processors",
         "--kafka-config", "statistics.interval.ms=1000", "--dlq-max-share", "1.0",
         # One attempt for processors on the default retry policy: should a built-in fail (it
         # needs its read-model tables), it costs no backoff and the worker keeps its pace.
         "--retry-attempts", "1"],
        cwd=REPO, env=env, stdout=worker_log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and worker.poll() is None:
            try:
                if http_get(f"http://127.0.0.1:{port}/metrics", timeout=1)[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        else:
            log = (tmp / "worker.log").read_text(errors="replace")[-3000:]
            pytest.fail(f"the worker did not serve /metrics (exit {worker.poll()}):\n{log}")
        yield f"127.0.0.1:{port}"
    finally:
        _stop(gen, 10)
        _stop(worker)
        worker_log.close()
        kafka.delete_created()


def test_healthy_worker_is_ready_and_reports_its_ledger_up(scrape_target: str,
                                                           prometheus: PrometheusServer) -> None:
    deadline = time.monotonic() + 20
    status, body = http_get(f"http://{scrape_target}/readyz")
    while status != 200 and time.monotonic() < deadline:
        time.sleep(0.2)
        status, body = http_get(f"http://{scrape_target}/readyz")
    assert status == 200, body
    result = prometheus.query('activity_worker_ledger_up{job="activity-worker"}')
    assert [float(s["value"][1]) for s in result] == [1.0]
