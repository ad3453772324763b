"""A CONSUMER span `process <processor>` per processor call, the child of the context in the
record's headers (so one trace runs from the delivery to the effect). Each call is its own span:
a retried effect shows as several, the failed ones with the error, and each call after a failed
one carries a link to the failed call's span (worker.tracing.attempts). The span is current
while the processor runs, so the HTTP forwarder's request carries it on.

Bounded cost: the pipeline asks `choose` once per batch, before planning, which of its events
are sampled — the record's `traceparent` flag, or, without one, a draw against the ratio
(worker.tracing.sampling.root_ratio) — planning finds their work (a compare per message, no
pass over the work), and only those calls go through a traced twin of their processor (`trace`);
the others call the processor itself, with no span and no wrapper. The twin's span
is decided already, so it is made without the SDK's Span (worker.tracing.records, a fifth of the
cost); with a sampler of its own every call is an SDK span that sampler decides on. A call that
raises unsampled is recorded all the same (`failed`, from the pipeline's failure paths): a span
marked `worker.record` (sampled at any ratio), in the record's trace, at the moment it raised.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from worker.errors import describe
from worker.processors.api import Context, Processor
from worker.tracing import attempts
from worker.tracing.call_attributes import CallAttributes
from worker.tracing.config import root_ratio, tracer
from worker.tracing.names import Attr, SpanName
from worker.tracing.propagation import extract_kafka
from worker.tracing.spans import sampled_flag
from worker.types import Message

if TYPE_CHECKING:
    from worker.tracing.records import Started

Work = tuple[Message, Any, Processor, str, int]  # (worker.processing.planning.Work)


def _draws(n: int, share: float) -> Iterator[int]:
    """The positions among `n` that a draw of probability `share` each picks, drawing only
    the gaps between them (geometric)."""
    if share <= 0.0:
        return
    if share >= 1.0:
        yield from range(n)
        return
    scale = 1.0 / math.log1p(-share)
    i = -1
    while True:
        i += 1 + int(math.log(1.0 - random.random()) * scale)
        if i >= n:
            return
        yield i


class CallTracing:
    """The call spans of one pipeline's processors (in the pipeline's order)."""

    def __init__(self, processors: Sequence[Processor], group: str) -> None:
        from opentelemetry.trace import Link, SpanKind, StatusCode, use_span

        from worker.tracing.records import CallSpans

        self.group = group
        self.tracer = tracer(__name__)
        ratio = root_ratio()
        #: a root event is sampled when random() < cut; None: every call asks the sampler
        self.cut = ratio
        self._link, self._kind, self._error, self._use = (Link, SpanKind.CONSUMER,
                                                          StatusCode.ERROR, use_span)
        self._spans = CallSpans(__name__)
        self._attributes = {p.name: CallAttributes(p, group) for p in processors}
        self.twins = [self._twin(p) for p in processors]
        self._twin_funcs = frozenset(id(t.func) for t in self.twins)

    # -- per batch ----------------------------------------------------------------------------
    def choose(self, messages: Sequence[Message]) -> Sequence[int]:
        """The positions of the sampled events among `messages`, ascending. Per message: its
        headers read, the `traceparent` flag looked up when it has any; the draws for the
        messages without are made per sampled message only (the gaps between them drawn from
        the geometric distribution), so an unsampled batch of messages without headers costs
        one list of their headers. Their work is found by planning (worker.processing.planning:
        no pass over the work here)."""
        cut = self.cut
        if cut is None:  # a sampler of its own: every call is a span it decides on
            return range(len(messages))
        heads = [m.headers() for m in messages]
        if any(heads):
            rand = random.random
            return [i for i, h in enumerate(heads)
                    if ((flag := sampled_flag(h)) is None and rand() < cut) or flag]
        return list(_draws(len(messages), cut))

    def trace(self, work: list[Work], positions: Iterable[int]) -> None:
        """Put the traced twin in the place of the processor of the work at `positions`."""
        twins = self.twins
        for i in positions:
            msg, event, _, key, index = work[i]
            work[i] = (msg, event, twins[index], key, index)

    def failed(self, msg: Message, event: Any, proc: Processor, attempt: int,
               error: BaseException) -> None:
        """A call raised `error` (the pipeline's failure paths): record it unless its traced
        twin did."""
        if id(proc.func) in self._twin_funcs or not isinstance(error, Exception):
            return
        span = self._start(msg, event, proc, attempt, True)
        self._failed(msg, proc, span, error)
        span.end()

    # -- one call -----------------------------------------------------------------------------
    def _start(self, msg: Message, event: Any, proc: Processor, attempt: int,
               force: bool) -> Any:
        links = None
        if attempt > 1 and (before := attempts.take(attempts.key_of(msg, proc.name))):
            links = [self._link(before)]
        span = self.tracer.start_span(
            f"{SpanName.PROCESS} {proc.name}", context=extract_kafka(msg.headers()),
            kind=self._kind, links=links, attributes={Attr.RECORD: True} if force else None)
        if span.is_recording():
            span.set_attributes(self._attributes[proc.name].attributes(msg, event, attempt))
        return span

    def _failed(self, msg: Message, proc: Processor, span: Any, error: BaseException) -> None:
        span.record_exception(error)
        span.set_status(self._error, describe(error))
        attempts.failed(attempts.key_of(msg, proc.name), span.get_span_context())

    def _twin(self, proc: Processor) -> Processor:
        """`proc`, each call in a span (the call was chosen: sampled)."""
        wrapped = self._sdk_twin(proc) if self.cut is None else self._light_twin(proc)
        func: Any = proc.func
        if callable(getattr(func, "aclose", None)):
            wrapped.aclose = func.aclose  # type: ignore[attr-defined]  # closed on the loop
        return dataclasses.replace(proc, func=wrapped)

    def _light_twin(self, proc: Processor) -> Callable[..., Any]:
        """Each call a span of worker.tracing.records (chosen here: no sampler runs)."""
        func: Any = proc.func
        spans, name, link = self._spans, f"{SpanName.PROCESS} {proc.name}", self._link
        made = self._attributes[proc.name].make

        def begin(ctx: Context) -> tuple[Started, Sequence[Any]]:
            msg = ctx._msg
            links: Sequence[Any] = ()
            if ctx.attempt > 1 and (before := attempts.take(attempts.key_of(msg, proc.name))):
                links = (link(before),)
            return spans.start(msg.headers()), links

        def end(ctx: Context, event: Any, started: Started, links: Sequence[Any],
                error: Exception | None = None) -> None:
            msg = ctx._msg
            attrs, encoded = made(msg, event, ctx.attempt)
            spans.end(started, name, attrs, encoded, links, error)
            if error is not None:
                attempts.failed(attempts.key_of(msg, proc.name), started[0])

        if proc.is_async:
            async def call_async(event: Any, ctx: Context) -> None:
                started, links = begin(ctx)
                try:
                    await func(event, ctx)
                except Exception as exc:
                    end(ctx, event, started, links, exc)
                    raise
                except BaseException:  # (cancelled: ended, no error)
                    end(ctx, event, started, links)
                    raise
                end(ctx, event, started, links)

            return call_async

        def call(event: Any, ctx: Context) -> None:
            started, links = begin(ctx)
            try:
                func(event, ctx)
            except Exception as exc:
                end(ctx, event, started, links, exc)
                raise
            except BaseException:
                end(ctx, event, started, links)
                raise
            end(ctx, event, started, links)

        return call

    def _sdk_twin(self, proc: Processor) -> Callable[..., Any]:
        """Each call an SDK span the configured sampler decides on (a sampler of its own)."""
        func: Any = proc.func
        start, use = self._start, self._use

        def begin(ctx: Context) -> Any:
            return start(ctx._msg, ctx.event, proc, ctx.attempt, False)

        def failed(ctx: Context, span: Any, error: Exception) -> None:
            if span.is_recording():
                self._failed(ctx._msg, proc, span, error)
            else:  # (the sampler said no: recorded all the same)
                self.failed(ctx._msg, ctx.event, proc, ctx.attempt, error)

        def succeeded(ctx: Context) -> None:
            if ctx.attempt > 1:  # the failed call before it is linked: forget it
                attempts.take(attempts.key_of(ctx._msg, proc.name))

        if proc.is_async:
            async def call_async(event: Any, ctx: Context) -> None:
                span = begin(ctx)
                with use(span, end_on_exit=True, record_exception=False,
                         set_status_on_exception=False):
                    try:
                        await func(event, ctx)
                    except Exception as exc:
                        failed(ctx, span, exc)
                        raise
                succeeded(ctx)

            return call_async

        def call(event: Any, ctx: Context) -> None:
            span = begin(ctx)
            with use(span, end_on_exit=True, record_exception=False,
                     set_status_on_exception=False):
                try:
                    func(event, ctx)
                except Exception as exc:
                    failed(ctx, span, exc)
                    raise
            succeeded(ctx)

        return call
