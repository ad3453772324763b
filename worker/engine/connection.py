"""Whether the worker is connected to Kafka, and what a client error means for the run: a
refused login or certificate before the first assignment is a settings problem (stop and say
which settings); later it may heal (rotated credentials), so it is logged at most every 30 s
and the worker shows as disconnected meanwhile."""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog

from worker.engine.consumer_port import ClientError, ConsumerPort
from worker.engine.lifecycle import EXIT_BAD_SETTINGS, EXIT_ERROR
from worker.observer import WorkerObserver

log = structlog.get_logger(__name__)

PROBE_EVERY_S = 2.0
AUTH_LOG_EVERY_S = 30.0


def fatal_exit(error: ClientError) -> tuple[int, str]:
    """The exit code and sentence of a fatal client error: one the operator must fix (e.g. a
    duplicate group instance id) is a settings error."""
    if error.settings_problem is not None:
        return EXIT_BAD_SETTINGS, error.settings_problem
    return EXIT_ERROR, f"fatal Kafka client error: {error.text}"


class Connection:
    def __init__(self, consumer: ConsumerPort, observer: WorkerObserver, topic: str,
                 fail: Callable[[int, str], None]) -> None:
        self._consumer = consumer
        self._observer = observer
        self._topic = topic
        self._fail = fail
        self.connected = False  # until an assignment, a message or a probe proves it
        # Once the group gave us an assignment, the credentials and certificates worked.
        self.ever_assigned = False
        self._next_probe = 0.0
        self._next_auth_log = 0.0

    def set(self, connected: bool) -> None:
        if connected != self.connected:
            self.connected = connected
            self._observer.set_connected(connected)

    def assigned(self) -> None:
        self.ever_assigned = True
        self.set(True)

    def probe(self, now: float) -> None:
        """A member without partitions sees no assignment and no message, yet it is connected
        once it has joined the group and a broker answers; checked every PROBE_EVERY_S while it
        is not known to be (at start, and after all brokers went down)."""
        if self.connected or now < self._next_probe:
            return
        self._next_probe = now + PROBE_EVERY_S
        if self._consumer.member_id() and self._consumer.reachable(self._topic, 0.5):
            self.set(True)

    def on_error(self, error: ClientError) -> None:
        if error.fatal:
            self._fail(*fatal_exit(error))
            return
        if error.all_brokers_down:
            self.set(False)
        if error.settings_problem is None:
            log.warning("kafka client error", error=error.text)
            return
        if not self.ever_assigned:
            self._fail(EXIT_BAD_SETTINGS, error.settings_problem)
            return
        self.set(False)
        now = time.monotonic()
        if now >= self._next_auth_log:
            self._next_auth_log = now + AUTH_LOG_EVERY_S
            log.error("kafka refuses the worker's credentials or certificate; retrying",
                      problem=error.kind, error=error.settings_problem)
