"""Planning finds the work of the messages it is asked about (the sampled events,
worker.processing.batch_trace) while it plans, without a pass over the work: the same positions
as a search of the work for each message, whatever the messages before and after produce
(nothing: undecodable, unmatched; one or two (event, processor) pairs)."""

from __future__ import annotations

import random

import pytest

from tests.processing.test_pipeline import event, never, proc
from worker.processing.batch_run import BatchRun
from worker.processing.planning import WorkPlanner
from worker.processing.routing import Router
from worker.types import LocalMessage


def _noop(e: object, ctx: object) -> None:
    return None


PROCS = [proc("orders", "customer.order.*", _noop), proc("all", "customer.**", _noop)]
#: values producing 2, 1 and 0 work items (unmatched, undecodable)
VALUES = [lambda n: event(n), lambda n: event(n, "customer.created"),
          lambda n: event(n, "voucher.created"), lambda n: b"{not json"]


@pytest.mark.parametrize("seed", range(40))
def test_the_work_found_is_the_wanted_messages_work(seed: int) -> None:
    rng = random.Random(seed)
    n = rng.randrange(1, 30)
    messages = [LocalMessage(rng.choice(VALUES)(i), "t", i % 3, i) for i in range(n)]
    wanted = sorted(rng.sample(range(n), rng.randrange(0, n + 1)))
    planner = WorkPlanner({"orders": 0, "all": 1}, Router(PROCS), "skip")
    found: list[int] = []
    work = planner.plan(messages, BatchRun(n, 2, never), wanted, found)
    expected = [j for j, (msg, *_) in enumerate(work) if any(msg is messages[i] for i in wanted)]
    assert found == expected
    assert work == planner.plan(messages, BatchRun(n, 2, never))  # (the same work)


def test_nothing_wanted_nothing_found() -> None:
    messages = [LocalMessage(event(i), "t", 0, i) for i in range(5)]
    planner = WorkPlanner({"orders": 0, "all": 1}, Router(PROCS), "skip")
    found: list[int] = []
    assert len(planner.plan(messages, BatchRun(5, 2, never), (), found)) == 10
    assert found == []
