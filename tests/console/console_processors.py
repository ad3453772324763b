"""Processors for the console tests (--processors tests.console.console_processors).

`console_gate` holds every event of partition CONSOLE_GATE_PARTITION while the file
CONSOLE_GATE_FILE exists (an async call waiting, so the worker keeps polling and its other
partitions flow): that partition's committed offset stays put and the group lags there.
`console_flaky` fails every call on customer.order.* events (retried, then dead-lettered), so
the console has a processor failure reason to show."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from worker.events import Event
from worker.processors.api import Context, RetryPolicy, processor


@processor("**", name="console_gate", timeout=None)
async def console_gate(event: Event, ctx: Context) -> None:
    gate = os.environ.get("CONSOLE_GATE_FILE")
    if gate and ctx.partition == int(os.environ.get("CONSOLE_GATE_PARTITION", "-1")):
        while Path(gate).exists():
            await asyncio.sleep(0.1)


@processor("customer.order.**", name="console_flaky",
           retry=RetryPolicy(max_attempts=2, initial_backoff=0.01, max_backoff=0.01))
def console_flaky(event: Event, ctx: Context) -> None:
    raise RuntimeError("console_flaky: planned failure")
