"""Bounded cost: the standard sampler (OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG, default
parent-based always-on) wrapped so that failures and dead letters are recorded at any ratio.

The worker marks such a span with the `worker.record` attribute when it starts it; the wrapper
samples a marked span whatever the ratio or the parent's flag says (and drops the marker from
the span's attributes). A failed call in a trace that was not sampled thus shows in that same
trace (its trace id), under the unsampled parent's span id.

`root_ratio` tells the worker's per-call fast path (worker.tracing.spans) what the sampler would
do to a root span, so that an unsampled call costs no span at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
    _get_from_env_or_default,
)
from opentelemetry.trace import Link, SpanKind, TraceState, get_current_span
from opentelemetry.util.types import Attributes

from worker.tracing.names import Attr

RECORD = Attr.RECORD.value


class RecordFailures(Sampler):
    """`base`, except that a span started with the `worker.record` attribute is sampled."""

    def __init__(self, base: Sampler) -> None:
        self.base = base

    def should_sample(self, parent_context: Context | None, trace_id: int, name: str,
                      kind: SpanKind | None = None, attributes: Attributes = None,
                      links: Sequence[Link] | None = None,
                      trace_state: TraceState | None = None) -> SamplingResult:
        if attributes and RECORD in attributes:
            kept = {k: v for k, v in attributes.items() if k != RECORD}
            parent = get_current_span(parent_context).get_span_context()
            return SamplingResult(Decision.RECORD_AND_SAMPLE, kept,
                                  parent.trace_state if parent.is_valid else None)
        return self.base.should_sample(parent_context, trace_id, name, kind, attributes, links,
                                       trace_state)

    def get_description(self) -> str:
        return f"RecordFailures{{{self.base.get_description()}}}"


def from_environment() -> RecordFailures:
    """The sampler the standard variables ask for, recording failures at any ratio."""
    return RecordFailures(_get_from_env_or_default())


def root_ratio(sampler: Any) -> float | None:
    """The share of root spans `sampler` samples, when it is one of the standard ratio
    samplers (always on/off, trace-id ratio, parent-based of those) and follows a remote
    parent's flag; None for any other (then every call starts a span and the sampler
    decides)."""
    if isinstance(sampler, RecordFailures):
        sampler = sampler.base
    if isinstance(sampler, ParentBased):
        if (sampler._remote_parent_sampled is not ALWAYS_ON
                or sampler._remote_parent_not_sampled is not ALWAYS_OFF):
            return None
        root = sampler._root
    else:
        return None  # a sampler that ignores the parent's flag: no fast path
    if root is ALWAYS_ON:
        return 1.0
    if root is ALWAYS_OFF:
        return 0.0
    if isinstance(root, TraceIdRatioBased):
        return root.rate
    return None
