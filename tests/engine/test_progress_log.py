"""The engine's periodic progress line: one INFO line per interval while events flow."""

from __future__ import annotations

from typing import Any

from structlog.testing import capture_logs

from worker.kafka.engine import Engine, EngineConfig
from worker.types import BatchResult


class _Handler:
    def handle(self, messages: Any, cancelled: Any) -> BatchResult:
        return BatchResult(completed=True)


def test_progress_line_reports_events_and_rate_only_when_events_flowed() -> None:
    engine = Engine({"bootstrap.servers": "127.0.0.1:1", "group.id": "g"}, _Handler(),
                    EngineConfig(topics=["t"], progress_interval=30.0, install_signals=False))
    start, _ = engine._progress_mark
    engine.events = 600
    with capture_logs() as logs:
        engine._log_progress(start + 2.0)
        engine._log_progress(start + 4.0)  # nothing new: no line
    assert [e["event"] for e in logs] == ["progress"]
    assert logs[0]["events"] == 600 and logs[0]["events_per_s"] == 300.0
    assert engine._next_progress == start + 4.0 + 30.0
