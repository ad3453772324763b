"""The group view the console shows (worker.group_status), fetched from the broker at most
every `max_age` seconds and only while someone looks: a request that finds it stale starts one
refresh on a thread of its own and is answered at once with what is cached, so a slow or absent
broker never holds a request (or the probes behind it)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from worker.group_status import GroupStatus

__all__ = ["DEFAULT_MAX_AGE_SECONDS", "CachedGroup", "GroupViewCache"]

DEFAULT_MAX_AGE_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class CachedGroup:
    status: GroupStatus | None
    error: str | None        # why the last refresh failed (a sentence), if it did
    age_seconds: float | None  # since the status shown was fetched


class GroupViewCache:
    def __init__(self, fetch: Callable[[], GroupStatus], close: Callable[[], None] = lambda: None,
                 max_age: float = DEFAULT_MAX_AGE_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._fetch, self._close, self._max_age, self._clock = fetch, close, max_age, clock
        self._lock = threading.Lock()
        self._status: GroupStatus | None = None
        self._fetched_at: float | None = None
        self._tried_at: float | None = None
        self._error: str | None = None
        self._refreshing: threading.Thread | None = None

    def get(self) -> CachedGroup:
        now = self._clock()
        with self._lock:
            stale = self._tried_at is None or now - self._tried_at >= self._max_age
            if stale and self._refreshing is None:
                self._tried_at = now
                self._refreshing = threading.Thread(target=self._refresh, daemon=True,
                                                    name="console-group-view")
                self._refreshing.start()
            age = None if self._fetched_at is None else round(now - self._fetched_at, 1)
            return CachedGroup(self._status, self._error, age)

    def _refresh(self) -> None:
        try:
            status, error = self._fetch(), None
        except Exception as exc:  # shown on the page; the worker goes on
            status, error = None, f"{type(exc).__name__}: {exc}"
        with self._lock:
            if status is not None:
                self._status, self._fetched_at = status, self._clock()
            self._error = error
            self._refreshing = None

    def close(self) -> None:
        thread = self._refreshing
        if thread is not None:
            thread.join(10)
        self._close()
