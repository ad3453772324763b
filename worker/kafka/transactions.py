"""The transactional producer of exactly-once mode: the engine's transaction port
(worker.engine.transactions.TransactionPort) and the pipeline's output sink at once, so the
records processors emit are produced inside the transaction the engine began for their batch.

transactional.id: one per worker, `<group>.<member name>` (`transactional_id`). With
--group-instance-id the member name is that id, so a restarted worker keeps its
transactional.id: `init_transactions` aborts what its killed predecessor left open at once.
Without it the name is made once per process (host name + a random part): a crashed worker's
open transaction then holds read_committed consumers of the output (and the next owner's offset
fetch) until `transaction.timeout.ms` ends it. Since KIP-447 a zombie is fenced by the consumer
group's generation (send_offsets_to_transaction with the consumer's group metadata), not by the
transactional.id, so ids need not follow partitions.

Errors: a retriable one (a timeout) is retried within the operation bound; one that requires
an abort aborts; a fatal one (this producer fenced by another with the same transactional.id)
drops the producer, and the next `begin` makes a new one (init_transactions again).

A call that ignores its timeout: librdkafka's send_offsets_to_transaction can block for as long as
the group's coordinator is down (librdkafka issues #5456 and #5511, open in 2.16: a coordinator
request's timeout is never checked, and a killed broker that left the metadata stays cached as
the coordinator). Each blocking transactional call therefore runs on a thread of its producer's
(`_CallThread`); one that has not returned WEDGED_GRACE_S after its own timeout gets the
producer abandoned on that thread (it is dropped whenever the call returns) and the batch's
transaction fails like any other. The next `begin` makes a new producer with the same
transactional.id, whose init_transactions fences the old one and aborts its open transaction.
"""

from __future__ import annotations

import functools
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import structlog
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from worker.engine.transactions import TransactionFailed
from worker.kafka.clients import new_producer
from worker.kafka.emitted_marks import KafkaEmittedMarks
from worker.kafka.output_producer import OutputProducer
from worker.types import TP

log = structlog.get_logger(__name__)

#: Bound of one transactional call (init, send offsets, commit, abort), retries included.
TRANSACTION_OP_TIMEOUT_S = 30.0
#: transaction.timeout.ms: the broker aborts a transaction open longer (a batch that long is
#: aborted and read again; a killed worker's open transaction ends after it at the latest).
DEFAULT_TRANSACTION_TIMEOUT_S = 60.0
#: How long past its own timeout a transactional call may block before its producer is
#: abandoned (see the module's docstring).
WEDGED_GRACE_S = 5.0


class CallWedged(Exception):
    """A transactional call did not return within its timeout and the grace after it."""


class _CallThread:
    """Runs one producer's blocking transactional calls, one at a time, on a daemon thread of
    their own, so that a call which ignores its timeout blocks that thread and not the worker.
    Once `retired` (its call wedged), the thread drops the producer when the call returns."""

    def __init__(self, producer: Any, name: str) -> None:
        self.producer = producer
        self._calls: queue.SimpleQueue[tuple[Callable[[], Any], queue.SimpleQueue[Any]] | None] \
            = queue.SimpleQueue()
        self._retired = False
        threading.Thread(target=self._serve, name=name, daemon=True).start()

    def run(self, call: Callable[[], Any], wait: float) -> Any:
        """`call`'s result (or its exception), or CallWedged after `wait` seconds."""
        answer: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._calls.put((call, answer))
        try:
            ok, value = answer.get(timeout=wait)
        except queue.Empty:
            raise CallWedged from None
        if ok:
            return value
        raise value

    def retire(self) -> None:
        """Drop the producer once the call in progress returns, and end the thread."""
        self._retired = True
        self._calls.put(None)

    def _serve(self) -> None:
        while (item := self._calls.get()) is not None and not self._retired:
            call, answer = item
            try:
                answer.put((True, call()))
            except BaseException as exc:  # handed to the caller, raised there
                answer.put((False, exc))
        producer, self.producer = self.producer, None
        _drop(producer)  # (only retire ends the loop)


def transactional_id(group: str, group_instance_id: str | None) -> str:
    """The worker's transactional.id (see the module's docstring)."""
    member = group_instance_id or f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
    return f"{group}.{member}"


class TransactionalProducer(OutputProducer):
    def __init__(self, config: Mapping[str, Any], transactional_id: str, *,
                 marks: KafkaEmittedMarks | None = None,
                 transaction_timeout: float = DEFAULT_TRANSACTION_TIMEOUT_S,
                 op_timeout: float = TRANSACTION_OP_TIMEOUT_S) -> None:
        """`marks`: the emitted marks written in its transactions (committed or dropped with
        them); an operator's transaction.timeout.ms (--kafka-config) is kept."""
        conf = dict(config)
        conf["transactional.id"] = transactional_id
        conf.setdefault("transaction.timeout.ms", int(transaction_timeout * 1000))
        # a record must be written or failed before the transaction's end
        conf["message.timeout.ms"] = min(int(conf.get("message.timeout.ms", 30_000)),
                                         int(conf["transaction.timeout.ms"]))
        super().__init__(conf, what="transactional producer")
        self.transactional_id = transactional_id
        self.transaction_timeout = int(conf["transaction.timeout.ms"]) / 1000
        self._marks = marks
        self._op_timeout = op_timeout
        self._in_transaction = False
        self._calls: _CallThread | None = None

    def _make(self) -> Any:
        producer = new_producer(self._config, self._what)
        calls = _CallThread(producer, "transactional-calls")
        try:
            calls.run(lambda: producer.init_transactions(self._op_timeout),
                      self._op_timeout + WEDGED_GRACE_S)
        except KafkaException as exc:
            calls.retire()
            raise TransactionFailed(f"init_transactions: {_text(exc)}",
                                    fenced=_fatal(exc)) from None
        except CallWedged:
            calls.retire()
            raise TransactionFailed(f"init_transactions did not return within "
                                    f"{self._op_timeout + WEDGED_GRACE_S:.0f}s") from None
        self._calls = calls
        log.info("transactional producer ready", transactional_id=self.transactional_id)
        if self._marks is not None:
            self._marks.producer = producer
        return producer

    # -- the transaction port ------------------------------------------------------------------
    def begin(self) -> None:
        try:
            self.client.begin_transaction()
        except KafkaException as exc:
            self._after_error(exc)
            raise TransactionFailed(f"begin_transaction: {_text(exc)}",
                                    fenced=_fatal(exc)) from None
        self._in_transaction = True

    def commit(self, offsets: Sequence[tuple[TP, int]], group_metadata: Any) -> None:
        producer = self.client
        tps = [TopicPartition(t, p, o) for (t, p), o in offsets]
        try:
            self._retrying(lambda t: producer.send_offsets_to_transaction(tps, group_metadata,
                                                                          t))
            self._retrying(producer.commit_transaction)
        except KafkaException as exc:
            fenced = _fatal(exc)
            self.abort()
            raise TransactionFailed(_text(exc), fenced=fenced) from None
        except CallWedged:
            self._abandon("commit")
            raise TransactionFailed("a transactional call blocked past its timeout; the "
                                    "producer was replaced") from None
        self._in_transaction = False
        if self._marks is not None:
            self._marks.committed()

    def abort(self) -> None:
        if self._marks is not None:
            self._marks.aborted()
        if not self._in_transaction or self._producer is None:
            return
        self._in_transaction = False
        try:
            self._retrying(self._producer.abort_transaction)
        except KafkaException as exc:
            if _fatal(exc):
                self._after_error(exc)  # (its one log line)
            else:
                log.warning("abort_transaction failed", error=_text(exc))
        except CallWedged:
            self._abandon("abort")

    # -- errors --------------------------------------------------------------------------------
    def _retrying(self, call: Callable[[float], Any]) -> None:
        """`call(timeout)` on the producer's call thread, retried while its error is retriable,
        within the operation bound; CallWedged when one call blocks past its timeout."""
        deadline = time.monotonic() + self._op_timeout
        calls = self._calls
        assert calls is not None  # made with the producer
        while True:
            timeout = max(0.1, min(10.0, deadline - time.monotonic()))
            try:
                calls.run(functools.partial(call, timeout), timeout + WEDGED_GRACE_S)
                return
            except KafkaException as exc:
                err = exc.args[0] if exc.args else None
                if (isinstance(err, KafkaError) and err.retriable()
                        and time.monotonic() < deadline):
                    continue
                raise

    def _after_error(self, exc: KafkaException) -> None:
        """A fatal error (fenced): drop this producer; the next begin makes a new one."""
        if _fatal(exc):
            log.error("transactional producer fenced or failed fatally; starting a new one",
                      error=_text(exc), transactional_id=self.transactional_id)
            self._in_transaction = False
            self._reset()

    def _abandon(self, what: str) -> None:
        """A call of this producer blocked past its timeout (see the module's docstring): leave
        the producer to its call thread and make a new one at the next begin."""
        log.error("a transactional call blocked past its timeout (librdkafka while a "
                  "coordinator moves); the transaction is given up and the producer replaced",
                  during=what, transactional_id=self.transactional_id,
                  timeout_s=self._op_timeout)
        self._in_transaction = False
        self._reset()  # (its call thread drops the producer once the call returns)

    def _reset(self) -> None:
        old, self._producer = self._producer, None
        if self._marks is not None:
            self._marks.aborted()
            self._marks.producer = None
        calls, self._calls = self._calls, None
        if calls is not None:
            calls.retire()  # (idle: it drops the producer at once)
        elif old is not None:
            _drop(old)

    def close(self, timeout: float = 10.0) -> None:
        super().close(timeout)
        if self._calls is not None:
            self._calls.retire()
            self._calls = None


def _drop(producer: Any) -> None:
    """Purge and drop a producer that failed or was abandoned."""
    if producer is None:
        return
    try:
        producer.purge()
        producer.flush(0)
    except Exception as exc:  # a fatal client may refuse; it is dropped all the same
        log.debug("dropping the failed producer", error=str(exc))


def _fatal(exc: KafkaException) -> bool:
    err = exc.args[0] if exc.args else None
    return isinstance(err, KafkaError) and bool(err.fatal())


def _text(exc: KafkaException) -> str:
    err = exc.args[0] if exc.args else None
    return err.str() if isinstance(err, KafkaError) else str(exc)
