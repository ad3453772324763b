"""The in-flight batch and the thread that runs the handler on it.

The engine's main thread owns the consumer; the handler (worker.pipeline.Pipeline) runs on one
batch at a time in the `batch-handler` thread, so the main thread keeps serving rebalance
callbacks and polls while a batch takes long. `Batch` is what the two share: the messages,
each partition's first and last offset, the cancel flag and the outcome."""

from __future__ import annotations

import queue
import threading
from collections.abc import Collection
from typing import Any

from worker.types import BatchHandler, BatchResult

TP = tuple[str, int]


class Batch:
    __slots__ = ("cancel", "clean", "done", "error", "finalized", "first", "last", "last_ts",
                 "messages", "result")

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
        self.finalized = False


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
