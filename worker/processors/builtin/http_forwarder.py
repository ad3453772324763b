"""The HTTP forwarder as a built-in processor: POSTs each matching event to WORKER_FORWARD_URL,
signed, with its ledger key as Idempotency-Key (what it sends and how it retries:
worker.processors.forwarding).

Opt in by naming the module: `--processors worker.processors.builtin.http_forwarder` (it is not
loaded with the other built-ins, which need a SQL ledger; it needs none, and being async it
runs concurrently, ordered per Kafka message key). Its settings are read from the environment
when the module is imported; without WORKER_FORWARD_URL the worker stops at start-up saying so.
"""

from __future__ import annotations

import os

from worker.processors.api import RetryPolicy, processor
from worker.processors.forwarding import Forwarder, ForwardSettings

SETTINGS = ForwardSettings(os.environ)
forward = Forwarder(SETTINGS)
processor(*SETTINGS.patterns, name="http_forwarder", max_concurrency=SETTINGS.max_concurrency,
          retry=RetryPolicy(max_attempts=SETTINGS.attempts, initial_backoff=0.5,
                            max_backoff=30.0))(forward)
