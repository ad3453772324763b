"""Fixtures for the engine tests. They need the real broker at KAFKA_BOOTSTRAP_SERVERS
(default 127.0.0.1:9092); every test makes its own topics and groups."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable

import pytest

from tests.engine.helpers import broker_reachable


@pytest.fixture(scope="session")
def engine_bootstrap() -> str:
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    if not broker_reachable(bootstrap):
        pytest.fail(f"no Kafka broker answers at {bootstrap}; start one (see docs/engine.md) "
                    "or set KAFKA_BOOTSTRAP_SERVERS")
    return bootstrap


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> Callable[[str], str]:
    base = request.node.name.replace("[", "-").replace("]", "")[:40]
    tag = uuid.uuid4().hex[:8]

    def make(kind: str) -> str:
        return f"t-{base}-{kind}-{tag}"

    return make
