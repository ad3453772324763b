"""librdkafka's statistics as Prometheus gauges: `parse_librdkafka` picks the fields we export
from its statistics JSON (see librdkafka's STATISTICS.md), `LibrdkafkaCollector` renders the last
snapshot at scrape time."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from worker.observability.collectors import ScrapeTimeCollector
from worker.observability.metric_names import (
    LIBRDKAFKA_ASSIGNMENT_SIZE,
    LIBRDKAFKA_BROKER_RTT_AVG_SECONDS,
    LIBRDKAFKA_BROKER_RTT_P99_SECONDS,
    LIBRDKAFKA_BROKER_UP,
    LIBRDKAFKA_CONSUMER_LAG,
    LIBRDKAFKA_FETCHQ_MESSAGES,
    LIBRDKAFKA_MSG_CNT,
    LIBRDKAFKA_REBALANCE_AGE_SECONDS,
    LIBRDKAFKA_REBALANCES,
    LIBRDKAFKA_REPLYQ,
)


@dataclass(slots=True)
class _RdkSnapshot:
    replyq: float = 0.0
    msg_cnt: float = 0.0
    brokers: list[tuple[str, bool, float, float]] = field(default_factory=list)
    partitions: list[tuple[str, str, float | None, float]] = field(default_factory=list)
    rebalance_cnt: float | None = None
    rebalance_age_s: float | None = None
    assignment_size: float | None = None


def parse_librdkafka(stats_json: str) -> _RdkSnapshot:
    """Pick the fields we export from librdkafka's statistics JSON (see its STATISTICS.md)."""
    doc = json.loads(stats_json)
    if not isinstance(doc, dict):
        raise ValueError("statistics are not a JSON object")
    snap = _RdkSnapshot(replyq=float(doc.get("replyq", 0)), msg_cnt=float(doc.get("msg_cnt", 0)))
    for name, b in (doc.get("brokers") or {}).items():
        if int(b.get("nodeid", -1)) < 0:
            continue  # bootstrap and logical brokers (GroupCoordinator) duplicate real ones
        rtt = b.get("rtt") or {}
        snap.brokers.append((str(name), b.get("state") == "UP",
                             float(rtt.get("avg", 0)) / 1e6, float(rtt.get("p99", 0)) / 1e6))
    for topic, t in (doc.get("topics") or {}).items():
        for pid, p in (t.get("partitions") or {}).items():
            if str(pid) == "-1":
                continue  # librdkafka's internal "unassigned" partition
            lag = int(p.get("consumer_lag", -1))
            snap.partitions.append((str(topic), str(pid), float(lag) if lag >= 0 else None,
                                    float(p.get("fetchq_cnt", 0))))
    cgrp = doc.get("cgrp")
    if isinstance(cgrp, dict):
        snap.rebalance_cnt = float(cgrp.get("rebalance_cnt", 0))
        snap.rebalance_age_s = float(cgrp.get("rebalance_age", 0)) / 1e3
        snap.assignment_size = float(cgrp.get("assignment_size", 0))
    return snap


class LibrdkafkaCollector(ScrapeTimeCollector):
    """The last statistics snapshot (set by WorkerMetrics), rendered at scrape time; nothing
    before the first one."""

    def __init__(self) -> None:
        self.snapshot: _RdkSnapshot | None = None

    def _families(self) -> list[GaugeMetricFamily | CounterMetricFamily]:
        b, tp = ["broker"], ["topic", "partition"]
        return [
            GaugeMetricFamily(LIBRDKAFKA_REPLYQ, "librdkafka ops waiting for the application "
                              "to poll them (replyq)."),
            GaugeMetricFamily(LIBRDKAFKA_MSG_CNT, "Messages in librdkafka's queues (msg_cnt)."),
            GaugeMetricFamily(LIBRDKAFKA_BROKER_UP, "1 if librdkafka's connection to the broker "
                              "is UP.", labels=b),
            GaugeMetricFamily(LIBRDKAFKA_BROKER_RTT_AVG_SECONDS, "Broker round-trip time, "
                              "average over the statistics window.", labels=b),
            GaugeMetricFamily(LIBRDKAFKA_BROKER_RTT_P99_SECONDS, "Broker round-trip time, 99th "
                              "percentile over the statistics window.", labels=b),
            GaugeMetricFamily(LIBRDKAFKA_CONSUMER_LAG, "Consumer lag in messages as librdkafka "
                              "sees it (from the committed offset).", labels=tp),
            GaugeMetricFamily(LIBRDKAFKA_FETCHQ_MESSAGES, "Messages fetched and waiting in "
                              "librdkafka's queue for the partition.", labels=tp),
            CounterMetricFamily(LIBRDKAFKA_REBALANCES, "Rebalances librdkafka's group handler "
                                "went through since the consumer started."),
            GaugeMetricFamily(LIBRDKAFKA_REBALANCE_AGE_SECONDS, "Seconds since the last "
                              "rebalance."),
            GaugeMetricFamily(LIBRDKAFKA_ASSIGNMENT_SIZE, "Partitions in the consumer's current "
                              "assignment."),
        ]

    def collect(self) -> list[Metric]:
        snap = self.snapshot
        if snap is None:
            return []
        (replyq, msg_cnt, b_up, rtt_avg, rtt_p99, lag, fetchq, reb, reb_age,
         assign) = self._families()
        replyq.add_metric([], snap.replyq)
        msg_cnt.add_metric([], snap.msg_cnt)
        for name, up, avg, p99 in snap.brokers:
            b_up.add_metric([name], 1.0 if up else 0.0)
            rtt_avg.add_metric([name], avg)
            rtt_p99.add_metric([name], p99)
        for topic, pid, plag, fq in snap.partitions:
            if plag is not None:
                lag.add_metric([topic, pid], plag)
            fetchq.add_metric([topic, pid], fq)
        out: list[Metric] = [replyq, msg_cnt, b_up, rtt_avg, rtt_p99, lag, fetchq]
        if snap.rebalance_cnt is not None:
            reb.add_metric([], snap.rebalance_cnt)
            reb_age.add_metric([], snap.rebalance_age_s or 0.0)
            assign.add_metric([], snap.assignment_size or 0.0)
            out += [reb, reb_age, assign]
        return out
