"""configure_logging: JSON lines off a terminal, console on one, bound context on each line,
stdlib logging through the same chain, idempotent."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from worker.observability.logging import configure_logging


class TtyStream(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    root = logging.getLogger()
    for h in [h for h in root.handlers if h.get_name() == "activity-worker"]:
        root.removeHandler(h)


def lines(stream: io.StringIO) -> list[str]:
    return [x for x in stream.getvalue().splitlines() if x.strip()]


def test_json_lines_with_bound_context_when_not_a_tty() -> None:
    out = io.StringIO()
    configure_logging("INFO", "auto", stream=out)
    log = structlog.get_logger()
    with structlog.contextvars.bound_contextvars(partition=3, group_id="activity-worker"):
        log.info("batch_done", size=500, first_offset=10, last_offset=509)
    log.debug("hidden")  # below INFO
    (line,) = lines(out)
    doc = json.loads(line)
    assert doc["event"] == "batch_done" and doc["level"] == "info"
    assert doc["partition"] == 3 and doc["group_id"] == "activity-worker"
    assert doc["size"] == 500 and doc["timestamp"].endswith("Z")


def test_exceptions_are_rendered_into_the_json_line() -> None:
    out = io.StringIO()
    configure_logging(fmt="json", stream=out)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        structlog.get_logger().exception("processor_failed", processor="p")
    doc = json.loads(lines(out)[0])
    assert doc["level"] == "error" and "RuntimeError: boom" in doc["exception"]


def test_console_renderer_on_a_tty() -> None:
    out = TtyStream()
    configure_logging("INFO", "auto", stream=out)
    structlog.get_logger().info("partitions_assigned", count=3)
    (line,) = lines(out)
    assert "partitions_assigned" in line and "count" in line
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)


def test_stdlib_logging_goes_through_the_same_chain_once_after_reconfiguring() -> None:
    out = io.StringIO()
    configure_logging(fmt="json", stream=out)
    configure_logging(fmt="json", stream=out)  # idempotent: no second handler
    logging.getLogger("some.library").warning("careful %s", "now")
    (line,) = lines(out)
    doc = json.loads(line)
    assert doc["event"] == "careful now" and doc["level"] == "warning"
    assert doc["logger"] == "some.library"


def test_level_applies_and_bad_arguments_are_refused() -> None:
    out = io.StringIO()
    configure_logging("warning", "json", stream=out)
    structlog.get_logger().info("dropped")
    structlog.get_logger().warning("kept")
    assert [json.loads(x)["event"] for x in lines(out)] == ["kept"]
    with pytest.raises(ValueError, match="log level"):
        configure_logging("LOUD")
    with pytest.raises(ValueError, match="log format"):
        configure_logging(fmt="xml")


def test_capture_logs_still_works_after_configuring() -> None:
    configure_logging(fmt="json", stream=io.StringIO())
    log = structlog.get_logger()
    with structlog.testing.capture_logs() as captured:
        log.info("rebalance", kind="revoked")
    assert captured == [{"event": "rebalance", "kind": "revoked", "log_level": "info"}]
