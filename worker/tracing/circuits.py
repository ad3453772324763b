"""A span per state change of a destination's circuit (worker.processing.circuit): `circuit
<destination>`, with the destination, the new state and the one before as attributes; ERROR
when it opens. Circuits change seldom, so these are recorded at any sampling ratio (marked
`worker.record`), each the root of its own trace."""

from __future__ import annotations

from typing import Any

from worker.processing.circuit import Circuit, Circuits
from worker.tracing.config import active, tracer
from worker.tracing.names import Attr, SpanName
from worker.vocabulary import CircuitState


def trace_circuits(circuits: Circuits) -> None:
    """Make a span on each state change of `circuits`. Nothing when tracing is off."""
    if not active():
        return
    from opentelemetry.context import Context
    from opentelemetry.trace import StatusCode

    spans = tracer(__name__)
    before: dict[str, CircuitState] = {}

    def changed(circuit: Circuit) -> None:
        state = circuit.state
        was = before.get(circuit.name, CircuitState.CLOSED)
        before[circuit.name] = state
        attrs: dict[str, Any] = {Attr.RECORD: True, Attr.DESTINATION: circuit.name,
                                 Attr.STATE: str(state), Attr.STATE_BEFORE: str(was)}
        span = spans.start_span(f"{SpanName.CIRCUIT} {circuit.name}", context=Context(),
                                attributes=attrs)
        if state is CircuitState.OPEN:
            span.set_status(StatusCode.ERROR, "destination unavailable")
        span.end()

    circuits.listen(changed)
