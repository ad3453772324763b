"""A worker process for the crash and shutdown tests: runs the real Engine with a handler that
appends "partition offset" lines to --out once a batch is done (its "effect").

    python -m tests.engine.run_engine --bootstrap B --topic T --group G --out FILE [...]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence

from worker.engine.loop import Engine, EngineConfig
from worker.kafka.config import build_consumer_config
from worker.kafka.confluent_consumer import ConfluentConsumer
from worker.types import BatchResult, Message


class FileHandler:
    window = None  # one batch at a time (worker.types.BatchHandler)

    def __init__(self, path: str, delay: float, ignore_cancel: bool) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        # One line per batch started, so tests can wait for "a batch is in flight".
        self.started = os.open(path + ".started", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.delay = delay
        self.ignore_cancel = ignore_cancel

    def handle(self, messages: Sequence[Message], cancelled: Callable[[], bool]) -> BatchResult:
        os.write(self.started, f"{len(messages)}\n".encode())
        deadline = time.monotonic() + self.delay
        while time.monotonic() < deadline:
            if cancelled() and not self.ignore_cancel:
                return BatchResult(completed=False)
            time.sleep(0.01)
        lines = "".join(f"{m.partition()} {m.offset()}\n" for m in messages)
        os.write(self.fd, lines.encode())
        return BatchResult(completed=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--group", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--commit-interval", type=float, default=0.2)
    p.add_argument("--commit-every", type=int, default=1_000_000)
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--delay", type=float, default=0.0, help="seconds per batch")
    p.add_argument("--ignore-cancel", action="store_true")
    p.add_argument("--shutdown-timeout", type=float, default=30.0)
    p.add_argument("--instance-id", default=None, help="group.instance.id (static membership)")
    p.add_argument("--protocol", default=None)
    a = p.parse_args(argv)
    config = build_consumer_config(a.bootstrap, a.group, {"session.timeout.ms": "6000"}
                                   if a.protocol != "consumer" else None,
                                   group_instance_id=a.instance_id, group_protocol=a.protocol)
    handler = FileHandler(a.out, a.delay, a.ignore_cancel)
    engine = Engine(ConfluentConsumer(config), handler, EngineConfig(
        topics=[a.topic], batch_size=a.batch_size, poll_timeout=0.1,
        commit_interval=a.commit_interval, commit_every=a.commit_every,
        shutdown_timeout=a.shutdown_timeout))
    return engine.run()


if __name__ == "__main__":
    sys.exit(main())
