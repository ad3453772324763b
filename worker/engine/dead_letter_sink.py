"""The dead-letter sink port: where the engine writes a batch's dead letters before it stores the
batch's offsets. `worker.kafka.dead_letter_producer.DeadLetterProducer` writes them to a Kafka
topic; tests pass sinks of their own. The engine's rules around it (the guardrail, retrying a
failed write with consumption paused) are `worker.engine.dead_letter_policy`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from worker.errors import WorkerError
from worker.types import DeadLetter


class DeadLetterError(WorkerError):
    """A dead letter could not be written; the engine must not commit past its event."""


class DeadLetterDelivery(Protocol):
    """Letters on their way (`DeadLetterSink.submit`)."""

    def done(self) -> bool:
        """True once every letter is acknowledged, False while some are on their way (serving
        the sink's reports first, without waiting); DeadLetterError if one failed or the time
        ran out."""

    def wait(self, timeout: float) -> bool:
        """`done`, waiting up to `timeout` seconds for it."""


class DeadLetterSink(Protocol):
    #: How many letters were written shrunk so far (the original did not fit the topic).
    shrunk: int

    def send(self, letters: Sequence[DeadLetter]) -> None:
        """Write every letter and return once all are acknowledged; DeadLetterError if not."""

    def submit(self, letters: Sequence[DeadLetter]) -> DeadLetterDelivery:
        """Start writing the letters without waiting for their acknowledgement."""

    def serve(self) -> None:
        """Serve queued callbacks without waiting (called between batches)."""

    def close(self) -> None: ...
