"""The helpers that turn alert conditions and dashboard queries into plain PromQL to evaluate."""

from __future__ import annotations

from tests.observability.promserver import (
    dashboard_exprs,
    dashboard_variable_selectors,
    grafana_to_promql,
    underlying_exprs,
)


def test_thresholds_and_set_operators_are_removed() -> None:
    assert underlying_exprs('up{job="activity-worker"} == 0') == ['up{job="activity-worker"}']
    assert underlying_exprs("a > 1000\nand deriv(a[10m]) > 0") == ["a", "deriv(a[10m])"]
    assert underlying_exprs("sum by (job) (rate(x[5m]))\n/ sum by (job) (rate(y[5m])) > 0.05") \
        == ["sum by (job) (rate(x[5m])) / sum by (job) (rate(y[5m]))"]
    assert underlying_exprs('x > bool 1e-3 and on(topic, partition) y{a="p and q"} unless z < 3') \
        == ["x", 'y{a="p and q"}', "z"]
    # set operators inside parentheses belong to the operand
    assert underlying_exprs("max((a and b)) > 1") == ["max((a and b))"]
    # a name containing "and" is not an operator
    assert underlying_exprs("demand_total > 1") == ["demand_total"]


def test_grafana_variables_are_replaced() -> None:
    e = 'rate(x{job=~"$job", instance=~"$instance"}[$__rate_interval])'
    assert grafana_to_promql(e) == 'rate(x{job=~"activity-worker", instance=~".*"}[1m])'


def test_dashboard_has_the_panels_the_issue_asks_for() -> None:
    text = " ".join(e for _t, e in dashboard_exprs())
    for metric in ("events_consumed_total", "processor_outcomes_total",
                   "end_to_end_latency_seconds_bucket", "processing_seconds_bucket",
                   "consumer_lag_offsets", "consumer_lag_seconds", "commit_age_seconds",
                   "dead_letters_total", "rebalances_total"):
        assert f"activity_worker_{metric}" in text, metric
    assert "$" not in grafana_to_promql(text)  # every variable used is one we know
    assert {v for v, _s, _l in dashboard_variable_selectors()} == {"job", "instance"}


def test_dashboard_json_is_importable_shape() -> None:
    """What Grafana needs to import it without asking: unique ids, layout, datasource variable."""
    import json

    from tests.observability.promserver import DASHBOARD

    doc = json.loads(DASHBOARD.read_text())
    assert doc["uid"] == "activity-worker" and doc["title"]
    panels = doc["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    for p in panels:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"]
        for t in p.get("targets", []):
            assert t["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
            assert t["refId"]
    ds = [v for v in doc["templating"]["list"] if v["type"] == "datasource"]
    assert ds and ds[0]["name"] == "datasource" and ds[0]["query"] == "prometheus"
    assert "__inputs" not in doc  # provisioning cannot fill import-time inputs
