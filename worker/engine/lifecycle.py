"""How a worker process starts and ends around the engine's loop: exit codes, SIGTERM/SIGINT
(graceful, then at once), the cyclic GC's tuning for the run, and the exit summary line."""

from __future__ import annotations

import gc
import os
import signal
import sys
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from types import FrameType
from typing import Any

from worker.observer import WorkerObserver
from worker.types import BatchResult


class ExitCode(IntEnum):
    OK = 0
    ERROR = 1
    BAD_SETTINGS = 2
    FATAL_PROCESSING = 3
    GUARDRAIL = 4
    SHUTDOWN_TIMEOUT = 5


EXIT_OK = ExitCode.OK
EXIT_ERROR = ExitCode.ERROR
EXIT_BAD_SETTINGS = ExitCode.BAD_SETTINGS
EXIT_FATAL_PROCESSING = ExitCode.FATAL_PROCESSING
EXIT_GUARDRAIL = ExitCode.GUARDRAIL
EXIT_SHUTDOWN_TIMEOUT = ExitCode.SHUTDOWN_TIMEOUT

_EXIT_MESSAGES: dict[int, str] = {
    EXIT_OK: "ok",
    EXIT_ERROR: "error",
    EXIT_BAD_SETTINGS: "bad settings",
    EXIT_FATAL_PROCESSING: "a processor failed with on_failure='stop'",
    EXIT_GUARDRAIL: "the DLQ guardrail tripped",
    EXIT_SHUTDOWN_TIMEOUT: "graceful shutdown timed out",
}


def default_exit_message(code: int) -> str:
    return _EXIT_MESSAGES.get(code, "killed by a signal")


def hard_exit(code: int) -> None:
    """Exit now, without a commit or a clean leave (the restart resumes from the commits)."""
    try:
        sys.stderr.flush()
        sys.stdout.flush()
    finally:
        os._exit(code)


def tune_gc(gen0: int | None) -> Callable[[], None]:
    """Freeze what startup allocated (modules, config: never garbage, no need to walk it on
    every full collection) and raise the generation-0 threshold to `gen0`; returns the undo."""
    if gen0 is None:
        return lambda: None
    before = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(max(gen0, before[0]), *before[1:])

    def restore() -> None:
        gc.set_threshold(*before)
        gc.unfreeze()

    return restore


class Signals:
    """SIGTERM/SIGINT: the first asks for a graceful stop bounded by `shutdown_timeout` (after
    which the process exits with EXIT_SHUTDOWN_TIMEOUT), the second exits at once."""

    def __init__(self, stop: Callable[[str], None], shutdown_timeout: float) -> None:
        self._stop = stop
        self._timeout = shutdown_timeout
        self._count = 0
        self._timer: threading.Timer | None = None
        self._old: dict[int, Any] = {}

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._old[sig] = signal.signal(sig, self._on_signal)

    def restore(self) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
        self._old.clear()
        if self._timer is not None:
            self._timer.cancel()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._count += 1
        name = signal.Signals(signum).name
        if self._count > 1:
            sys.stderr.write(f"activity-worker: second {name}; exiting at once without "
                             "committing\n")
            hard_exit(128 + signum)
        sys.stderr.write(f"activity-worker: {name} received; finishing the in-flight batch, "
                         f"committing and exiting (within {self._timeout:.0f}s; send it again "
                         "to exit at once)\n")
        self._stop(name)
        self._timer = threading.Timer(self._timeout, _shutdown_overdue)
        self._timer.daemon = True
        self._timer.start()


def _shutdown_overdue() -> None:
    sys.stderr.write("activity-worker: graceful shutdown exceeded --shutdown-timeout; "
                     "exiting without a final commit\n")
    hard_exit(EXIT_SHUTDOWN_TIMEOUT)


class OutcomeTotals(WorkerObserver):
    """Outcome and dead-letter-reason totals for the exit summary (one update per batch)."""

    def __init__(self) -> None:
        self.outcomes: Counter[str] = Counter()
        self.dead_letters: Counter[str] = Counter()

    def batch_finished(self, result: BatchResult) -> None:
        if result.completed:
            for (_proc, outcome), n in result.stats.outcomes.items():
                self.outcomes[outcome] += n
            self.dead_letters.update(result.stats.dead_letters)

    def fields(self) -> dict[str, Any]:
        return {"outcomes": dict(self.outcomes), "dead_letter_reasons": dict(self.dead_letters)}


@dataclass(slots=True)
class RunCounts:
    """The engine's totals for the exit summary line."""

    events: int = 0
    dead_lettered_events: int = 0
    dead_letters: int = 0
    cancelled_batches: int = 0
    commits: int = 0

    def fields(self, seconds: float) -> dict[str, Any]:
        return {
            "events": self.events,
            "ok_events": self.events - self.dead_lettered_events,
            "dead_lettered_events": self.dead_lettered_events,
            "dead_letters": self.dead_letters,
            "cancelled_batches": self.cancelled_batches,
            "commits": self.commits,
            "seconds": round(seconds, 3),
            "events_per_s": round(self.events / seconds if seconds > 0 else 0.0, 1),
        }
