"""The HTTP forwarder against a real local HTTP server (aiohttp.web on 127.0.0.1): 200, 500 then
200, 429 with Retry-After, 400, a timeout; the body, the HMAC signature and the Idempotency-Key
it sends; and the module's settings from the environment."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from tests.http_helpers import LoopbackServer
from worker.ledger import open_ledger
from worker.processing.pipeline import Pipeline
from worker.processors.api import Processor, RetryPolicy
from worker.processors.forwarding import (
    SIGNATURE_HEADER,
    Forwarder,
    ForwardSettings,
    signature,
)
from worker.types import LocalMessage

ROOT = Path(__file__).resolve().parents[2]


class Endpoint(LoopbackServer):
    """A real HTTP server on a free loopback port; each path answers as its name says, and
    every request is recorded (path, headers, body, time)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes, float]] = []
        self.calls: dict[str, int] = {}
        super().__init__()

    async def answer(self, request: web.Request) -> web.Response:
        kind = request.match_info["name"]
        body = await request.read()
        self.requests.append((kind, dict(request.headers), body, time.monotonic()))
        n = self.calls[kind] = self.calls.get(kind, 0) + 1
        if kind == "ok":
            return web.Response(status=200)
        if kind == "flaky":  # 500 twice, then 200
            return web.Response(status=500 if n <= 2 else 200, text="boom")
        if kind == "busy":  # 429 with Retry-After: 1 once, then 200
            if n == 1:
                return web.Response(status=429, headers={"Retry-After": "1"}, text="slow down")
            return web.Response(status=200)
        if kind == "bad":
            return web.Response(status=400, text="unknown customer")
        if kind == "slow":  # longer than the client's timeout on the first call
            if n == 1:
                await asyncio.sleep(2.0)
            return web.Response(status=200)
        return web.Response(status=404)


@pytest.fixture(scope="module")
def endpoint() -> Iterator[Endpoint]:
    server = Endpoint()
    yield server
    server.close()


def event(n: int) -> bytes:
    return json.dumps({"id": f"evcus_{n:018d}", "type": "customer.order.paid",
                       "group_id": f"v-{n:018d}", "created_at": "2024-03-11T12:06:34.423Z",
                       "data": {"customer": {"id": f"cust_{n}"}}}).encode()


_PIPELINES: list[Pipeline] = []


@pytest.fixture(autouse=True)
def _close_pipelines() -> Iterator[None]:
    """Each test's pipelines closed after it (their forwarders' client sessions with them)."""
    yield
    while _PIPELINES:
        _PIPELINES.pop().close()


def forwarder(url: str, **env: str) -> Pipeline:
    settings = ForwardSettings({"WORKER_FORWARD_URL": url, "WORKER_FORWARD_SECRET": "s3cret",
                                "WORKER_FORWARD_TIMEOUT": "0.5", **env})
    proc = Processor(name="http_forwarder", patterns=("customer.**",),
                     func=Forwarder(settings),
                     retry=RetryPolicy(max_attempts=3, initial_backoff=0.05, max_backoff=0.1))
    pipe = Pipeline([proc], open_ledger("memory://"))
    _PIPELINES.append(pipe)
    return pipe


def send(n: int = 1, start: int = 0) -> list[LocalMessage]:
    return [LocalMessage(event(i), "t", 0, i, f"cust_{i}".encode())
            for i in range(start, start + n)]


def test_200_posts_the_event_signed_with_its_ledger_key(endpoint: Endpoint) -> None:
    pipe = forwarder(endpoint.url("ok"))
    msgs = send(3)
    result = pipe.handle(msgs, lambda: False)
    assert result.completed and not result.dead_letters
    got = [r for r in endpoint.requests if r[0] == "ok"]
    assert sorted(body for _, _, body, _ in got) == sorted(m.value() for m in msgs)
    for _, headers, body, _ in got:
        assert headers[SIGNATURE_HEADER] == signature(b"s3cret", body)
        n = int(json.loads(body)["id"].split("_")[1])
        assert headers["Idempotency-Key"] == f"http_forwarder:v-{n:018d}:evcus_{n:018d}"
        assert headers["Content-Type"] == "application/json"
    # redelivered: the ledger has the keys, no request is made again
    before = len(endpoint.requests)
    assert pipe.handle(msgs, lambda: False).completed
    assert len(endpoint.requests) == before


def test_500_is_retried_until_it_answers(endpoint: Endpoint) -> None:
    result = forwarder(endpoint.url("flaky")).handle(send(1, 100), lambda: False)
    assert result.completed and not result.dead_letters
    assert endpoint.calls["flaky"] == 3
    assert result.stats.outcomes == {("http_forwarder", "retried"): 2,
                                     ("http_forwarder", "ok"): 1}


def test_429_waits_for_retry_after(endpoint: Endpoint) -> None:
    result = forwarder(endpoint.url("busy")).handle(send(1, 200), lambda: False)
    assert result.completed and not result.dead_letters
    times = [t for kind, _, _, t in endpoint.requests if kind == "busy"]
    assert len(times) == 2 and times[1] - times[0] >= 0.95  # Retry-After: 1, not the 0.05 s


def test_400_is_dead_lettered_at_once_with_the_status(endpoint: Endpoint) -> None:
    result = forwarder(endpoint.url("bad")).handle(send(1, 300), lambda: False)
    assert result.completed and endpoint.calls["bad"] == 1
    (letter,) = result.dead_letters
    assert letter.error_class == "non_retriable" and "HTTP 400" in letter.reason
    assert "unknown customer" in letter.reason and letter.processor == "http_forwarder"


def test_a_timeout_is_retried(endpoint: Endpoint) -> None:
    t0 = time.monotonic()
    result = forwarder(endpoint.url("slow")).handle(send(1, 400), lambda: False)
    assert result.completed and not result.dead_letters
    assert endpoint.calls["slow"] == 2 and time.monotonic() - t0 < 2.0  # gave up at 0.5 s


def test_the_module_reads_its_settings_from_the_environment(tmp_path: Path) -> None:
    base = {**os.environ, "WORKER_BUILTIN_PROCESSORS": "false"}
    cmd = [sys.executable, "-m", "worker", "processors", "--processors",
           "worker.processors.builtin.http_forwarder"]
    missing = subprocess.run(cmd, env={k: v for k, v in base.items()
                                       if k != "WORKER_FORWARD_URL"},
                             capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert missing.returncode != 0 and "WORKER_FORWARD_URL" in missing.stderr
    ok = subprocess.run(cmd, env={**base, "WORKER_FORWARD_URL": "http://127.0.0.1:9/in",
                                  "WORKER_FORWARD_PATTERNS": "customer.order.*"},
                        capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert "http_forwarder" in ok.stdout and "customer.order.*" in ok.stdout


@pytest.mark.kafka
def test_forwarding_from_a_real_broker(endpoint: Endpoint, kafka_bootstrap: str) -> None:
    """Through the engine on a real broker: every event POSTed once, then committed."""
    import uuid

    from tests.engine.helpers import Running, committed, create_topic, produce
    from worker.engine.lifecycle import EXIT_OK
    from worker.engine.loop import Engine, EngineConfig
    from worker.kafka.config import INTERLEAVED_FETCH_BYTES, build_consumer_config
    from worker.kafka.confluent_consumer import ConfluentConsumer

    topic, group = f"fwd-{uuid.uuid4().hex[:8]}", f"fwd-{uuid.uuid4().hex[:8]}"
    create_topic(kafka_bootstrap, topic, 2)
    produce(kafka_bootstrap, topic, [(i % 2, f"cust_{i}".encode(), event(1000 + i))
                                     for i in range(60)])
    pipe = forwarder(endpoint.url("ok"))
    assert pipe.overlaps
    before = endpoint.calls.get("ok", 0)
    consumer = ConfluentConsumer(build_consumer_config(kafka_bootstrap, group, None))
    engine = Engine(consumer, pipe, EngineConfig(topics=[topic], drain=True,
                                                 install_signals=False))
    assert Running(engine).join(60) == EXIT_OK
    # the engine asked for interleaved partitions, since the pipeline's batches overlap
    assert consumer.settings()["max.partition.fetch.bytes"] == INTERLEAVED_FETCH_BYTES
    assert endpoint.calls["ok"] - before == 60
    assert sum(committed(kafka_bootstrap, group, topic, 2).values()) == 60
