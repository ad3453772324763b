"""The pipeline's tracing port, implemented by worker.tracing.batches: spans for one batch and
its ledger calls (claim, mark done, release, commit); which events' processor calls are traced
(`choose`, before planning: their work gets a traced twin of the processor, `trace`, found
by planning without a pass over the work); and the failed calls of the others
(`failed`, recorded at any sampling ratio). The pipeline holds none when tracing is off (one
`is None` test per batch and per failure, nothing per event); `begin` answers None for a batch
the sampler leaves out."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from worker.ledger.base import LedgerSession
from worker.processors.api import Processor
from worker.types import Message

#: worker.processing.planning.Work (not imported: planning knows the batch run, which knows
#: this port)
Work = tuple[Message, Any, Processor, str, int]


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

    def choose(self, messages: Sequence[Message]) -> Sequence[int]:
        """The positions (ascending) of the sampled events among `messages`: their work gets a
        traced twin of its processor (`trace`)."""
        ...

    def trace(self, work: list[Work], positions: Iterable[int]) -> None:
        """Give the work at `positions` (the sampled events') a traced twin of its processor,
        in place."""
        ...

    def failed(self, msg: Message, event: Any, proc: Processor, attempt: int,
               error: BaseException) -> None:
        """Call `attempt` of `proc` on the event of `msg` raised `error`."""
        ...
