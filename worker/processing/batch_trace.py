"""The pipeline's tracing port: spans for one batch and its ledger calls (claim, mark done,
release, commit), implemented by worker.tracing.batches. The pipeline holds none when tracing
is off (one `is None` test per batch, nothing per event), and `begin` answers None for a batch
the sampler leaves out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from worker.ledger.base import LedgerSession
from worker.types import Message


class BatchSpans(Protocol):
    """One sampled batch's spans."""

    def session(self, session: LedgerSession) -> LedgerSession:
        """`session`, each of its calls in a span of the batch's."""
        ...

    def end(self, completed: bool, error: BaseException | None = None) -> None:
        """The batch is over: completed, cancelled (read again), or failed with `error`."""
        ...


class BatchTracer(Protocol):
    def begin(self, messages: Sequence[Message]) -> BatchSpans | None:
        """The batch's spans, or None when it is not sampled."""
        ...
