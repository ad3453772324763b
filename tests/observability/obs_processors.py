"""Processors for the real-worker Prometheus test (--processors tests.observability.obs_processors):
they touch nothing, and fail now and then so that every outcome has a series."""

from __future__ import annotations

import asyncio
import zlib

from worker.events import Event
from worker.processors.api import Context, RetryPolicy, processor


def _bucket(event: Event, n: int) -> int:
    return zlib.crc32(event.id.encode()) % n


@processor("customer.voucher.**", "customer.rewarded.**", "customer.loyalty.**",
           name="obs_count")
def obs_count(event: Event, ctx: Context) -> None:
    """Does nothing: ok, or duplicate on redelivery."""


@processor("customer.voucher.**", name="obs_flaky",
           retry=RetryPolicy(max_attempts=2, initial_backoff=0.01, max_backoff=0.01))
def obs_flaky(event: Event, ctx: Context) -> None:
    """Fails the first attempt of 1 event in 5 (retried) and every attempt of 1 in 40."""
    if _bucket(event, 40) == 0 or (ctx.attempt == 1 and _bucket(event, 5) == 0):
        raise RuntimeError("obs_flaky: planned failure")


@processor("customer.order.**", "customer.segment.**", name="obs_async")
async def obs_async(event: Event, ctx: Context) -> None:
    """An async call of 20 ms (an external effect): in flight, queued, the oldest age."""
    await asyncio.sleep(0.02)
