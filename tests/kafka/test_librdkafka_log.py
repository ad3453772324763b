"""librdkafka's own log lines go through structlog, scrubbed and with repeats held back.

Real librdkafka: a consumer and a producer pointed at a port where nothing listens log
connection failures, once per reconnect attempt."""

from __future__ import annotations

import logging
import socket
import time
from typing import Any

import pytest
import structlog

from worker.kafka.clients import new_consumer as make_consumer
from worker.kafka.produce import ProduceError, produce_records
from worker.kafka.rdkafka_log import LibrdkafkaLogger

SECRET = "hunter2-very-secret"


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(port: int) -> dict[str, Any]:
    return {"bootstrap.servers": f"127.0.0.1:{port}", "group.id": "rdlog-test",
            "security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN",
            "sasl.username": "u", "sasl.password": SECRET,
            "reconnect.backoff.ms": 10, "reconnect.backoff.max.ms": 50}


def test_consumer_log_lines_are_structlog_lines_without_secrets(capfd: Any) -> None:
    with structlog.testing.capture_logs() as logs:
        consumer = make_consumer(_config(_dead_port()))
        consumer.subscribe(["rdlog-topic"])
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not any(
                e.get("facility") == "FAIL" for e in logs):
            consumer.consume(10, 0.2)
        for _ in range(10):  # more reconnect attempts: repeats are held back
            consumer.consume(10, 0.1)
        consumer.close()
    fails = [e for e in logs if e.get("facility") == "FAIL"]
    assert fails, logs
    assert fails[0]["log_level"] == "error"
    assert "Connect to" in fails[0]["event"] and fails[0]["client"].startswith("rdkafka#")
    assert len({e["event"] for e in fails}) == len(fails)  # each distinct line once
    assert SECRET not in repr(logs)
    err = capfd.readouterr().err
    assert "|FAIL|" not in err  # nothing raw on stderr any more


def test_producer_log_lines_too() -> None:
    with structlog.testing.capture_logs() as logs, pytest.raises(ProduceError):
        produce_records([(b"k", b"v")], "rdlog-topic", f"127.0.0.1:{_dead_port()}",
                        flush_timeout=2.0)
    assert any(e.get("facility") == "FAIL" for e in logs), logs


def test_repeats_are_counted_and_reported_after_the_window() -> None:
    now = [0.0]
    rd = LibrdkafkaLogger({"sasl.password": SECRET}, repeat_window=30, clock=lambda: now[0])
    with structlog.testing.capture_logs() as logs:
        for _ in range(5):
            rd.log(logging.ERROR, "%s [%s] %s", "FAIL", "rdkafka#consumer-1",
                   f"down (password {SECRET})")
        now[0] = 31
        rd.log(logging.ERROR, "%s [%s] %s", "FAIL", "rdkafka#consumer-1",
               f"down (password {SECRET})")
        rd.log(logging.INFO, "%s [%s] %s", "CONFWARN", "rdkafka#consumer-1", "a note")
    assert [(e["event"], e.get("repeated")) for e in logs] == [
        ("down (password ***)", None), ("down (password ***)", 4), ("a note", None)]
    assert [e["log_level"] for e in logs] == ["error", "error", "info"]


def test_a_broker_outage_is_one_line_not_one_per_reconnect_attempt() -> None:
    """The lines librdkafka wrote here while a cluster node was killed and restarted."""
    logger = LibrdkafkaLogger({})
    lost = ("[thrd:127.0.0.1:19194/2]: 127.0.0.1:19194/2: Disconnected: connection closed by "
            "peer: receive 0 after POLLIN (after {ms}ms in state UP)")
    retry = ("[thrd:127.0.0.1:19194/2]: 127.0.0.1:19194/2: Connect to ipv4#127.0.0.1:19194 "
             "failed: Connection refused (after 0ms in state CONNECT{more})")
    coordinator = ("[thrd:GroupCoordinator]: GroupCoordinator: 127.0.0.1:19094: Connect to "
                   "ipv4#127.0.0.1:19094 failed: Connection refused (after 0ms in state CONNECT)")
    other = ("[thrd:127.0.0.1:19192/1]: 127.0.0.1:19192/1: Connect to ipv4#127.0.0.1:19192 "
             "failed: Connection refused (after 0ms in state CONNECT)")
    with structlog.testing.capture_logs() as logs:
        logger.log(logging.INFO, "%s [%s] %s", "FAIL", "rdkafka#consumer-1", lost.format(ms=1))
        for n in range(20):
            more = f", {n} identical error(s) suppressed" if n else ""
            logger.log(logging.ERROR, "%s [%s] %s", "FAIL", "rdkafka#consumer-1",
                       retry.format(more=more))
        logger.log(logging.ERROR, "%s [%s] %s", "FAIL", "rdkafka#consumer-1", other)
        for _ in range(3):
            logger.log(logging.ERROR, "%s [%s] %s", "FAIL", "rdkafka#consumer-1", coordinator)
        # back up, then lost again: the next outage's first line
        logger.log(logging.INFO, "%s [%s] %s", "FAIL", "rdkafka#consumer-1", lost.format(ms=99))
    texts = [entry["event"] for entry in logs]
    assert texts == [lost.format(ms=1), other, coordinator, lost.format(ms=99)]


def test_debug_lines_asked_for_with_the_debug_property_are_logged_at_info() -> None:
    """`--kafka-config debug=metadata,fetch` (librdkafka's debug contexts): its lines come at
    syslog level 7, below the worker's log level, and would be lost; asked for, they show."""
    line = ("[thrd:main]: Topic t [3]: leader 2 -> 1 (epoch 7)", "METADATA")
    with structlog.testing.capture_logs() as logs:
        LibrdkafkaLogger({"debug": "metadata,fetch"}).log(
            logging.DEBUG, "%s [%s] %s", line[1], "rdkafka#consumer-1", line[0])
        LibrdkafkaLogger({}).log(logging.DEBUG, "%s [%s] %s", line[1], "rdkafka#consumer-1",
                                 line[0])
    assert [(e["log_level"], e["facility"]) for e in logs] == [("info", "METADATA"),
                                                                ("debug", "METADATA")]
    # and from a real client: a consumer with debug=broker logs its broker state changes
    with structlog.testing.capture_logs() as logs:
        consumer = make_consumer({**_config(_dead_port()), "debug": "broker"})
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(
                e.get("facility") == "STATE" for e in logs):
            consumer.poll(0.2)
        consumer.close()
    states = [e for e in logs if e.get("facility") == "STATE"]
    assert states and states[0]["log_level"] == "info", [e.get("facility") for e in logs][:20]
