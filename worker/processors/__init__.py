"""Processors: the API (decorator, Processor, Context) and the built-in processors."""

from worker.processors.api import Context, Processor, RetryPolicy, processor, registered

__all__ = ["Context", "Processor", "RetryPolicy", "processor", "registered"]
