"""The kill -9 test: effects happen exactly once through crashes.

20,000 events (10% redelivered duplicates) on a 4-partition topic of the real broker; the real
worker process (`python -m worker run`) with a processor that writes one row per effect through
`ctx.transaction` into a table WITHOUT a unique constraint (so a repeated effect would show as a
second row); the worker is killed with SIGKILL at least 3 times at random moments while it works
and restarted; a last run drains the topic. Then every distinct event has exactly one effect row
and none is missing.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.generate import EventGenerator
from tests.kafka_helpers import KafkaHelper, unique_name
from tests.worker_process import kill_at_random_moments
from worker.kafka.produce import produce_records

pytestmark = pytest.mark.kafka

REPO = Path(__file__).resolve().parents[2]

EFFECTS_MODULE = '''
from worker.processors import processor


def _setup(conn):
    conn.execute("CREATE TABLE IF NOT EXISTS effects (event_id TEXT NOT NULL, type TEXT)")


@processor("**", name="effects", setup=_setup, requires_transaction=True)
def effects(event, ctx):
    ctx.transaction.execute("INSERT INTO effects (event_id, type) VALUES (?, ?)",
                            (event.id, event.type))
'''


def effect_count(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return int(conn.execute("SELECT COUNT(*) FROM effects").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.OperationalError:  # table not created yet
        return 0


@pytest.fixture
def workdir(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "kill9_effects.py").write_text(EFFECTS_MODULE)
    yield tmp_path


@pytest.mark.parametrize(("events", "kills"), [
    (20_000, 3),
    pytest.param(200_000, 10, marks=pytest.mark.soak),
])
def test_sigkill_at_random_moments_still_gives_every_effect_exactly_once(
        kafka_helper: KafkaHelper, workdir: Path, events: int, kills: int) -> None:
    topic = kafka_helper.new_topic(partitions=4, prefix="kill9")
    dlq = f"{topic}.dlq"
    from worker.kafka.admin import ensure_topics

    ensure_topics({"bootstrap.servers": kafka_helper.bootstrap}, {dlq: 1})

    gen = EventGenerator(seed=events, duplicate_share=0.10)
    records = list(gen.records(events))
    expected = {json.loads(r.value)["id"] for r in records}
    assert gen.counts.duplicates >= events * 0.09  # the stream really carries ~10% redeliveries
    produce_records(((r.key, r.value) for r in records), topic, kafka_helper.bootstrap)

    db = workdir / "ledger.db"
    env = dict(os.environ,
               PYTHONPATH=f"{workdir}{os.pathsep}{REPO}",
               WORKER_BUILTIN_PROCESSORS="false",
               WORKER_BOOTSTRAP_SERVERS=kafka_helper.bootstrap)
    base = [sys.executable, "-m", "worker", "run", "--topic", topic,
            "--group", unique_name("kill9"), "--processors", "kill9_effects",
            "--ledger", f"sqlite:///{db}", "--metrics-address", "off",
            "--batch-size", "200", "--commit-interval", "0.2", "--commit-every", "500",
            # a killed member holds its partitions until its session expires: keep that short
            "--kafka-config", "session.timeout.ms=6000"]
    killed = kill_at_random_moments(
        base, workdir, env, workdir / "worker.log",
        random.Random().sample(range(events // 15, events * 4 // 5), kills),
        lambda: effect_count(db), random.Random())

    final = subprocess.run([*base, "--drain"], cwd=workdir, env=env, capture_output=True,
                           timeout=900)
    assert final.returncode == 0, (final.stdout + final.stderr).decode()[-4000:]
    assert killed == kills >= 3

    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT event_id, COUNT(*) FROM effects GROUP BY event_id").fetchall()
    conn.close()
    counts = dict(rows)
    repeated = {k: n for k, n in counts.items() if n != 1}
    assert repeated == {}, f"{len(repeated)} effects happened more than once"
    missing = expected - counts.keys()
    assert missing == set(), f"{len(missing)} events have no effect"
    assert counts.keys() == expected
