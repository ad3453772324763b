"""A real Prometheus checks the deploy/ files: promtool validates them, a private server scrapes
the `scrape_target`, and every PromQL expression of the dashboard and the alert rules must
return data (alert thresholds removed as promserver.underlying_exprs documents)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.observability.conftest import require_binary
from tests.observability.promserver import (
    ALERTS,
    DASHBOARD,
    PROM_CONFIG,
    PrometheusServer,
    dashboard_exprs,
    dashboard_variable_selectors,
    grafana_to_promql,
    has_data,
    underlying_exprs,
)

pytestmark = pytest.mark.prometheus

EXPECTED_ALERTS = {
    "ActivityWorkerDown", "ActivityWorkerLagGrowing", "ActivityWorkerCommitsStalled",
    "ActivityWorkerDLQRateHigh", "ActivityWorkerGuardrailTripped", "ActivityWorkerLedgerDown",
    "ActivityWorkerRebalanceStorm", "ActivityWorkerDeadLettersNotWritable",
    "ActivityWorkerProcessorStalled", "ActivityWorkerOpenTransaction",
    "ActivityWorkerIngressNotReady", "ActivityWorkerIngressUnauthorized",
    "ActivityWorkerDestinationDown",
}


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_binary("promtool"), *args], capture_output=True, text=True,
                          timeout=60, check=False)


def test_promtool_check_rules() -> None:
    r = _promtool("check", "rules", str(ALERTS))
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"SUCCESS: {len(EXPECTED_ALERTS)} rules found" in r.stdout


def test_promtool_check_config() -> None:
    r = _promtool("check", "config", str(PROM_CONFIG))
    assert r.returncode == 0, r.stdout + r.stderr


def test_promtool_rejects_a_broken_rule(tmp_path: Any) -> None:
    """The check above can fail: a rule with bad PromQL is refused."""
    bad = tmp_path / "bad.yml"
    bad.write_text("groups:\n- name: x\n  rules:\n  - alert: X\n    expr: rate(foo[5m] > 1\n")
    assert _promtool("check", "rules", str(bad)).returncode != 0


def _wait_all_have_data(prom: PrometheusServer, exprs: dict[str, str],
                        timeout: float = 60.0) -> None:
    """Poll until every expr returns data, or fail naming those that never did."""
    pending = dict(exprs)
    last: dict[str, Any] = {}
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for name, expr in list(pending.items()):
            result = prom.query(expr)
            last[name] = result
            if has_data(result):
                del pending[name]
        if pending:
            time.sleep(0.5)  # waiting for more scrapes; bounded by the deadline
    assert not pending, "no data for:\n" + "\n".join(
        f"  {name}: {expr}\n    last result: {last.get(name)}" for name, expr in pending.items())


def test_scrape_target_is_up(prometheus: PrometheusServer) -> None:
    result = prometheus.query('up{job="activity-worker"}')
    assert [float(s["value"][1]) for s in result] == [1.0]


def test_prometheus_loaded_every_alert_rule_with_runbook(prometheus: PrometheusServer) -> None:
    rules = {r["name"]: r for r in prometheus.rules() if r["type"] == "alerting"}
    assert set(rules) == EXPECTED_ALERTS
    for name, rule in rules.items():
        assert rule["annotations"].get("runbook"), f"{name} has no runbook annotation"
        assert rule["annotations"].get("summary"), f"{name} has no summary"

    def evaluated_ok() -> bool:
        current = {r["name"]: r for r in prometheus.rules()}
        return all(current[n].get("health") == "ok" for n in EXPECTED_ALERTS)

    _wait_for(evaluated_ok, "every alert rule evaluates without error")


def test_every_alert_expression_returns_data(prometheus: PrometheusServer) -> None:
    exprs: dict[str, str] = {}
    for rule in prometheus.rules():
        for i, part in enumerate(underlying_exprs(rule["query"])):
            exprs[f"{rule['name']}#{i}"] = part
    assert len(exprs) >= len(EXPECTED_ALERTS)
    _wait_all_have_data(prometheus, exprs)


def test_every_dashboard_expression_returns_data(prometheus: PrometheusServer) -> None:
    exprs = {f"{title}#{i}": grafana_to_promql(e)
             for i, (title, e) in enumerate(dashboard_exprs(DASHBOARD))}
    assert len(exprs) >= 20
    _wait_all_have_data(prometheus, exprs)


def test_dashboard_variables_find_the_job(prometheus: PrometheusServer) -> None:
    for name, selector, label in dashboard_variable_selectors(DASHBOARD):
        def found(selector: str = selector, label: str = label) -> bool:
            series = prometheus.api("series", **{"match[]": grafana_to_promql(selector)})
            return any(label in s for s in series)

        _wait_for(found, f"variable {name}: a series of {selector} with label {label}")


def test_alert_that_should_fire_does(prometheus: PrometheusServer) -> None:
    """The fed data has a guardrail trip: its alert (no `for`) goes firing end to end."""

    def firing() -> bool:
        alerts = prometheus.api("alerts")["alerts"]
        return any(a["labels"]["alertname"] == "ActivityWorkerGuardrailTripped"
                   and a["state"] == "firing" for a in alerts)

    _wait_for(firing, "ActivityWorkerGuardrailTripped firing")


def _wait_for(cond: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")
