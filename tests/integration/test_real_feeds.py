"""Events as older Voucherify feeds send them, through the real broker and the real worker: no
`group_id` (missing or null), redelivered in the stream, as a webhook delivery, and by a second
consumer group over the same ledger. Every effect happens once, under both built-in key scopes,
and nothing is dead-lettered."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.kafka_helpers import KafkaHelper, unique_name
from worker.kafka.admin import ensure_topics

pytestmark = pytest.mark.kafka

REPO = Path(__file__).resolve().parents[2]

EFFECTS_MODULE = '''
from worker.processors import processor


def _setup(conn):
    conn.execute("CREATE TABLE IF NOT EXISTS effects (proc TEXT, event_id TEXT, grp TEXT)")


@processor("customer.**", name="per_event", setup=_setup, requires_transaction=True)
def per_event(event, ctx):
    ctx.transaction.execute("INSERT INTO effects VALUES ('per_event', ?, ?)",
                            (event.id, event.group_id))


@processor("customer.**", name="per_group", once_per="group", requires_transaction=True)
def per_group(event, ctx):
    ctx.transaction.execute("INSERT INTO effects VALUES ('per_group', ?, ?)",
                            (event.id, event.group_id))
'''


def _event(n: int, group: str | type[KeyError] | None) -> dict[str, object]:
    doc: dict[str, object] = {
        "id": f"evcus_old{n:04d}", "type": "customer.loyalty.tier.joined",
        "created_at": "2021-06-01T10:00:00.000Z",
        "data": {"customer": {"id": f"cust_{n % 7}", "referrals": {"campaigns": ["x"]}},
                 "loyalty_tier": {"id": "ltr_1", "points": {"from": 0, "to": 100}}}}
    if group is not KeyError:
        doc["group_id"] = group
    return doc


def test_events_without_group_id_redelivered_have_their_effect_once(
        kafka_helper: KafkaHelper, tmp_path: Path) -> None:
    topic = kafka_helper.new_topic(partitions=2, prefix="feeds")
    ensure_topics({"bootstrap.servers": kafka_helper.bootstrap}, {f"{topic}.dlq": 1})
    events = [_event(n, KeyError if n % 2 else None) for n in range(40)]
    values = [json.dumps(e).encode() for e in events]
    redelivered = values[:10]  # the same bytes again, as Kafka redelivers after a crash
    delivery = {"id": "whs_1", "object": "webhook_sending", "created_at": "2021-06-01T10:00:01Z",
                "type": events[11]["type"], "data": events[11]["data"],
                "event": {k: v for k, v in events[11].items() if k != "data"}}
    for value in [*values, *redelivered, json.dumps(delivery).encode()]:
        kafka_helper.produce(topic, [value], key=b"k" + value[-3:])
    (tmp_path / "feeds_effects.py").write_text(EFFECTS_MODULE)
    db = tmp_path / "ledger.db"
    env = dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{REPO}",
               WORKER_BUILTIN_PROCESSORS="false", WORKER_BOOTSTRAP_SERVERS=kafka_helper.bootstrap)
    for group in (unique_name("feeds-a"), unique_name("feeds-b")):  # b: everything again
        run = subprocess.run(
            [sys.executable, "-m", "worker", "run", "--topic", topic, "--group", group,
             "--processors", "feeds_effects", "--ledger", f"sqlite:///{db}",
             "--metrics-address", "off", "--drain"],
            cwd=tmp_path, env=env, capture_output=True, timeout=300, check=False)
        assert run.returncode == 0, (run.stdout + run.stderr).decode()[-3000:]
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT proc, event_id, COUNT(*), MAX(grp) FROM effects "
                        "GROUP BY proc, event_id").fetchall()
    conn.close()
    ids = {str(e["id"]) for e in events}
    for proc in ("per_event", "per_group"):
        counts = {eid: n for p, eid, n, _ in rows if p == proc}
        assert counts.keys() == ids, f"{proc}: missing {ids - counts.keys()}"
        assert set(counts.values()) == {1}, f"{proc}: repeated {counts}"
    assert {grp for *_, grp in rows} == {None}  # the processor saw that group_id was absent
    assert kafka_helper.consume_all(f"{topic}.dlq", 0, deadline=2) == []
