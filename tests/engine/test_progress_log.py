"""The engine's periodic progress line: one INFO line per interval while events flow."""

from __future__ import annotations

from structlog.testing import capture_logs

from worker.engine.progress import ProgressLog


def test_progress_line_reports_events_and_rate_only_when_events_flowed() -> None:
    clock = [100.0]
    progress = ProgressLog(30.0, clock=lambda: clock[0])
    with capture_logs() as logs:
        progress.maybe_log(110.0, 600)  # before the interval: no line
        progress.maybe_log(130.0, 600, commits=2)
        progress.maybe_log(160.0, 600)  # nothing new: no line
    assert [e["event"] for e in logs] == ["progress"]
    assert logs[0]["events"] == 600 and logs[0]["events_per_s"] == 20.0
    assert logs[0]["commits"] == 2
    assert progress.next == 160.0 + 30.0
