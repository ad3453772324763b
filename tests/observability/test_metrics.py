"""WorkerMetrics: each counter moves as expected for each outcome, histograms agree with
prometheus_client's own Histogram, per-partition series behave across rebalances, commit age is
computed at scrape time, and librdkafka statistics (a real payload) are parsed."""

from __future__ import annotations

import ast
import json
import random
import time
from collections import Counter
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Histogram

from worker.observability import metrics as m
from worker.observability.metrics import (
    LATENCY_BUCKETS,
    METRIC_NAMES,
    OUTCOMES,
    PREFIX,
    PROCESSING_BUCKETS,
    WorkerMetrics,
    sample_names,
)
from worker.processing.adaptive_limit import AdaptiveLimit
from worker.processing.circuit import Circuit, CircuitPolicy, Circuits
from worker.processing.effects import ConcurrentEffects
from worker.processing.parking import Parking
from worker.processors.api import Processor
from worker.types import BatchResult, BatchStats, TopicPartition

STATS_JSON = (Path(__file__).parent / "data" / "librdkafka_stats.json").read_text()
TP0 = TopicPartition("customer-activity", 0)
TP1 = TopicPartition("customer-activity", 1)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def value(wm: WorkerMetrics, name: str, **labels: str) -> float | None:
    return wm.registry.get_sample_value(name, labels)


@pytest.mark.parametrize("outcome", OUTCOMES)
def test_each_outcome_moves_only_its_counter(outcome: str) -> None:
    wm = WorkerMetrics()
    stats = BatchStats(batch_size=7)
    stats.outcomes[("loyalty_points", outcome)] += 7
    wm.record_batch(stats)
    wm.record_batch(stats)
    name = "activity_worker_processor_outcomes_total"
    assert value(wm, name, processor="loyalty_points", outcome=outcome) == 14
    for other in OUTCOMES:
        if other != outcome:
            assert value(wm, name, processor="loyalty_points", outcome=other) is None


def test_consumed_unmatched_and_dead_letters_by_label() -> None:
    wm = WorkerMetrics()
    s = BatchStats(batch_size=10)
    s.consumed.update({"a": 6, "b": 4})
    s.unmatched.update({"customer.sms.sent": 3})
    s.dead_letters.update({"schema": 2, "invalid_json": 1})
    wm.record_batch(s)
    wm.record_batch(s)
    assert value(wm, "activity_worker_events_consumed_total", topic="a") == 12
    assert value(wm, "activity_worker_events_consumed_total", topic="b") == 8
    assert value(wm, "activity_worker_unmatched_events_total", type="customer.sms.sent") == 6
    assert value(wm, "activity_worker_dead_letters_total", reason="schema") == 4
    assert value(wm, "activity_worker_dead_letters_total", reason="invalid_json") == 2


def test_unmatched_types_are_capped() -> None:
    wm = WorkerMetrics()
    s = BatchStats()
    s.unmatched.update({f"junk.{i}": 1 for i in range(m.MAX_UNMATCHED_TYPES + 5)})
    wm.record_batch(s)
    types = {smp.labels["type"] for fam in wm.registry.collect() for smp in fam.samples
             if smp.name == "activity_worker_unmatched_events_total"}
    assert len(types) == m.MAX_UNMATCHED_TYPES + 1
    assert value(wm, "activity_worker_unmatched_events_total", type="other") == 5


def _reference(buckets: tuple[float, ...], values: list[float]) -> CollectorRegistry:
    reg = CollectorRegistry()
    h = Histogram("ref", "reference", buckets=buckets, registry=reg)
    for v in values:
        h.observe(v)
    return reg


def test_batch_histograms_match_prometheus_client_histogram() -> None:
    rng = random.Random(1)
    wm = WorkerMetrics()
    all_proc: list[float] = []
    all_lat: list[float] = []
    for _ in range(3):
        s = BatchStats(batch_size=200)
        proc = [rng.lognormvariate(-6, 1.5) for _ in range(200)] + [0.001, 0.0025, 10.0, 50.0]
        lat = [rng.uniform(0, 100) for _ in range(200)] + [1.0, 3600.0, 7200.0]
        s.processing_seconds["p"] = proc
        s.latency_seconds = lat
        wm.record_batch(s)
        all_proc += proc
        all_lat += lat
    for name, buckets, values, labels in (
        ("activity_worker_processing_seconds", PROCESSING_BUCKETS, all_proc, {"processor": "p"}),
        ("activity_worker_end_to_end_latency_seconds", LATENCY_BUCKETS, all_lat, {}),
    ):
        ref = _reference(buckets, values)
        for b in [*buckets, float("inf")]:
            le = "+Inf" if b == float("inf") else repr(float(b))
            got = wm.registry.get_sample_value(name + "_bucket", {**labels, "le": le})
            want = ref.get_sample_value("ref_bucket", {"le": le})
            assert got == want, (name, le)
        assert wm.registry.get_sample_value(name + "_count", labels) == len(values)
        assert wm.registry.get_sample_value(name + "_sum", labels) == pytest.approx(sum(values))


def test_single_observe_matches_reference_on_bucket_bounds() -> None:
    wm = WorkerMetrics()
    values = [0.0005, 0.0004, 0.001, 0.0011, 2.5, 100.0]
    for v in values:
        wm.record_ledger_op("claim", v, error=False)
    ref = _reference(m.LEDGER_BUCKETS, values)
    for b in m.LEDGER_BUCKETS:
        le = repr(float(b))
        assert (wm.registry.get_sample_value("activity_worker_ledger_operation_seconds_bucket",
                                             {"op": "claim", "le": le})
                == ref.get_sample_value("ref_bucket", {"le": le})), le
    assert value(wm, "activity_worker_ledger_operation_errors_total", op="claim") == 0
    wm.record_ledger_op("claim", 0.2, error=True)
    assert value(wm, "activity_worker_ledger_operation_errors_total", op="claim") == 1


def test_batch_size_and_empty_batch() -> None:
    wm = WorkerMetrics()
    wm.record_batch(BatchStats())  # nothing consumed: nothing recorded
    assert value(wm, "activity_worker_batch_size_count") is None
    wm.record_batch(BatchStats(batch_size=500))
    assert value(wm, "activity_worker_batch_size_count") == 1
    assert value(wm, "activity_worker_batch_size_sum") == 500
    assert value(wm, "activity_worker_batch_size_bucket", le="250.0") == 0
    assert value(wm, "activity_worker_batch_size_bucket", le="500.0") == 1


def test_rebalances_and_assigned_partitions() -> None:
    wm = WorkerMetrics()
    reb = "activity_worker_rebalances_total"
    assert value(wm, reb, kind="assigned") == 0  # exported from the start
    wm.partitions_assigned([TP0, TP1])
    assert value(wm, "activity_worker_assigned_partitions") == 2
    wm.record_lag(TP1, 10, 2.0)
    wm.partitions_revoked([TP1])
    assert value(wm, "activity_worker_assigned_partitions") == 1
    # the revoked partition's series are gone, not stale
    assert value(wm, "activity_worker_consumer_lag_offsets", topic=TP1.topic, partition="1") is None
    wm.partitions_lost([TP0])
    assert value(wm, "activity_worker_assigned_partitions") == 0
    assert (value(wm, reb, kind="assigned"), value(wm, reb, kind="revoked"),
            value(wm, reb, kind="lost")) == (1, 1, 1)


def test_lag_offsets_and_seconds() -> None:
    wm = WorkerMetrics()
    labels = {"topic": TP0.topic, "partition": "0"}
    wm.record_lag(TP0, 120, 4.5)
    assert value(wm, "activity_worker_consumer_lag_offsets", **labels) == 120
    assert value(wm, "activity_worker_consumer_lag_seconds", **labels) == 4.5
    wm.record_lag(TP0, 30, None)  # unknown age: not exported rather than stale
    assert value(wm, "activity_worker_consumer_lag_offsets", **labels) == 30
    assert value(wm, "activity_worker_consumer_lag_seconds", **labels) is None
    wm.record_lag(TP0, 0, None)  # caught up: zero seconds
    assert value(wm, "activity_worker_consumer_lag_seconds", **labels) == 0


def test_commit_age_is_computed_at_scrape_time_and_resets_only_on_advance() -> None:
    clock = FakeClock()
    wm = WorkerMetrics(clock=clock)
    labels = {"topic": TP0.topic, "partition": "0"}
    wm.partitions_assigned([TP0])
    clock.now += 5
    assert value(wm, "activity_worker_commit_age_seconds", **labels) == 5  # since assignment
    wm.record_commit(TP0, 100)
    assert value(wm, "activity_worker_committed_offset", **labels) == 100
    clock.now += 30
    assert value(wm, "activity_worker_commit_age_seconds", **labels) == 30  # grows by itself
    wm.record_commit(TP0, 100)  # same offset: not an advance
    wm.record_commit(TP0, 90)  # lower (e.g. a late callback): not an advance
    clock.now += 10
    assert value(wm, "activity_worker_commit_age_seconds", **labels) == 40
    assert value(wm, "activity_worker_committed_offset", **labels) == 100
    wm.record_commit(TP0, 101)
    assert value(wm, "activity_worker_commit_age_seconds", **labels) == 0


def test_librdkafka_statistics_from_a_real_payload() -> None:
    wm = WorkerMetrics()
    doc = json.loads(STATS_JSON)
    wm.record_librdkafka_stats(STATS_JSON)
    assert value(wm, "activity_worker_librdkafka_replyq") == doc["replyq"]
    assert value(wm, "activity_worker_librdkafka_msg_cnt") == doc["msg_cnt"]
    real = [n for n, b in doc["brokers"].items() if b["nodeid"] >= 0]
    assert real
    for name in real:
        rtt = doc["brokers"][name]["rtt"]
        assert value(wm, "activity_worker_librdkafka_broker_rtt_avg_seconds",
                     broker=name) == pytest.approx(rtt["avg"] / 1e6)
        assert value(wm, "activity_worker_librdkafka_broker_up", broker=name) == 1
    assert value(wm, "activity_worker_librdkafka_broker_up", broker="GroupCoordinator") is None
    (topic, t), = doc["topics"].items()
    for pid, p in t["partitions"].items():
        got = value(wm, "activity_worker_librdkafka_consumer_lag", topic=topic, partition=pid)
        if pid == "-1" or p["consumer_lag"] < 0:
            assert got is None
        else:
            assert got == p["consumer_lag"]
    assert value(wm, "activity_worker_librdkafka_rebalances_total") == doc["cgrp"]["rebalance_cnt"]
    assert value(wm, "activity_worker_librdkafka_rebalance_age_seconds") == pytest.approx(
        doc["cgrp"]["rebalance_age"] / 1000)
    assert value(wm, "activity_worker_librdkafka_stats_errors_total") == 0


@pytest.mark.parametrize(
    "payload", ["not json", "[1, 2]", '{"brokers": {"b": 3}}', '{"replyq": "x"}'])
def test_bad_librdkafka_statistics_are_counted_not_raised(payload: str) -> None:
    wm = WorkerMetrics()
    wm.record_librdkafka_stats(STATS_JSON)
    wm.record_librdkafka_stats(payload)
    assert value(wm, "activity_worker_librdkafka_stats_errors_total") == 1
    assert value(wm, "activity_worker_librdkafka_replyq") is not None  # last good one kept


def test_guardrail_and_ledger_up() -> None:
    wm = WorkerMetrics()
    assert value(wm, "activity_worker_guardrail_trips_total") == 0
    wm.guardrail_tripped()
    assert value(wm, "activity_worker_guardrail_trips_total") == 1
    wm.set_ledger_up(True)
    assert value(wm, "activity_worker_ledger_up") == 1
    wm.set_ledger_up(False)
    assert value(wm, "activity_worker_ledger_up") == 0


def test_known_dead_letter_reasons_start_at_zero() -> None:
    wm = WorkerMetrics()
    for reason in m.KNOWN_DLQ_REASONS:
        assert value(wm, "activity_worker_dead_letters_total", reason=reason) == 0


def test_registries_are_independent() -> None:
    a, b = WorkerMetrics(), WorkerMetrics()
    a.guardrail_tripped()
    assert value(a, "activity_worker_guardrail_trips_total") == 1
    assert value(b, "activity_worker_guardrail_trips_total") == 0


def test_a_batch_result_is_recorded_once_and_a_cancelled_one_only_for_its_ledger_calls() -> None:
    wm = WorkerMetrics()
    s = BatchStats(batch_size=3, consumed=Counter({"t": 3}))
    s.ledger_seconds["claim"] = [0.01, 0.02]
    s.ledger_errors["claim"] = 1
    wm.batch_finished(BatchResult(True, [], s))
    assert value(wm, "activity_worker_events_consumed_total", topic="t") == 3
    assert value(wm, "activity_worker_ledger_operation_errors_total", op="claim") == 1
    assert value(wm, "activity_worker_ledger_operation_seconds_count", op="claim") == 2
    wm.batch_finished(BatchResult(False, [], s))
    assert value(wm, "activity_worker_events_consumed_total", topic="t") == 3
    assert value(wm, "activity_worker_ledger_operation_seconds_count", op="claim") == 4


def test_ledger_up_is_read_at_scrape_time() -> None:
    wm, up = WorkerMetrics(), [True]
    wm.watch_ledger(lambda: up[0])
    assert value(wm, "activity_worker_ledger_up") == 1
    up[0] = False
    assert value(wm, "activity_worker_ledger_up") == 0


def test_every_exposed_sample_is_declared() -> None:
    wm = WorkerMetrics()
    s = BatchStats(batch_size=1, consumed=Counter({"t": 1}))
    s.outcomes[("p", "ok")] += 1
    s.unmatched["x"] += 1
    s.dead_letters["schema"] += 1
    s.processing_seconds["p"] = [0.1]
    s.latency_seconds = [1.0]
    wm.record_batch(s)
    wm.partitions_assigned([TP0])
    wm.record_lag(TP0, 1, 1.0)
    wm.record_commit(TP0, 1)
    wm.record_librdkafka_stats(STATS_JSON)
    wm.record_ledger_op("claim", 0.1, True)
    effects = ConcurrentEffects(4, [async_processor("p")])
    effects.calls._queued[("t", 0)] = 1  # an effect waiting, as inside a batch
    wm.watch_effects(effects)
    wm.watch_destinations(lambda: [Circuit("crm")])
    exposed = set(sample_names(wm.registry))
    suffixes = ("_total", "_created", "_bucket", "_sum", "_count")
    bases = {next((n[: -len(x)] for x in suffixes if n.endswith(x) and n[: -len(x)] in
                   METRIC_NAMES), n) for n in exposed}
    assert bases == set(METRIC_NAMES)  # all declared names are exposed, and nothing else


def test_metrics_are_declared_only_in_metrics_module() -> None:
    """No module in worker/ outside the metrics modules (metric_names: the names; metrics: the
    declarations with help text; collectors, librdkafka_stats and batch_histogram: the
    scrape-time families) builds a metric
    (imports a prometheus_client metric class) or spells a declared metric name: either would
    be a second declaration. The webhook ingress, a process of its own with a registry of its
    own, declares its few metrics in one module the same way (worker/ingress/metrics.py)."""
    root = Path(m.__file__).resolve().parents[1]
    metric_classes = {"Counter", "Gauge", "Histogram", "Summary", "Info", "Enum",
                      "CounterMetricFamily", "GaugeMetricFamily", "HistogramMetricFamily",
                      "SummaryMetricFamily", "InfoMetricFamily", "Metric"}
    from worker.ingress import metrics as ingress_metrics

    names = set(METRIC_NAMES) | {v for k, v in vars(ingress_metrics).items()
                                 if k.isupper() and isinstance(v, str) and v.startswith(PREFIX)}
    offenders = []
    for path in root.rglob("*.py"):
        if (path.parent.name == "observability" and path.name in (
                "metrics.py", "collectors.py", "librdkafka_stats.py", "batch_histogram.py",
                "metric_names.py")) or (
                path.parent.name == "ingress" and path.name == "metrics.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                    "prometheus_client"):
                bad = [a.name for a in node.names if a.name in metric_classes]
                if bad:
                    offenders.append(f"{path}:{node.lineno} imports {bad}")
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and any(
                    node.value == n or node.value.startswith(n + "_") for n in names):
                offenders.append(f"{path}:{node.lineno} spells {node.value!r}")
    assert not offenders


def test_async_effects_are_shown_at_scrape_time() -> None:
    wm, effects = WorkerMetrics(), ConcurrentEffects(8, [async_processor("fwd")])
    wm.watch_effects(effects)
    assert value(wm, "activity_worker_effects_in_flight", processor="fwd") == 0
    assert value(wm, "activity_worker_effects_max_in_flight") == 8
    effects.calls._started[1] = time.perf_counter() - 2.0
    effects.calls._per_processor["fwd"] += 1
    effects.calls._queued[("t", 3)] = 5
    assert value(wm, "activity_worker_effects_in_flight", processor="fwd") == 1
    assert value(wm, "activity_worker_effects_queued", topic="t", partition="3") == 5
    assert (value(wm, "activity_worker_effect_oldest_age_seconds") or 0) >= 2.0


def async_processor(name: str) -> Processor:
    """An async processor that does nothing (its name labels the effects metrics)."""

    async def func(event: object, ctx: object) -> None:
        return None

    return Processor(name=name, patterns=("customer.**",), func=func)  # type: ignore[arg-type]


def test_a_worker_without_async_processors_exports_the_effects_series_at_0() -> None:
    """The dashboard's async-effects panels show 0, not "No data", on a sync-only worker."""
    from worker.observability.collectors import NoEffects

    wm = WorkerMetrics()
    wm.watch_effects(NoEffects(256))
    assert value(wm, "activity_worker_effects_in_flight", processor="") == 0
    assert value(wm, "activity_worker_effects_queued", topic="", partition="") == 0
    assert value(wm, "activity_worker_effect_oldest_age_seconds") == 0
    assert value(wm, "activity_worker_effects_max_in_flight") == 256
    for reason in ("key_order", "slot", "destination"):
        assert value(wm, "activity_worker_effects_waiting", reason=reason) == 0
    assert value(wm, "activity_worker_effects_keys_active") == 0
    assert value(wm, "activity_worker_effects_slots_free") == 256


def test_each_destinations_circuit_is_shown() -> None:
    now = [100.0]
    circuits = Circuits(CircuitPolicy(failures_to_open=1), clock=lambda: now[0])
    crm, mail = circuits.add("crm", 16), circuits.add("mail", 1)
    wm = WorkerMetrics()
    wm.watch_destinations(circuits.all)
    for state in ("closed", "open", "half_open"):
        assert value(wm, "activity_worker_destination_state", destination="crm",
                     state=state) == (1.0 if state == "closed" else 0.0)
    crm.failure(retry_after=30.0)
    assert crm.ask(None, first=True)
    now[0] += 12.5
    assert value(wm, "activity_worker_destination_state", destination="crm", state="open") == 1
    assert value(wm, "activity_worker_destination_state", destination="crm",
                 state="closed") == 0
    assert value(wm, "activity_worker_destination_down_seconds", destination="crm") == 12.5
    assert value(wm, "activity_worker_destination_calls_refused_total", destination="crm") == 1
    assert value(wm, "activity_worker_destination_opened_total", destination="crm") == 1
    for name in ("destination_events_parked_total", "destination_partitions_held"):
        assert value(wm, f"activity_worker_{name}", destination="mail") == 0  # from the start
    parking = Parking(circuits, 5.0)
    parking.parked(("t", 0), "crm", 7)
    parking.parked(("t", 0), "crm", 9)
    assert value(wm, "activity_worker_destination_events_parked_total", destination="crm") == 2
    assert value(wm, "activity_worker_destination_partitions_held", destination="crm") == 1
    assert value(wm, "activity_worker_destination_concurrency_limit", destination="crm") == 16
    assert value(wm, "activity_worker_destination_rate_limit", destination="crm") == 0
    crm.adaptive = AdaptiveLimit(16, clock=lambda: now[0])
    for _ in range(10):
        now[0] += 0.01
        crm.adaptive.success()
    crm.adaptive.failure()  # a 429 while accepting: halved, and paced at 90% of 100/s
    assert value(wm, "activity_worker_destination_concurrency_limit", destination="crm") == 8
    assert value(wm, "activity_worker_destination_rate_limit",
                 destination="crm") == pytest.approx(90.0, rel=0.12)
    assert value(wm, "activity_worker_destination_state", destination="mail",
                 state="closed") == 1
    assert mail.state == "closed"
