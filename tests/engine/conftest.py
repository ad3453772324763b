"""Fixtures for the engine tests: the session broker from tests/conftest.py (`kafka_bootstrap`:
KAFKA_BOOTSTRAP_SERVERS, else the local launcher) and unique names per test."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest

from tests.engine.helpers import broker_reachable


@pytest.fixture(scope="session")
def engine_bootstrap(kafka_bootstrap: str) -> str:
    if not broker_reachable(kafka_bootstrap):
        pytest.fail(f"no Kafka broker answers at {kafka_bootstrap}; start one "
                    "(deploy/local/kafka up) or set KAFKA_BOOTSTRAP_SERVERS")
    return kafka_bootstrap


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> Callable[[str], str]:
    base = request.node.name.replace("[", "-").replace("]", "")[:40]
    tag = uuid.uuid4().hex[:8]

    def make(kind: str) -> str:
        return f"t-{base}-{kind}-{tag}"

    return make
