"""The batches in flight and what runs the handler on them.

The engine's main thread owns the consumer; the handler (worker.types.BatchHandler) runs
elsewhere, so the main thread keeps serving rebalance callbacks and polls while a batch takes
long. `Batch` is what the two share: the messages, each partition's first and last offset, the
cancel flag and the outcome.

A handler without a window runs one batch at a time in the `batch-handler` thread. A handler
with a window (worker.types.BatchWindow: only async processors, on a ledger with concurrent
sessions) takes batches with `submit` and finishes them in the background while the engine
reads the next ones, up to `max_events_in_flight` events; the engine still finishes batches in
the order it read them (`InFlight.ready`), so offsets, dead letters and commits follow the same
rules as for one batch at a time."""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Collection, Iterator
from concurrent.futures import Future
from typing import Any

from worker.types import TP, BatchHandler, BatchResult


class Batch:
    __slots__ = ("cancel", "clean", "done", "error", "first", "last", "last_ts", "messages",
                 "result")


    def __init__(self, messages: list[Any], assigned: Collection[TP] | None = None) -> None:
        """One pass over `messages` for each partition's first and last offset. With
        `assigned`, the same pass checks that no message is an error event and that every
        partition is assigned, and sets `clean` to False (and stops) otherwise."""
        self.messages = messages
        self.clean = True
        self.first: dict[TP, int] = {}
        self.last: dict[TP, int] = {}
        self.last_ts: dict[TP, int] = {}
        # A partition's messages come in runs, so the dicts are touched per run.
        first, last, last_ts = self.first, self.last, self.last_ts
        prev: Any = None
        prev_t: str | None = None
        prev_p = -1
        for m in messages:
            if assigned is not None and m.error() is not None:
                self.clean = False
                return
            t = m.topic()
            p = m.partition()
            if p != prev_p or t != prev_t:
                if assigned is not None and (t, p) not in assigned:
                    self.clean = False
                    return
                if prev is not None:
                    last[(prev_t, prev_p)] = prev.offset()  # type: ignore[index]
                    last_ts[(prev_t, prev_p)] = prev.timestamp()[1]  # type: ignore[index]
                first.setdefault((t, p), m.offset())
                prev_t, prev_p = t, p
            prev = m
        if prev is not None:
            last[(prev_t, prev_p)] = prev.offset()  # type: ignore[index]
            last_ts[(prev_t, prev_p)] = prev.timestamp()[1]  # type: ignore[index]
        self.done = threading.Event()
        self.cancel = threading.Event()
        self.result: BatchResult | None = None
        self.error: BaseException | None = None

    def took(self, future: Future[BatchResult]) -> None:
        """The overlapping handler finished (a done-callback, on the handler's thread)."""
        try:
            self.result = future.result()
        except BaseException as exc:
            self.error = exc
        self.done.set()


class HandlerThread:
    """Runs `handler.handle` on each submitted batch, one at a time; sets `batch.done`."""

    def __init__(self, handler: BatchHandler) -> None:
        self._handle = handler.handle
        self._queue: queue.SimpleQueue[Batch | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="batch-handler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def submit(self, batch: Batch) -> None:
        self._queue.put(batch)

    def stop(self) -> None:
        self._queue.put(None)

    def _loop(self) -> None:
        handle = self._handle
        while True:
            batch = self._queue.get()
            if batch is None:
                return
            try:
                batch.result = handle(batch.messages, batch.cancel.is_set)
            except BaseException as exc:
                batch.error = exc
            finally:
                batch.done.set()


class InFlight:
    """The batches handed to the handler and not finished by the engine yet, oldest first."""

    def __init__(self, handler: BatchHandler, batch_size: int) -> None:
        self._serial = HandlerThread(handler)
        self._window = window = handler.window
        # events in flight before the engine waits: 0 = one batch at a time
        self.limit = 0 if window is None else max(window.max_events_in_flight, batch_size)
        self._max_pending = 0 if window is None else max(window.max_pending, batch_size)
        self._batches: deque[Batch] = deque()
        self.events = 0

    def __bool__(self) -> bool:
        return bool(self._batches)

    def __iter__(self) -> Iterator[Batch]:
        return iter(list(self._batches))

    @property
    def head(self) -> Batch:
        return self._batches[0]

    def start(self) -> None:
        self._serial.start()

    def stop(self) -> None:
        self._serial.stop()

    def submit(self, batch: Batch) -> None:
        self._batches.append(batch)
        self.events += len(batch.messages)
        if self._window is None:
            self._serial.submit(batch)
        else:
            self._window.submit(batch.messages, batch.cancel.is_set).add_done_callback(
                batch.took)

    @property
    def serial(self) -> bool:
        return self._window is None

    def full(self) -> bool:
        """Too much in flight to read more: for a plain handler, any batch; for one that
        overlaps, more events than `limit` in unfinished batches or more than `max_pending` of
        its work not done."""
        return bool(self._batches) and (
            self.events > self.limit
            or (self._window is not None and self._window.pending() > self._max_pending))

    def running(self) -> Batch | None:
        """The oldest batch the handler is not done with."""
        return next((b for b in self._batches if not b.done.is_set()), None)

    def pop(self) -> Batch:
        """The oldest batch leaves the queue (the engine finished it)."""
        batch = self._batches.popleft()
        self.events -= len(batch.messages)
        return batch

    def rereads(self) -> Collection[TP]:
        """The partitions whose parked events the handler would have read again now
        (worker.types.BatchWindow.rereads; none without a window)."""
        return () if self._window is None else self._window.rereads()

    def let_go(self, partitions: Collection[TP]) -> None:
        """Partitions revoked or lost: the handler forgets what it parked of them."""
        if self._window is not None:
            self._window.let_go(partitions)

    def cancel_all(self) -> None:
        for batch in self._batches:
            batch.cancel.set()

    def wait_all(self, timeout: float) -> bool:
        """Wait for the handler to be done with every batch; False if it is not in time."""
        deadline = time.monotonic() + timeout
        return all(b.done.wait(max(0.0, deadline - time.monotonic())) for b in self)
