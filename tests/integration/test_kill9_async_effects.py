"""kill -9 while hundreds of async effects are in flight, several batches overlapping (an async
processor on the Redis ledger): the real worker process (`python -m worker run`) on a real
broker, killed 3 times at random moments and restarted, then drained.

After each kill (the process is gone, so nothing moves any more):
- the committed offsets never pass an event whose effect had not happened;
- the ledger's done keys are a subset of the effects that happened — and no effect whose key
  was done by then ever happens again (no ledger-protected effect repeats).
At the end every event's effect happened (nothing lost). An effect that ran but whose batch was
not marked done before the kill may run again after the restart: that is the documented
at-least-once window of an external effect, which the Idempotency-Key covers."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.engine.helpers import committed, create_topic, produce
from worker.ledger import ClaimState, open_ledger

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(400)]

REPO = Path(__file__).resolve().parents[2]
EVENTS, KEYS, PARTITIONS = 6000, 300, 4

EFFECTS_MODULE = '''
import asyncio, os, random
from worker.processors import processor

LOG = open(os.environ["EFFECT_LOG"], "a", buffering=1)


@processor("**", name="fwd")
async def fwd(event, ctx):
    await asyncio.sleep(random.uniform(0.02, 0.08))
    LOG.write(f"{ctx.partition} {ctx.offset} {os.getpid()}\\n")  # the effect, once it happened
'''


def event_for(n: int, customer: str) -> bytes:
    return (f'{{"id":"evcus_{n:020d}","type":"customer.order.paid","group_id":"v-{n:018d}",'
            f'"created_at":"2024-03-11T12:06:34.423Z","data":{{"customer":{{"id":"{customer}"}}'
            "}}").encode()


def effects(log: Path) -> list[tuple[int, int, int]]:
    if not log.exists():
        return []
    out = []
    for line in log.read_text().splitlines():
        parts = line.split()
        if len(parts) == 3:  # (a line cut by the kill has fewer fields)
            out.append((int(parts[0]), int(parts[1]), int(parts[2])))
    return out


@pytest.fixture
def workdir(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "async_effects.py").write_text(EFFECTS_MODULE)
    yield tmp_path


def test_kill9_with_hundreds_in_flight_loses_nothing_and_repeats_no_done_effect(
        kafka_bootstrap: str, redis_url: str, workdir: Path) -> None:
    topic, group = f"kill9a-{uuid.uuid4().hex[:8]}", f"kill9a-{uuid.uuid4().hex[:8]}"
    create_topic(kafka_bootstrap, topic, PARTITIONS)
    create_topic(kafka_bootstrap, f"{topic}.dlq", 1)
    rng = random.Random()
    where: dict[int, tuple[int, int]] = {}  # event number -> (partition, offset)
    per_partition = [0] * PARTITIONS
    records = []
    for n in range(EVENTS):
        customer = f"cust_{rng.randrange(KEYS)}"
        p = hash(customer) % PARTITIONS
        where[n] = (p, per_partition[p])
        per_partition[p] += 1
        records.append((p, customer.encode(), event_for(n, customer)))
    produce(kafka_bootstrap, topic, records)
    ledger_url = f"{redis_url.rstrip('/')}/0?prefix={uuid.uuid4().hex[:8]}:"
    keys = {n: f"fwd:v-{n:018d}:evcus_{n:020d}" for n in range(EVENTS)}

    log = workdir / "effects.log"
    env = dict(os.environ, PYTHONPATH=f"{workdir}{os.pathsep}{REPO}",
               WORKER_BUILTIN_PROCESSORS="false", WORKER_BOOTSTRAP_SERVERS=kafka_bootstrap,
               EFFECT_LOG=str(log))
    base = [sys.executable, "-m", "worker", "run", "--topic", topic, "--group", group,
            "--processors", "async_effects", "--ledger", ledger_url, "--metrics-address", "off",
            "--max-in-flight", "256", "--batch-size", "200", "--commit-interval", "0.2",
            # a killed worker's claims block their keys for the lease: keep the wait short
            "--ledger-lease", "10",
            "--kafka-config", "session.timeout.ms=6000"]
    first_done: dict[int, int] = {}  # event -> effect lines logged when its key was first done
    worker_log = workdir / "worker.log"
    for target in sorted(rng.sample(range(EVENTS // 8, EVENTS * 3 // 4), 3)):
        with worker_log.open("ab") as out:
            proc = subprocess.Popen(base, cwd=workdir, env=env, stdout=out, stderr=out)
        try:
            deadline = time.monotonic() + 120
            while len(effects(log)) < target:
                assert proc.poll() is None, f"worker exited: {worker_log.read_text()[-2000:]}"
                assert time.monotonic() < deadline, f"no progress to {target} effects"
                time.sleep(0.02)
            time.sleep(rng.uniform(0, 0.3))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
        lines = effects(log)
        happened = {(p, o) for p, o, _ in lines}
        # committed offsets never pass an event whose effect had not happened
        marks = committed(kafka_bootstrap, group, topic, PARTITIONS)
        for p, o in where.values():
            if o < marks[p]:
                assert (p, o) in happened, f"committed past {p}@{o}, whose effect never ran"
        # the ledger's done keys: each one's effect happened
        ledger = open_ledger(ledger_url)
        session = ledger.session()
        states = session.claim([keys[n] for n in range(EVENTS)])
        session.rollback()
        ledger.close()
        done = {n for n, s in zip(range(EVENTS), states, strict=True) if s is ClaimState.DONE}
        assert all(where[n] in happened for n in done)
        for n in done:
            first_done.setdefault(n, len(lines))

    final = subprocess.run([*base, "--drain"], cwd=workdir, env=env, capture_output=True,
                           timeout=300)
    assert final.returncode == 0, (final.stdout + final.stderr).decode()[-3000:]
    seen = effects(log)
    counts: dict[tuple[int, int], int] = {}
    for p, o, _ in seen:
        counts[(p, o)] = counts.get((p, o), 0) + 1
    assert set(counts) == set(where.values())  # nothing lost
    # no effect whose key was done at a kill ran again afterwards
    last_line: dict[tuple[int, int], int] = {}
    for i, (p, o, _) in enumerate(seen):
        last_line[(p, o)] = i
    for n, upto in first_done.items():
        assert last_line[where[n]] < upto, (
            f"event {n} was done in the ledger at a kill and its effect ran again")
    repeats = sum(c - 1 for c in counts.values())
    print(json.dumps({"effects": len(seen), "events": EVENTS, "repeated_after_kill": repeats}))
