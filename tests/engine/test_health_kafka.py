"""/healthz's "commits stopped advancing" signal, driven by the real engine on the real broker:
a batch that never finishes (while the poll loop stays alive) turns liveness red; once it
finishes and its offsets are committed, liveness is green again."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from tests.engine.helpers import Running, create_topic, event_json, produce, wait_for
from worker.engine.lifecycle import EXIT_OK
from worker.engine.loop import Engine, EngineConfig
from worker.kafka.config import build_consumer_config
from worker.kafka.confluent_consumer import ConfluentConsumer
from worker.observability.health import HealthState
from worker.types import BatchResult, Message

pytestmark = pytest.mark.kafka


class Gate:
    """A handler whose batches wait until the test opens the gate."""

    window = None  # one batch at a time (worker.types.BatchHandler)

    def __init__(self) -> None:
        self.open = threading.Event()
        self.started = threading.Event()

    def handle(self, messages: Sequence[Message], cancelled: Callable[[], bool]) -> BatchResult:
        self.started.set()
        while not self.open.wait(0.05):
            if cancelled():
                return BatchResult(completed=False)
        return BatchResult(completed=True)


def test_liveness_fails_while_commits_stall_and_recovers(engine_bootstrap: str,
                                                         unique_name: Any) -> None:
    b, topic, group = engine_bootstrap, unique_name("topic"), unique_name("group")
    create_topic(b, topic, 1)
    produce(b, topic, [(0, None, event_json(i)) for i in range(5)])
    health = HealthState(poll_stale_after=30.0, commit_stall_after=0.5)
    gate = Gate()
    engine = Engine(ConfluentConsumer(build_consumer_config(b, group, None)), gate,
                    EngineConfig(topics=[topic], poll_timeout=0.1, commit_interval=0.1,
                                 install_signals=False), observers=[health])
    run = Running(engine)
    try:
        assert gate.started.wait(30), "the first batch never reached the handler"
        reasons = wait_for(lambda: (not health.liveness()[0]) and health.liveness()[1], 10,
                           "liveness to fail while the batch holds the commits")
        assert any("no commit has advanced" in r for r in reasons)
        assert not any("poll loop" in r for r in reasons)  # the loop itself stays alive
        gate.open.set()
        wait_for(lambda: health.liveness()[0], 10, "liveness to recover after the commit")
    finally:
        gate.open.set()
        assert run.stop() == EXIT_OK
