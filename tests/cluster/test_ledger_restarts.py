"""The shared ledger's server restarts under a live stream: 3 workers on the 3-node cluster
(12 partitions, RF 3), the ledger on a private PostgreSQL (effects written in the ledger's
transaction) or Redis server (effects written by the processor to files, outside the ledger),
which is stopped mid-stream and started again a few seconds later.

The workers report the ledger down (their "ledger unavailable" lines), retry with backoff, and
carry on: every event has exactly one effect, committed offsets never went backwards, lag 0 at
the end. (On Redis the effects happen outside the store; when it goes away just after a batch's
effects ran, only the marking of them done is retried — the narrow window that
tests/processing/test_pipeline.py pins, which a restart here rarely hits.)"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from devtools.local_cluster import LocalCluster
from tests.cluster.scenario import FileEffects, PostgresEffects, begin, report, throughput_gap
from tests.engine.helpers import wait_for
from tests.servers import LocalServer, free_port

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(600)]

DOWN_FOR_S = 5.0


@pytest.mark.parametrize("kind", [pytest.param("postgres", marks=pytest.mark.postgres),
                                  pytest.param("redis", marks=pytest.mark.redis)])
def test_the_ledger_server_restarts_mid_stream(cluster: LocalCluster, tmp_path: Path,
                                                kind: str) -> None:
    server = LocalServer(kind, free_port(), tmp_path / f"{kind}-local")
    url = server.up()
    try:
        effects = (PostgresEffects(url) if kind == "postgres"
                   else FileEffects(tmp_path / "effects"))
        run = begin(cluster.bootstrap, url, effects, tmp_path, f"ledger-{kind}", 40_000,
                    2_000.0)
        stream, workers = run.stream, run.workers
        for name in ("l1", "l2", "l3"):
            workers.start(name)
        try:
            wait_for(lambda: effects.count() > 0, 120, "first effects")
            stream.wait_produced(0.35)
            t_down = time.time()
            server.down()
            wait_for(lambda: time.time() - t_down >= DOWN_FOR_S, DOWN_FOR_S + 5, "an outage")
            server.up()
            t_up = time.time()
            outcome = run.finish()
        finally:
            workers.kill_all()
        reported = {w.name: len(w.lines("ledger unavailable; retrying the batch"))
                    + len(w.lines("ledger unavailable; marking the batch's finished effects "
                                  "done again")) for w in workers.procs.values()}
        assert sum(reported.values()) > 0, "no worker reported the ledger down"
        report(f"{kind} ledger restart", down_s=t_up - t_down,
               group_stall_s=throughput_gap(outcome.effects, t_down - 1, t_up + 60),
               retry_lines=sum(reported.values()))
    finally:
        server.down()
