"""Two worker processes racing for the same keys at the same moment: exactly one wins each key.

Each process claims the same 600 keys in its own order, in batches of 50, marking its NEW keys
done and committing; BUSY keys (another process's batch is in flight) are retried until they
resolve. Exactly one process may have seen NEW for each key. SQLite runs two processes on one
file (they serialise on the write lock), Redis and PostgreSQL two clients of one server.
"""

from __future__ import annotations

import multiprocessing
import random
import uuid

import pytest

from tests.ledger._procs import race
from tests.ledger.conftest import Store, backends


@pytest.mark.parametrize("store", backends("sqlite", "redis", "postgres"), indirect=True)
def test_two_processes_claim_each_key_exactly_once(store: Store) -> None:
    """(The memory ledger lives inside one process: nothing to race across processes.)"""
    rounds = 3
    ctx = multiprocessing.get_context("spawn")
    for _ in range(rounds):
        tag = uuid.uuid4().hex[:8]
        keys = [f"proc:v-{tag}:evcus_{i:05d}" for i in range(600)]
        orders = [list(keys), list(keys)]
        random.Random(tag).shuffle(orders[1])  # overlap in different orders, not in lockstep
        barrier = ctx.Barrier(2)
        out = ctx.Queue()
        procs = [ctx.Process(target=race, args=(store.url, order, barrier, out, 60.0))
                 for order in orders]
        for p in procs:
            p.start()
        results = [out.get(timeout=90) for _ in procs]
        for p in procs:
            p.join(timeout=30)
            assert p.exitcode == 0
        assert all(status == "ok" for status, _ in results), results
        won_a, won_b = (set(won) for _, won in results)
        assert not won_a & won_b, f"{len(won_a & won_b)} keys were won by both processes"
        assert won_a | won_b == set(keys)
