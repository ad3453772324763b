"""What metrics cost per batch of 500 and per event.

Run: python bench/bench_metrics.py [--batch 500] [--repeat 2000]

Measures, for a realistic batch (3 processors, 5 outcomes, 500 end-to-end latencies, 450
processor-call timings):
  aggregate   the pipeline's per-event work to fill BatchStats (Counter += 1, list.append)
  record      WorkerMetrics.record_batch(stats), once per batch
  naive       what per-event instrumentation would cost: labels().inc() and Histogram.observe()
              for every event, the thing the design avoids
The engine benchmark reports events/s with metrics on and off; this isolates the metrics part.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prometheus_client import CollectorRegistry, Counter, Histogram

from worker.observability.metrics import (
    LATENCY_BUCKETS,
    PROCESSING_BUCKETS,
    WorkerMetrics,
)
from worker.types import BatchStats

PROCESSORS = ("loyalty_points", "tier_changes", "segment_sync")


def make_events(n: int, rng: random.Random) -> list[tuple[str, str, float, float]]:
    outcomes = ["ok"] * 90 + ["duplicate"] * 5 + ["skipped"] * 3 + ["retried", "dead_lettered"]
    return [(PROCESSORS[i % 3], rng.choice(outcomes), rng.uniform(0.0002, 0.01),
             rng.uniform(0.05, 3.0)) for i in range(n)]


def aggregate(events: list[tuple[str, str, float, float]]) -> BatchStats:
    s = BatchStats(batch_size=len(events))
    s.consumed["customer-activity"] += len(events)
    outcomes, timings, lat = s.outcomes, s.processing_seconds, s.latency_seconds
    for proc, outcome, secs, latency in events:
        outcomes[(proc, outcome)] += 1
        t = timings.get(proc)
        if t is None:
            t = timings[proc] = []
        t.append(secs)
        lat.append(latency)
    s.dead_letters["processor_failed"] += outcomes.get((PROCESSORS[0], "dead_lettered"), 0)
    return s


def timeit(fn: Callable[[], object], repeat: int) -> float:
    """Best of 5 rounds, seconds per call."""
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(repeat):
            fn()
        best = min(best, (time.perf_counter() - t0) / repeat)
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=2000)
    args = ap.parse_args()
    rng = random.Random(1)
    events = make_events(args.batch, rng)
    stats = aggregate(events)
    wm = WorkerMetrics()

    reg = CollectorRegistry()
    c = Counter("naive_outcomes", "x", ["processor", "outcome"], registry=reg)
    h = Histogram("naive_proc", "x", ["processor"], buckets=PROCESSING_BUCKETS, registry=reg)
    lat = Histogram("naive_lat", "x", buckets=LATENCY_BUCKETS, registry=reg)

    def naive() -> None:
        for proc, outcome, secs, latency in events:
            c.labels(proc, outcome).inc()
            h.labels(proc).observe(secs)
            lat.observe(latency)

    rows = [
        ("aggregate (pipeline fills BatchStats)", timeit(lambda: aggregate(events), args.repeat)),
        ("record_batch (WorkerMetrics)", timeit(lambda: wm.record_batch(stats), args.repeat)),
        ("naive per-event labels()/observe()", timeit(naive, max(1, args.repeat // 10))),
    ]
    print(f"batch of {args.batch} events; best of 5 rounds")
    print(f"{'step':44s} {'µs/batch':>10s} {'µs/event':>10s}")
    for name, sec in rows:
        print(f"{name:44s} {sec * 1e6:10.1f} {sec * 1e6 / args.batch:10.3f}")
    on = rows[0][1] + rows[1][1]
    print(f"metrics on, total per event: {on * 1e6 / args.batch:.3f} µs "
          f"(naive would be {rows[3][1] * 1e6 / args.batch:.3f} µs)")
    for budget_us in (20, 50, 100):
        print(f"  with {budget_us} µs/event of other work, metrics add "
              f"{100 * (on / args.batch) / (budget_us * 1e-6):.1f}% per event (throughput "
              f"{100 * (1 - budget_us / (budget_us + on * 1e6 / args.batch)):.1f}% lower)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
