"""Links and sampling against a real Jaeger (tests/tracing/conftest.py): records that carry a
`traceparent` → Kafka → the worker (the HTTP forwarder to a test receiver) → Jaeger's query API.

- a retried call links to the failed one; a dead letter is a `dead_letter` span linked to the
  failed call, and `dlq replay` of it makes a `replay` span linked to the dead letter, whose
  context goes into the replayed record;
- a batch's `consume` span and its ledger calls link to the events' contexts, the offset
  commit's span to the batch and its events;
- at sampling ratio 0.0, with unsampled parents, nothing of a good event is recorded, but a
  failure and its dead letter are.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.engine.helpers import wait_for
from tests.ingress.conftest import delivery, make_topics
from tests.kafka_helpers import KafkaHelper
from tests.tracing.conftest import REPO, Jaeger
from tests.tracing.test_trace_end_to_end import (
    OK,
    REFUSED,
    RETRIED,
    Receiver,
    _parent,
    _tag,
    receiver,
)

__all__ = ["receiver"]  # (the fixture)

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(3600)]

PROCESS, DEAD_LETTER = "process http_forwarder", "dead_letter http_forwarder"


def _produce(kafka_helper: KafkaHelper, topic: str, sampled: bool) -> dict[int, tuple[str, str]]:
    """OK, RETRIED and REFUSED's records, each with a traceparent of its own: n -> (trace id,
    parent span id)."""
    contexts = {}
    for n in (OK, RETRIED, REFUSED):
        contexts[n] = (secrets.token_hex(16), secrets.token_hex(8))
        tp = f"00-{contexts[n][0]}-{contexts[n][1]}-{'01' if sampled else '00'}"
        kafka_helper.produce(topic, [delivery(n)], key=f"cust_{n}".encode(),
                             headers=[("traceparent", tp.encode())])
    return contexts


def _run(args: list[str], env: dict[str, str], cwd: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "worker", *args], cwd=cwd, env=env,
                         capture_output=True, timeout=300, check=False)
    assert run.returncode == 0, (run.stdout + run.stderr).decode()[-3000:]


def _worker(kafka_helper: KafkaHelper, topic: str, group: str, env: dict[str, str],
            cwd: Path) -> None:
    _run(["run", "--drain", "--topic", topic, "--group", group, "--bootstrap-servers",
          kafka_helper.bootstrap, "--ledger", "memory://", "--processors",
          "worker.processors.builtin.http_forwarder", "--metrics-address", "off"], env, cwd)


def _env(jaeger: Jaeger, service: str, receiver: Receiver, **more: str) -> dict[str, str]:
    return dict(os.environ, OTEL_EXPORTER_OTLP_ENDPOINT=jaeger.otlp,
                OTEL_BSP_SCHEDULE_DELAY="100", PYTHONPATH=str(REPO), OTEL_SERVICE_NAME=service,
                WORKER_FORWARD_URL=receiver.url, WORKER_BUILTIN_PROCESSORS="false", **more)


def _spans(jaeger: Jaeger, trace_id: str, wanted: Callable[[list[str]], bool]
           ) -> list[dict[str, Any]] | None:
    trace = jaeger.trace(trace_id)
    if trace is None:
        return None
    spans = sorted(trace["spans"], key=lambda s: s["startTime"])
    return spans if wanted([s["operationName"] for s in spans]) else None


def _links(span: dict[str, Any]) -> set[tuple[str, str]]:
    """(trace id, span id) of each of the span's links (Jaeger: FOLLOWS_FROM references)."""
    return {(r["traceID"], r["spanID"]) for r in span.get("references", [])
            if r.get("refType") == "FOLLOWS_FROM"}


def _id(span: dict[str, Any]) -> tuple[str, str]:
    return (span["traceID"], span["spanID"])


def test_retries_dead_letters_replays_and_batches_are_linked(
        jaeger: Jaeger, kafka_helper: KafkaHelper, receiver: Receiver, tmp_path: Path) -> None:
    topic, dlq = make_topics(kafka_helper, partitions=1)
    name = f"aw-{secrets.token_hex(3)}"
    contexts = _produce(kafka_helper, topic, sampled=True)
    _worker(kafka_helper, topic, name, _env(jaeger, f"{name}-worker", receiver), tmp_path)

    # a retried call: two call spans, the second linked to the first
    calls = wait_for(lambda: _spans(jaeger, contexts[RETRIED][0],
                                    lambda names: names.count(PROCESS) == 2),
                     60, "the retried event's two calls in Jaeger")
    first, second = (s for s in calls if s["operationName"] == PROCESS)
    assert _tag(first, "error") is True and not _tag(second, "error")
    assert _links(second) == {_id(first)}
    assert _parent(first) == _parent(second) == contexts[RETRIED][1]  # both the event's

    # a dead letter: its span linked to the failed call, the child of the event's context
    spans = wait_for(lambda: _spans(jaeger, contexts[REFUSED][0],
                                    lambda names: DEAD_LETTER in names and PROCESS in names),
                     60, "the dead-lettered event's spans in Jaeger")
    call = next(s for s in spans if s["operationName"] == PROCESS)
    dead = next(s for s in spans if s["operationName"] == DEAD_LETTER)
    assert _tag(dead, "error") is True
    assert _links(dead) == {_id(call)}
    assert _parent(dead) == contexts[REFUSED][1]
    assert _tag(dead, "worker.error.class") == "non_retriable"
    # ... and the letter carries the dead-letter span's context
    letter = kafka_helper.consume_all(dlq, 1)[0]
    tp = dict(letter.headers() or [])["traceparent"].decode()
    assert tp.split("-")[1:3] == list(_id(dead))

    # a replay: a new trace, its span linked to the dead letter, its context in the record
    _run(["dlq", "replay", dlq, "--bootstrap-servers", kafka_helper.bootstrap],
         _env(jaeger, f"{name}-dlq", receiver), tmp_path)
    replays = wait_for(lambda: jaeger.search(f"{name}-dlq", f"replay {topic}"), 60,
                       "the replay span in Jaeger")
    replay = next(s for s in replays[0]["spans"] if s["operationName"] == f"replay {topic}")
    assert _links(replay) == {_id(dead)} and _parent(replay) is None
    replayed = kafka_helper.consume_all(topic, 4)[3]
    tp = dict(replayed.headers() or [])["traceparent"].decode()
    assert tp.split("-")[1:3] == list(_id(replay))

    # the batch: a consume span and its ledger calls, linked to the three events' contexts
    events = {contexts[n] for n in (OK, RETRIED, REFUSED)}
    batches = wait_for(lambda: jaeger.search(f"{name}-worker", f"consume {topic}"), 60,
                       "the batch's spans in Jaeger")
    batch = next(t for t in batches if any(
        _links(s) == events for s in t["spans"] if s["operationName"] == f"consume {topic}"))
    by_name = {s["operationName"]: s for s in batch["spans"]}
    consume = by_name[f"consume {topic}"]
    for op in ("ledger claim", "ledger mark_done", "ledger commit"):
        assert _parent(by_name[op]) == consume["spanID"], op
        assert _links(by_name[op]) == events, op
    # ... and the Kafka offset commit that covered it links to it and to its events
    commits = wait_for(lambda: jaeger.search(f"{name}-worker", f"commit {topic}"), 60,
                       "the commit's span in Jaeger")
    assert any(_links(s) == {_id(consume)} | events
               for t in commits for s in t["spans"] if s["operationName"] == f"commit {topic}")


def test_a_failure_in_an_unsampled_trace_is_still_recorded(
        jaeger: Jaeger, kafka_helper: KafkaHelper, receiver: Receiver, tmp_path: Path) -> None:
    topic, _dlq = make_topics(kafka_helper, partitions=1)
    name = f"aw-{secrets.token_hex(3)}"
    contexts = _produce(kafka_helper, topic, sampled=False)
    _worker(kafka_helper, topic, name,
            _env(jaeger, f"{name}-worker", receiver,
                 OTEL_TRACES_SAMPLER="parentbased_traceidratio", OTEL_TRACES_SAMPLER_ARG="0.0"),
            tmp_path)
    spans = wait_for(lambda: _spans(jaeger, contexts[REFUSED][0],
                                    lambda names: DEAD_LETTER in names and PROCESS in names),
                     60, "the refused event's failure and dead letter in Jaeger")
    call = next(s for s in spans if s["operationName"] == PROCESS)
    assert _tag(call, "error") is True and _parent(call) == contexts[REFUSED][1]
    # the retried event: its failed call only (the call that succeeded was not sampled)
    retried = wait_for(lambda: _spans(jaeger, contexts[RETRIED][0],
                                      lambda names: PROCESS in names), 60, "the failed call")
    assert [(_tag(s, "error"), _tag(s, "worker.attempt")) for s in retried] == [(True, 1)]
    # the good event: nothing (exported with the rest, at the worker's exit)
    assert jaeger.trace(contexts[OK][0]) is None
    # ... yet the forwarder carried each record's own (unsampled) trace on
    for n in (OK, RETRIED, REFUSED):
        carried = [tp for e, tp in receiver.seen if e == f"evcus_{n:08d}"]
        assert carried and all(tp.split("-")[1] == contexts[n][0] for tp in carried)
