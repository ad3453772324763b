"""Liveness end to end: a real worker process (`python -m worker run`) on the real broker, with a
processor that gets stuck in a call. Its poll loop keeps running, so only the commit-stall bound
can tell: /healthz, over HTTP, turns 503 once messages have waited longer than
--liveness-commit-stall without a commit advancing, while /readyz stays 200 (a stuck worker is
restarted, not taken out of anything); once the call returns and the offsets are committed,
/healthz is 200 again, and SIGTERM still stops the worker cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.engine.helpers import committed, event_json, wait_for
from tests.http_helpers import get_json
from tests.kafka_helpers import KafkaHelper, free_port, unique_name
from worker.engine.lifecycle import EXIT_OK
from worker.kafka.admin import ensure_topics

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(180)]

REPO = Path(__file__).resolve().parents[2]

STUCK_MODULE = '''
import os
import time
from pathlib import Path

from worker.processors import processor


@processor("**", name="stuck")
def stuck(event, ctx):
    Path(os.environ["STUCK_DIR"], "entered").touch()
    while not Path(os.environ["STUCK_DIR"], "release").exists():
        time.sleep(0.05)
'''


def test_healthz_fails_while_a_processor_is_stuck_and_recovers(kafka_helper: KafkaHelper,
                                                               tmp_path: Path) -> None:
    topic = kafka_helper.new_topic(partitions=1, prefix="stuck")
    ensure_topics({"bootstrap.servers": kafka_helper.bootstrap}, {f"{topic}.dlq": 1})
    kafka_helper.created.append(f"{topic}.dlq")
    group, port = unique_name("stuck"), free_port()
    (tmp_path / "stuck_proc.py").write_text(STUCK_MODULE)
    env = dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{REPO}",
               WORKER_BUILTIN_PROCESSORS="false", STUCK_DIR=str(tmp_path))
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker", "run", "--bootstrap-servers", kafka_helper.bootstrap,
         "--topic", topic, "--group", group, "--ledger", "memory://", "--processors",
         "stuck_proc", "--metrics-address", f"127.0.0.1:{port}", "--commit-interval", "0.2",
         "--liveness-commit-stall", "2", "--retry-attempts", "1"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    healthz, readyz = f"http://127.0.0.1:{port}/healthz", f"http://127.0.0.1:{port}/readyz"
    try:
        wait_for(lambda: get_json(readyz) == (200, {"status": "ok", "reasons": [],
                                                "assigned_partitions": 1})
                 or proc.poll() is not None, 60, "the worker to be ready with the partition")
        assert proc.poll() is None
        assert get_json(healthz) == (200, {"status": "ok", "reasons": []})
        kafka_helper.produce(topic, [event_json(i) for i in range(3)])
        wait_for(lambda: (tmp_path / "entered").exists(), 30, "the processor to be entered")

        stuck_at = time.monotonic()
        seen = wait_for(lambda: (s := get_json(healthz)) and s[0] == 503 and s, 30,
                        "/healthz to fail while the processor is stuck", interval=0.2)
        print(f"\n/healthz 503 after {time.monotonic() - stuck_at:.1f}s stuck: {seen[1]}")
        assert any("no commit has advanced" in str(r) for r in seen[1]["reasons"]), seen
        assert not any("poll loop" in str(r) for r in seen[1]["reasons"]), seen
        status = get_json(readyz)
        assert status is not None and status[0] == 200, status  # live-or-restart, not unready

        (tmp_path / "release").touch()
        wait_for(lambda: get_json(healthz) == (200, {"status": "ok", "reasons": []}), 30,
                 "/healthz to recover once the call returned and the commit advanced")
        assert committed(kafka_helper.bootstrap, group, topic, 1) == {0: 3}
    finally:
        (tmp_path / "release").touch()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_OK, out[-3000:]
