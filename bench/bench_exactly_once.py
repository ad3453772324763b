"""Exactly-once against at-least-once on the same work, in one run (not a test; the goals live
here: exactly-once >= 0.6x at-least-once's events/s, and ahead of Quix Streams' exactly-once).

Produces N realistic events once into a fresh topic, then drains it, each run in its own
process with a fresh group: the Engine with the real Pipeline (memory ledger) and a processor
that emits one record per event to an output topic (keyed like the event), under
  (a) at-least-once: records produced by the idempotent output producer, acknowledged before
      the batch's effects are marked done;
  (b) exactly-once: Kafka transactions spanning the batches of 100 ms (records, emitted marks
      in the changelog, offsets), committed in the order batches are read;
  (c) with --quix-python (a Python with quixstreams installed; not a dependency of the
      project): Quix Streams' exactly-once mode on the same events, a function that decodes
      each event's JSON and emits its id, keyed like the event (no idempotency ledger).
Events/s count from the first batch (call) to the last; the wall time includes the group join
and the final commit (and Quix's shutdown).

    KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092 python bench/bench_exactly_once.py --events 100000 \
        [--quix-python /path/to/venv/bin/python]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_engine import Timed, produce  # noqa: E402

MODES = ("at-least-once", "exactly-once")
GOAL = 0.6


def run(bootstrap: str, topic: str, out: str, batch: int, mode: str) -> dict[str, Any]:
    import structlog

    from worker.engine.loop import Engine, EngineConfig
    from worker.kafka.config import build_consumer_config, producer_config
    from worker.kafka.confluent_consumer import ConfluentConsumer
    from worker.kafka.dead_letter_producer import DeadLetterProducer
    from worker.kafka.emitted_marks import Forget, KafkaEmittedMarks, ensure_changelogs
    from worker.kafka.output_producer import OutputProducer, output_config
    from worker.kafka.transactions import TransactionalProducer, transactional_id
    from worker.ledger import open_ledger
    from worker.observer import WorkerObserver
    from worker.processing.pipeline import Pipeline
    from worker.processors.api import Processor

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
    group = f"bench-{mode}-{uuid.uuid4().hex[:8]}"
    config = build_consumer_config(bootstrap, group)

    def emit(event: Any, ctx: Any) -> None:
        ctx.emit(out, event.id.encode(), key=ctx.message_key)

    procs = [Processor(name="emit", patterns=("**",), func=emit)]
    ledger = open_ledger("memory://")
    observers: list[WorkerObserver] = []
    if mode == "exactly-once":
        ensure_changelogs(config, group, [topic])
        marks = KafkaEmittedMarks(config, group)
        outputs: OutputProducer = TransactionalProducer(
            output_config(config), transactional_id(group, None), marks=marks)
        pipeline = Pipeline(procs, ledger, outputs=outputs, emitted_marks=marks)
        observers.append(Forget(marks))
        transactions: TransactionalProducer | None = outputs  # type: ignore[assignment]
    else:
        outputs = OutputProducer(output_config(config))
        pipeline = Pipeline(procs, ledger, outputs=outputs)
        transactions = None
    handler = Timed(pipeline)
    engine = Engine(ConfluentConsumer(config), handler,
                    EngineConfig(topics=[topic], batch_size=batch, drain=True,
                                 install_signals=False),
                    dlq=DeadLetterProducer(producer_config(config), topic + ".dlq"),
                    observers=observers, transactions=transactions)
    t0 = time.perf_counter()
    code = engine.run()
    wall = time.perf_counter() - t0
    pipeline.close()
    outputs.close()
    return {"events": engine.counts.events, "seconds": handler.last - handler.first,
            "wall": wall, "exit_code": code}


def run_quix(bootstrap: str, topic: str, out: str, events: int) -> dict[str, Any]:
    """Quix Streams' exactly-once mode on the same work: decode each event's JSON and produce
    one record (its id) keyed like the event. Needs quixstreams (not a dependency of the
    project: install it into a venv of its own and pass --quix-python)."""
    from quixstreams import Application  # type: ignore[import-not-found]

    stamps = [0.0, 0.0]  # the first and the last call (as Timed counts the worker's batches)

    def emit(value: bytes) -> bytes:
        now = time.perf_counter()
        if not stamps[0]:
            stamps[0] = now
        stamps[1] = now
        return str(json.loads(value)["id"]).encode()

    app = Application(broker_address=bootstrap, consumer_group=f"bench-quix-{uuid.uuid4().hex}",
                      auto_offset_reset="earliest", processing_guarantee="exactly-once",
                      loglevel="WARNING", use_changelog_topics=False)
    src = app.topic(topic, key_deserializer="bytes", value_deserializer="bytes")
    dst = app.topic(out, key_serializer="bytes", value_serializer="bytes")
    sdf = app.dataframe(src).apply(emit)
    sdf.to_topic(dst)
    t0 = time.perf_counter()
    app.run(count=events, timeout=120, collect=False)
    done = time.perf_counter()
    return {"events": events, "seconds": stamps[1] - stamps[0], "wall": done - t0,
            "exit_code": 0}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=100_000)
    p.add_argument("--partitions", type=int, default=6)
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS",
                                                         "127.0.0.1:9092"))
    p.add_argument("--quix-python", help="a Python with quixstreams installed: also run "
                   "Quix Streams' exactly-once mode on the same events")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--topic", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child == "quix":
        print("RESULT " + json.dumps(run_quix(args.bootstrap, args.topic, args.out,
                                              args.events)))
        return
    if args.child:
        print("RESULT " + json.dumps(run(args.bootstrap, args.topic, args.out,
                                         args.batch_size, args.child)))
        return
    from worker.kafka.admin import ensure_topics

    topic = f"bench-eos-{uuid.uuid4().hex[:8]}"
    produce(args.bootstrap, topic, args.events, args.partitions)
    rates: dict[str, float] = {}
    for mode in (*MODES, *(["quix"] if args.quix_python else [])):
        out = f"{topic}.out.{mode}"
        ensure_topics({"bootstrap.servers": args.bootstrap}, {out: args.partitions})
        python = args.quix_python if mode == "quix" else sys.executable
        proc = subprocess.run(
            [python, __file__, "--child", mode, "--topic", topic, "--out", out,
             "--events", str(args.events), "--batch-size", str(args.batch_size),
             "--bootstrap", args.bootstrap], capture_output=True, text=True, cwd=ROOT)
        line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            print(f"{mode:14s} failed: {(proc.stderr or proc.stdout).strip()[-600:]}")
            continue
        r = json.loads(line[len("RESULT "):])
        rates[mode] = rate = r["events"] / r["seconds"] if r["seconds"] else 0.0
        print(f"{mode:14s} {r['events']:>8d} events  {rate:>9,.0f} events/s  "
              f"wall incl. join+commit {r['wall']:.2f}s  exit {r['exit_code']}")
    if rates.get("at-least-once") and rates.get("exactly-once"):
        ratio = rates["exactly-once"] / rates["at-least-once"]
        print(f"ratio exactly-once/at-least-once = {ratio:.2f}  (goal >= {GOAL})")
    if rates.get("quix") and rates.get("exactly-once"):
        ratio = rates["exactly-once"] / rates["quix"]
        print(f"ratio exactly-once/quix exactly-once = {ratio:.2f}  (goal > 1)")


if __name__ == "__main__":
    main()
