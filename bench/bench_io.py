"""Processors that wait on the network: events/s of async, key-ordered processors against the
key-ordered bound (not a test; speed goals live here).

Events keyed by K customers, each key the same number of times in shuffled order, are produced
once to a topic on a local broker; then each variant runs in its own process (its peak RSS its
own) with the Engine in drain mode and the memory ledger:

  sleep     an async processor awaiting L ms per event
  http      the built-in HTTP forwarder, POSTing each event to a local aiohttp server (its own
            process) that answers after L ms
  skewed    `sleep` on events whose keys follow a Zipf law (a few hot keys): the hottest key's
            chain caps the rate at N / (events of the hottest key x L)
  serial    concurrency off: a plain `def` processor sleeping L ms (a few events only)
  pyrallel  pyrallel-consumer (asyncio engine, key_hash ordering) awaiting L ms per event, in a
            Python >= 3.12 virtualenv this script makes under .local/ (PYRALLEL_PYTHON names
            the interpreter; default: pyenv's 3.12 if present)

It prints the steady rate (first to last effect), its share of the bound min(keys,
max_in_flight) / L, whether every key's effects ran in offset order, and the peak RSS.

    deploy/local/kafka up
    python bench/bench_io.py                       # L = 100 ms and 10 ms, every variant
    python bench/bench_io.py --latency-ms 100 --variants sleep,http

Goals (issue 30): L = 100 ms, 1,000 keys, 20,000 events (`--seconds 2`) -> >= 8,500 events/s on
1, 6 and 12 partitions; L = 10 ms, 10,000 keys, 200,000 events (`--keys 10000 --max-events
200000`) -> >= 40,000 events/s with the memory ledger, >= 20,000 with Redis; per-key order kept;
peak RSS < 300 MB. Each run's line also gives the median effects in flight and waiting, by
reason (worker.vocabulary.EffectWait), over the middle 80% of the run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import resource
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GOALS = {100.0: 8_500.0, 10.0: 40_000.0}
ZIPF_S = 0.8  # the skewed variant: the hottest of 1,000 keys gets ~6% of the events


def event_json(n: int, customer: str) -> bytes:
    return (f'{{"id":"evcus_{n:020d}","type":"customer.order.paid","group_id":"v-{n:018d}",'
            f'"created_at":"2024-03-11T12:06:34.423Z","data":{{"customer":{{"id":"{customer}"'
            f',"object":"customer"}},"order":{{"id":"ord_{n}","amount":2500}}}}}}').encode()


def zipf(keys: int) -> list[float]:
    weights = [1.0 / (k + 1) ** ZIPF_S for k in range(keys)]
    total = sum(weights)
    return [w / total for w in weights]


def customers(keys: int, per_key: int, skewed: bool, seed: int = 5,
              total: int | None = None) -> list[str]:
    rng = random.Random(seed)
    if skewed:  # Zipf over the keys
        out = [f"cust_{k}" for k in rng.choices(range(keys), zipf(keys),
                                               k=total or keys * per_key)]
    else:
        out = [f"cust_{k}" for k in range(keys) for _ in range(per_key)]
        rng.shuffle(out)
    return out


def produce(bootstrap: str, topic: str, partitions: int, keys: list[str]) -> None:
    from confluent_kafka import Producer

    from worker.kafka.admin import ensure_topics

    ensure_topics({"bootstrap.servers": bootstrap}, {topic: partitions})
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.size": 1_000_000,
                  "compression.type": "lz4"})
    for n, c in enumerate(keys):
        while True:
            try:
                p.produce(topic, value=event_json(n, c), key=c.encode())
                break
            except BufferError:
                p.poll(0.05)
        if n % 10_000 == 0:
            p.poll(0)
    assert p.flush(60) == 0


# -- the children ----------------------------------------------------------------------------
class Record:
    def __init__(self) -> None:
        self.times: list[float] = []
        self.order: dict[bytes, list[tuple[int, int]]] = {}

    def add(self, key: bytes | None, partition: int, offset: int) -> None:
        self.times.append(time.perf_counter())
        self.order.setdefault(key or b"", []).append((partition, offset))

    def result(self, extra: dict[str, Any]) -> dict[str, Any]:
        ordered = all(offs == sorted(offs) for offs in self.order.values())
        t = self.times
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {"effects": len(t), "seconds": (t[-1] - t[0]) if len(t) > 1 else 0.0,
                "ordered": ordered, "rss_mb": usage.ru_maxrss / 1024,
                # CPU of the whole process (every thread, startup included) per effect: what
                # limits short effects, and less moved by other load than the rate
                "cpu_us": (usage.ru_utime + usage.ru_stime) / max(1, len(t)) * 1e6, **extra}


def run_worker(a: argparse.Namespace) -> dict[str, Any]:
    import structlog

    from worker.engine.loop import Engine, EngineConfig
    from worker.kafka.config import build_consumer_config
    from worker.kafka.confluent_consumer import ConfluentConsumer
    from worker.ledger import open_ledger
    from worker.processing.pipeline import Pipeline
    from worker.processors.api import Processor

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
    rec, latency = Record(), a.latency_ms / 1000
    if a.child == "serial":
        def func(event: Any, ctx: Any) -> None:
            time.sleep(latency)
            rec.add(ctx._msg.key(), ctx.partition, ctx.offset)
    elif a.child == "http":
        from worker.processors.forwarding import Forwarder, ForwardSettings

        forward = Forwarder(ForwardSettings({"WORKER_FORWARD_URL": a.url,
                                             "WORKER_FORWARD_SECRET": "bench"}))

        async def func(event: Any, ctx: Any) -> None:  # type: ignore[misc]
            await forward(event, ctx)
            rec.add(ctx._msg.key(), ctx.partition, ctx.offset)
    else:
        async def func(event: Any, ctx: Any) -> None:  # type: ignore[misc]
            await asyncio.sleep(latency)
            rec.add(ctx._msg.key(), ctx.partition, ctx.offset)
    pipeline = Pipeline([Processor(name="bench", patterns=("customer.**",), func=func)],
                        open_ledger(a.ledger), max_in_flight=a.max_in_flight)
    overrides = dict(kv.split("=", 1) for kv in os.environ.get("BENCH_KAFKA_CONFIG", "").split(",")
                     if kv)
    config = build_consumer_config(a.bootstrap, f"bench-io-{uuid.uuid4()}", overrides)
    engine = Engine(ConfluentConsumer(config), pipeline, EngineConfig(
        topics=[a.topic], batch_size=a.batch_size, drain=a.events is None,
        max_events=a.events, install_signals=False))
    samples: list[tuple[int, int, int, int]] = []  # in flight, key order, slot, destination
    running = threading.Event()

    def sample() -> None:  # what holds the effects back, every 20 ms while effects run
        effects = pipeline.effects
        while not running.wait(0.02) and effects is not None:
            if rec.times:
                by = effects.waiting_by_reason()
                samples.append((effects.in_flight(), *by.values()))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    wall = time.perf_counter()
    code = engine.run()
    running.set()
    mid = samples[len(samples) // 10: len(samples) * 9 // 10] or samples or [(0, 0, 0, 0)]
    return rec.result({"exit_code": code, "wall": time.perf_counter() - wall,
                       "overlaps": pipeline.overlaps,
                       # medians over the middle 80% of the run
                       "scheduling": [sorted(x)[len(x) // 2] for x in zip(*mid, strict=True)]})


def run_pyrallel(a: argparse.Namespace) -> dict[str, Any]:
    from pyrallel_consumer.config import KafkaConfig
    from pyrallel_consumer.consumer import PyrallelConsumer
    from pyrallel_consumer.dto import ExecutionMode

    rec, latency, total = Record(), a.latency_ms / 1000, a.total
    done = asyncio.Event()

    async def worker(item: Any) -> None:
        await asyncio.sleep(latency)
        rec.add(item.key, item.tp.partition, item.offset)
        if len(rec.times) >= total:
            done.set()

    async def main() -> None:
        config = KafkaConfig(BOOTSTRAP_SERVERS=a.bootstrap,
                             CONSUMER_GROUP=f"bench-pyrallel-{uuid.uuid4()}",
                             AUTO_OFFSET_RESET="earliest")
        config.dlq_enabled = False
        config.parallel_consumer.ordering_mode = "key_hash"
        config.parallel_consumer.execution.mode = ExecutionMode.ASYNC
        config.parallel_consumer.execution.max_in_flight = a.max_in_flight
        consumer = PyrallelConsumer(config=config, worker=worker, topic=a.topic)
        await consumer.start()
        try:
            await asyncio.wait_for(done.wait(), timeout=a.timeout)
        finally:
            await consumer.stop()

    with contextlib.suppress(TimeoutError):  # not all done in time: the rate says so
        asyncio.run(main())
    return rec.result({"exit_code": 0})


def serve(port: int, latency_ms: float) -> None:
    from aiohttp import web

    async def answer(request: web.Request) -> web.Response:
        await request.read()
        await asyncio.sleep(latency_ms / 1000)
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/in", answer)
    web.run_app(app, host="127.0.0.1", port=port, print=None, backlog=4096,
                access_log=None)


# -- the parent ------------------------------------------------------------------------------
def child(python: str, args: list[str]) -> dict[str, Any]:
    proc = subprocess.run([python, __file__, *args], capture_output=True, text=True, cwd=ROOT)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        raise SystemExit(f"child {args[:2]} failed:\n{proc.stderr[-1500:]}")
    return json.loads(line[7:])  # type: ignore[no-any-return]


def pyrallel_python() -> str | None:
    venv = ROOT / ".local" / "bench-pyrallel"
    py = venv / "bin" / "python"
    if py.exists():
        return str(py)
    base = os.environ.get("PYRALLEL_PYTHON") or next(
        (str(p) for p in sorted(Path.home().glob(".pyenv/versions/3.1[2-9]*/bin/python"))), None)
    if base is None:
        return None
    print(f"  making {venv} with {base} and pip install pyrallel-consumer ...", flush=True)
    subprocess.run([base, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(py), "-m", "pip", "install", "-q", "pyrallel-consumer==1.0.0",
                    "aiohttp"], check=True)
    return str(py)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def report(name: str, r: dict[str, Any], bound: float, goal: float | None) -> None:
    rate = r["effects"] / r["seconds"] if r["seconds"] else 0.0
    verdict = "" if goal is None else ("  goal met" if rate >= goal else
                                       f"  goal {goal:,.0f}/s NOT met")
    print(f"  {name:9s} {r['effects']:>8,} effects  {rate:>9,.0f}/s  {rate / bound:6.1%} of "
          f"bound {bound:,.0f}/s  order {'kept' if r['ordered'] else 'BROKEN'}  "
          f"peak RSS {r['rss_mb']:.0f} MB  CPU {r.get('cpu_us', 0):.0f} µs/event{verdict}",
          flush=True)
    if "scheduling" in r:  # worker.processing.effects: the median in flight and waiting
        flying, order, slot, destination = r["scheduling"]
        print(f"            median in flight {flying:,}, waiting: key order {order:,}, "
              f"slot {slot:,}, destination {destination:,}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    p.add_argument("--topic", help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    p.add_argument("--total", type=int, help=argparse.SUPPRESS)
    p.add_argument("--events", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--timeout", type=float, default=300.0, help=argparse.SUPPRESS)
    p.add_argument("--keys", type=int, default=1000)
    p.add_argument("--seconds", type=float, default=12.0,
                   help="aim each run at about this long at the bound (sets events per key)")
    p.add_argument("--latency-ms", default="100,10")
    p.add_argument("--max-events", type=int, default=300_000)
    p.add_argument("--max-in-flight", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--partitions", type=int, default=6)
    p.add_argument("--ledger", default="memory://",
                   help="the worker's ledger (e.g. redis://127.0.0.1:6390/7); not pyrallel's. "
                   "Give Redis a database no earlier run used: the events' ids repeat from run "
                   "to run, so a ledger that remembers them makes every effect a duplicate")
    p.add_argument("--variants", default="sleep,http,skewed,serial,pyrallel")
    p.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS",
                                                         "127.0.0.1:9092"))
    a = p.parse_args()
    if a.serve is not None:
        serve(a.serve, float(a.latency_ms))
        return
    if a.child:
        a.latency_ms = float(a.latency_ms)
        out = run_pyrallel(a) if a.child == "pyrallel" else run_worker(a)
        print("RESULT " + json.dumps(out), flush=True)
        return

    variants = a.variants.split(",")
    pyr = pyrallel_python() if "pyrallel" in variants else None
    for latency in [float(x) for x in a.latency_ms.split(",")]:
        bound = min(a.keys, a.max_in_flight) / (latency / 1000)
        # about --seconds at the goal (or the bound), at most --max-events
        per_key = max(2, round(min(GOALS.get(latency, bound) * 1.5, bound) * a.seconds / a.keys))
        per_key = min(per_key, a.max_events // a.keys)
        n = a.keys * per_key
        print(f"L = {latency:g} ms: {a.keys:,} keys x {per_key} events = {n:,} events on "
              f"{a.partitions} partitions, --max-in-flight {a.max_in_flight}", flush=True)
        topic = f"bench-io-{uuid.uuid4().hex[:8]}"
        produce(a.bootstrap, topic, a.partitions, customers(a.keys, per_key, False))
        common = ["--topic", topic, "--bootstrap", a.bootstrap, "--latency-ms", str(latency),
                  "--max-in-flight", str(a.max_in_flight), "--batch-size", str(a.batch_size),
                  "--ledger", a.ledger]
        for variant in variants:
            if variant == "sleep":
                report("worker", child(sys.executable, ["--child", "sleep", *common]), bound,
                       GOALS.get(latency))
            elif variant == "http":
                port = free_port()
                server = subprocess.Popen([sys.executable, __file__, "--serve", str(port),
                                           "--latency-ms", str(latency)], cwd=ROOT)
                try:
                    time.sleep(1.5)
                    r = child(sys.executable, ["--child", "http", *common,
                                               "--url", f"http://127.0.0.1:{port}/in"])
                finally:
                    server.terminate()
                report("http", r, bound, None)
            elif variant == "skewed":
                # as many events as make the hottest key's chain about --seconds long
                total = int(a.seconds / (latency / 1000) / zipf(a.keys)[0])
                keys = customers(a.keys, per_key, True, total=total)
                hottest = Counter(keys).most_common(1)[0][1]
                skew_bound = min(bound, len(keys) / (hottest * latency / 1000))
                skewed = f"bench-io-skew-{uuid.uuid4().hex[:8]}"
                produce(a.bootstrap, skewed, a.partitions, keys)
                r = child(sys.executable, ["--child", "sleep", *common[2:], "--topic", skewed])
                print(f"  (skewed: the hottest key has {hottest:,} of {len(keys):,} events)")
                report("skewed", r, skew_bound, None)
            elif variant == "serial":
                few = max(20, int(3000 / latency))  # ~3 s of work at 1 / L
                r = child(sys.executable, ["--child", "serial", *common, "--events", str(few)])
                report("serial", r, bound, None)
            elif variant == "pyrallel":
                if pyr is None:
                    print("  pyrallel  skipped: needs Python >= 3.12 (set PYRALLEL_PYTHON)")
                    continue
                r = child(pyr, ["--child", "pyrallel", *common, "--total", str(n)])
                report("pyrallel", r, bound, None)


if __name__ == "__main__":
    main()
