"""librdkafka's own log lines, through structlog like every other line the worker writes.

Without a logger, librdkafka prints `%3|1795640663.695|FAIL|rdkafka#consumer-1| ...` lines to
stderr, unscrubbed, once per reconnect attempt. Given a logger, confluent-kafka hands them to it
from poll()/consume()/flush() (the calling thread, never librdkafka's own): here each becomes one
structlog line (`facility`, `client`), with secret values of the client's config scrubbed, and a
line repeated within `repeat_window` seconds is counted instead of written again (the next one
after the window says how many were held back).

While a broker is down (killed, restarting, its leadership moving to another), librdkafka writes a
line per reconnect attempt, each with other numbers in it ("after 0ms in state CONNECT"). Those
are one state change: `BrokerOutages` lets the first line of an outage through (the connection
was lost) and holds back the broker's reconnect failures until it has been up again (a line that
says "in state UP" starts the next outage).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

import structlog

from worker.kafka.secrets import scrub, secret_values

_MAX_TRACKED = 1000  # distinct lines remembered for the repeat window

# "127.0.0.1:9092/1: Connect to ipv4#... failed", or "GroupCoordinator: 127.0.0.1:9092: ..."
# (the consumer's logical connection to its coordinator), after an optional "[thrd:...]: "
_BROKER = re.compile(r"^(?:\[thrd:[^\]]*\]: )?((?:GroupCoordinator: )?\S+:\d+(?:/\w+)?): ")


def about_a_broker(text: str) -> bool:
    """Whether a librdkafka line or error is about one broker's connection."""
    return _BROKER.match(text) is not None


class BrokerOutages:
    """Which brokers' connections are known lost, from librdkafka's lines about them."""

    def __init__(self) -> None:
        self._down: dict[str, int] = {}  # broker -> lines held back since it went down

    def repeat(self, text: str) -> bool:
        """True for a line about a broker already known down that adds nothing (another
        reconnect attempt); False for the first line of an outage and for other lines."""
        match = _BROKER.match(text)
        if match is None:
            return False
        broker = match.group(1)
        if broker not in self._down or "in state UP" in text:
            self._down[broker] = 0  # the connection was up: this is a new state change
            return False
        self._down[broker] += 1
        return True

    def held(self, text: str) -> int:
        match = _BROKER.match(text)
        return self._down.get(match.group(1), 0) if match else 0


class LibrdkafkaLogger:
    """The `logger=` of a confluent-kafka client (it only calls `log(level, fmt, *args)`)."""

    def __init__(self, config: Mapping[str, Any], *, repeat_window: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._secrets = secret_values(config)
        self._window = repeat_window
        self._clock = clock
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}
        self._log = structlog.get_logger("librdkafka")
        self.outages = BrokerOutages()
        # librdkafka's debug lines come only when `debug` (contexts such as metadata,fetch) is
        # set: the operator asked for them, so they are logged at info, which the worker's log
        # level lets through.
        self._debug_asked = bool(config.get("debug"))

    def log(self, level: int, fmt: str, *args: Any) -> None:
        if len(args) == 3:  # confluent-kafka: ("%s [%s] %s", facility, client name, text)
            facility, client, text = (str(a) for a in args)
        else:
            facility, client, text = "", "", (fmt % args if args else fmt)
        text = scrub(text, self._secrets)
        if facility == "FAIL" and self.outages.repeat(text):
            return
        now = self._clock()
        key = (facility, text)
        since, held = self._seen.get(key, (None, 0))
        if since is not None and now - since < self._window:
            self._seen[key] = (since, held + 1)
            return
        if len(self._seen) >= _MAX_TRACKED:
            self._seen.clear()
        self._seen[key] = (now, 0)
        fields: dict[str, Any] = {"facility": facility, "client": client}
        if held:
            fields["repeated"] = held
        if level >= logging.ERROR:
            self._log.error(text, **fields)
        elif level >= logging.WARNING:
            self._log.warning(text, **fields)
        elif level >= logging.INFO or self._debug_asked:
            self._log.info(text, **fields)
        else:
            self._log.debug(text, **fields)
