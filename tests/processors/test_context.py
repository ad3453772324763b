"""Context: the positional constructor (docs, tests) and the pipeline's lazy one agree."""

from __future__ import annotations

from devtools.generate import generate_events
from worker.events import decode_event
from worker.processors.api import Context, Processor
from worker.types import LocalMessage


def _proc() -> Processor:
    return Processor(name="p", patterns=("customer.**",), func=lambda e, c: None)


def test_positional_and_of_message_expose_the_same_fields() -> None:
    raw = next(iter(generate_events(1, seed=3)))
    event = decode_event(raw)
    msg = LocalMessage(raw, "customer-activity", 4, 1234, None, None, 0)
    proc = _proc()
    eager = Context(proc, event, "customer-activity", 4, 1234, "tx", 2)
    lazy = Context.of_message(proc, event, msg, "tx", 2)
    for ctx in (eager, lazy):
        assert (ctx.topic, ctx.partition, ctx.offset) == ("customer-activity", 4, 1234)
        assert (ctx.processor, ctx.event, ctx.transaction, ctx.attempt) == (proc, event, "tx", 2)
        assert ctx.settings == {}
    assert Context.of_message(proc, event, msg, None).attempt == 1


def test_lazy_context_log_is_bound_to_the_message_position() -> None:
    raw = next(iter(generate_events(1, seed=4)))
    event = decode_event(raw)
    ctx = Context.of_message(_proc(), event, LocalMessage(raw, "t", 2, 77, None, None, 0), None)
    bound = ctx.log._context
    assert (bound["topic"], bound["partition"], bound["offset"]) == ("t", 2, 77)
    assert bound["event_id"] == event.id
