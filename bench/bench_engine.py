"""Engine throughput against a local broker (not a test; speed goals live here).

Produces N realistic events once into a fresh topic, then runs, each in its own process (so
each peak RSS is its own):
  (a) plain:    a bare confluent-kafka consume() loop that does nothing: the ceiling
  (b) engine:   the worker's Engine in drain mode with a handler that only counts
  (c) pipeline: the Engine in drain mode with the real Pipeline (decode, route, memory ledger,
                two counting processors) and metrics on — skipped if a piece is missing
and prints events/s, the ratio to (a) (goal: pipeline/plain >= 0.35) and peak RSS (goal with
1,000,000 events: < 250 MB).

    KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092 python bench/bench_engine.py --events 200000

The memory ledger is the worker's default `memory://` (bounded to 100,000 keys); set
BENCH_MEMORY_LEDGER=memory://?max_keys=2000000 to hold every key of a 1M-event run instead.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import traced  # noqa: E402  (bench/traced.py)

TYPES = ["customer.order.paid", "customer.rewarded.loyalty_points",
         "customer.voucher.loyalty_card.points_added", "customer.loyalty.tier.upgraded",
         "customer.redemption.succeeded", "customer.segment.entered", "customer.email.sent",
         "customer.updated"]


def _fallback_events(n: int, seed: int = 0) -> Iterator[bytes]:
    rng = random.Random(seed)
    for i in range(n):
        t = TYPES[rng.randrange(len(TYPES))]
        cust = rng.randrange(10_000)
        yield json.dumps({
            "id": f"evcus_{i:018x}", "type": t, "group_id": f"v-{i // 3:018x}",
            "created_at": "2024-03-11T12:06:34.423Z",
            "data": {"customer": {"id": f"cust_{cust:024d}", "name": "Alex Doe",
                                  "source_id": f"src-{cust}", "metadata": {},
                                  "object": "customer"},
                     "campaign": {"id": "camp_AQZ1GLRlbGaC2dETd31VbJQ9",
                                  "name": "Loyalty programme",
                                  "campaign_type": "LOYALTY_PROGRAM", "object": "campaign"},
                     "balance": {"points": rng.randrange(1000), "total": rng.randrange(5000)},
                     "created_at": "2024-03-11T12:06:34.423Z"}},
            separators=(",", ":")).encode()


def events(n: int) -> tuple[Iterator[bytes], str]:
    try:
        from devtools.generate import generate_events  # type: ignore[import-not-found]
    except ImportError:
        return _fallback_events(n), "bench fallback generator"
    return generate_events(n, seed=1), "devtools.generate"


def produce(bootstrap: str, topic: str, n: int, partitions: int) -> str:
    from worker.kafka.admin import ensure_topics
    from worker.kafka.clients import new_producer

    ensure_topics({"bootstrap.servers": bootstrap}, {topic: partitions, topic + ".dlq": 1})
    gen, source = events(n)
    prod = new_producer({"bootstrap.servers": bootstrap, "linger.ms": 20,
                         "batch.size": 1_000_000, "compression.type": "lz4",
                         "enable.idempotence": True}, "bench producer")
    for i, value in enumerate(gen):
        while True:
            try:
                prod.produce(topic, value=value, key=str(i).encode())
                break
            except BufferError:
                prod.poll(0.05)
        if i % 20_000 == 0:
            prod.poll(0)
    if prod.flush(120):
        raise SystemExit("could not produce every event")
    return source


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_plain(bootstrap: str, topic: str, n: int, batch: int) -> dict[str, Any]:
    from confluent_kafka import Consumer

    from worker.kafka.config import build_consumer_config

    # The worker's own fetch settings, so the ratio measures the engine, not librdkafka tuning.
    c = Consumer(build_consumer_config(bootstrap, f"bench-plain-{uuid.uuid4()}"))
    c.subscribe([topic])
    seen = 0
    first = 0.0
    while seen < n:
        msgs = c.consume(batch, 1.0)
        if msgs and not first:
            first = time.perf_counter()
        seen += len(msgs)
    secs = time.perf_counter() - first
    c.close()
    return {"events": seen, "seconds": secs}


class Counting:
    window = None  # one batch at a time (worker.types.BatchHandler)

    def __init__(self) -> None:
        self.n = 0
        self.first = 0.0
        self.last = 0.0

    def handle(self, messages: Sequence[Any], cancelled: Callable[[], bool]) -> Any:
        from worker.types import BatchResult

        if not self.first:
            self.first = time.perf_counter()
        self.n += len(messages)
        self.last = time.perf_counter()
        return BatchResult(completed=True)


class Timed:
    """Wraps a handler to time from the first batch to the last (excludes the group join)."""

    window = None  # one batch at a time (worker.types.BatchHandler)

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.first = 0.0
        self.last = 0.0

    def handle(self, messages: Sequence[Any], cancelled: Callable[[], bool]) -> Any:
        if not self.first:
            self.first = time.perf_counter()
        result = self.inner.handle(messages, cancelled)
        self.last = time.perf_counter()
        return result


def _pipeline(mode: str) -> tuple[Any, Any]:
    """mode: `pipeline` (memory ledger, metrics on), `pipeline-nometrics` (metrics off),
    `pipeline-sqlite` (SQLite ledger in a temp dir, metrics on)."""
    import tempfile

    from worker.ledger import open_ledger
    from worker.observability.metrics import WorkerMetrics
    from worker.processing.pipeline import Pipeline
    from worker.processors.api import Processor

    counts = {"a": 0, "b": 0}

    def count_a(event: Any, ctx: Any) -> None:
        counts["a"] += 1

    def count_b(event: Any, ctx: Any) -> None:
        counts["b"] += 1

    procs = [Processor(name="count_orders", patterns=("customer.order.*",), func=count_a),
             Processor(name="count_all", patterns=("customer.**",), func=count_b)]
    tracer = None
    share = traced.ratio(mode)
    if share is not None:  # tracing on at that ratio (bench/traced.py)
        from worker import tracing

        traced.configure(share)
        tracer = tracing.batch_tracer("bench", procs)
    if mode == "pipeline-sqlite":
        ledger = open_ledger(f"sqlite:///{tempfile.mkdtemp(prefix='bench-')}/ledger.db")
    else:
        # The memory ledger as the worker configures it by default (bounded to 100,000 keys):
        # holding every key of a 1M-event run (max_keys=2000000) adds ~190 MB of keys.
        ledger = open_ledger(os.environ.get("BENCH_MEMORY_LEDGER", "memory://"))
    metrics = None if mode == "pipeline-nometrics" else WorkerMetrics()
    return Pipeline(procs, ledger, tracer=tracer), metrics


def run_engine(bootstrap: str, topic: str, batch: int, mode: str,
               overrides: dict[str, str]) -> dict[str, Any]:
    import structlog

    from worker.engine.loop import Engine, EngineConfig
    from worker.kafka.config import build_consumer_config, producer_config
    from worker.kafka.confluent_consumer import ConfluentConsumer
    from worker.kafka.dead_letter_producer import DeadLetterProducer

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
    config = build_consumer_config(bootstrap, f"bench-{mode}-{uuid.uuid4()}", overrides)
    metrics = None
    if mode == "engine":
        handler: Any = Counting()
    else:
        inner, metrics = _pipeline(mode)
        handler = Timed(inner)
    engine = Engine(ConfluentConsumer(config), handler,
                    EngineConfig(topics=[topic], batch_size=batch, drain=True,
                                 install_signals=False),
                    dlq=DeadLetterProducer(producer_config(config), topic + ".dlq"),
                    observers=[metrics] if metrics is not None else [])
    t0 = time.perf_counter()
    code = engine.run()
    wall = time.perf_counter() - t0
    if traced.ratio(mode) is not None:
        traced.flush()  # every span of the run is encoded, in this thread
    return {"events": engine.counts.events, "seconds": handler.last - handler.first, "wall": wall,
            "exit_code": code}


def child(args: argparse.Namespace) -> None:
    if args.child == "plain":
        out = run_plain(args.bootstrap, args.topic, args.events, args.batch_size)
    else:
        overrides = dict(kv.split("=", 1) for kv in args.kafka_config)
        out = run_engine(args.bootstrap, args.topic, args.batch_size, args.child, overrides)
    out["peak_rss_mb"] = _peak_rss_mb()
    print("RESULT " + json.dumps(out))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=200_000)
    p.add_argument("--partitions", type=int, default=6)
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS",
                                                         "127.0.0.1:9092"))
    p.add_argument("--modes",
                   default="plain,engine,pipeline,pipeline-nometrics,pipeline-sqlite",
                   help="comma-separated: plain (a bare consume loop), engine (the engine with a "
                   "counting handler), pipeline (engine + Pipeline + memory ledger + metrics), "
                   "pipeline-nometrics, pipeline-sqlite (SQLite ledger), pipeline-traced-P "
                   "(pipeline with tracing on at P%% sampling, bench/traced.py)")
    p.add_argument("--kafka-config", action="append", default=[],
                   help="librdkafka key=value for the worker's consumer (repeatable)")
    p.add_argument("--topic", help=argparse.SUPPRESS)
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args)
        return
    topic = f"bench-{uuid.uuid4().hex[:8]}"
    t0 = time.perf_counter()
    source = produce(args.bootstrap, topic, args.events, args.partitions)
    print(f"produced {args.events} events ({source}) to {topic} in "
          f"{time.perf_counter() - t0:.1f}s")
    results: dict[str, dict[str, Any]] = {}
    for mode in args.modes.split(","):
        proc = subprocess.run(
            [sys.executable, __file__, "--child", mode, "--topic", topic, "--events",
             str(args.events), "--batch-size", str(args.batch_size), "--bootstrap",
             args.bootstrap, *[x for kv in args.kafka_config for x in ("--kafka-config", kv)]],
            capture_output=True, text=True, cwd=ROOT)
        line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            print(f"{mode:9s} failed: {(proc.stderr or proc.stdout).strip()[-400:]}")
            continue
        r = results[mode] = json.loads(line[len("RESULT "):])
        rate = r["events"] / r["seconds"] if r["seconds"] else 0.0
        r["rate"] = rate
        extra = f", wall incl. join+commit {r['wall']:.2f}s" if "wall" in r else ""
        print(f"{mode:9s} {r['events']:>9d} events  {rate:>10,.0f} events/s  "
              f"peak RSS {r['peak_rss_mb']:.0f} MB{extra}")
    plain = results.get("plain", {}).get("rate")
    goals = {"pipeline": "  (goal >= 0.35)", "pipeline-sqlite": "  (goal >= 0.20)"}
    if plain:
        for mode in ("engine", "pipeline", "pipeline-nometrics", "pipeline-sqlite"):
            if mode in results:
                ratio = results[mode]["rate"] / plain
                print(f"ratio {mode}/plain = {ratio:.2f}{goals.get(mode, '')}")
    on = results.get("pipeline", {}).get("rate")
    off = results.get("pipeline-nometrics", {}).get("rate")
    if on and off:
        print(f"cost of metrics: {(1 - on / off) * 100:.1f}% of throughput (goal < 10%)")

if __name__ == "__main__":
    main()
