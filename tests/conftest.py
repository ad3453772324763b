"""Shared fixtures.

Kafka: one broker for the whole session (`kafka_bootstrap`), taken from
1. KAFKA_BOOTSTRAP_SERVERS when set (e.g. the broker .ci/run or a developer started);
2. else testcontainers' KafkaContainer when a Docker engine answers (image: KAFKA_TEST_IMAGE,
   default confluentinc/cp-kafka:7.6.0 in KRaft mode; untested here: no Docker engine);
3. else the local launcher (deploy/local/kafka) on its default port and data dir (KAFKA_PORT /
   KAFKA_DATA_DIR are honoured), started if not running and stopped at the end only if this
   session started it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kafka_helpers import KafkaHelper
from tests.secure_kafka import SecureBroker, secure_broker
from tests.servers import postgres_url, redis_url  # noqa: F401  (shared fixtures)

REPO_ROOT = Path(__file__).resolve().parents[1]
LAUNCHER = REPO_ROOT / "deploy" / "local" / "kafka"


def run_launcher(
    *args: str, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run deploy/local/kafka with this interpreter (PYTHON) and return its result."""
    full_env = dict(os.environ if env is None else env)
    full_env.setdefault("PYTHON", sys.executable)
    return subprocess.run(
        [str(LAUNCHER), *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def docker_answers() -> bool:
    """Quick, quiet check that a Docker engine answers (what testcontainers needs)."""
    try:
        import docker

        client = docker.from_env(timeout=3)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap address of a real Kafka broker for this test session."""
    from_env = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if from_env:
        yield from_env
        return

    if docker_answers():
        from testcontainers.community.kafka import KafkaContainer

        image = os.environ.get("KAFKA_TEST_IMAGE", "confluentinc/cp-kafka:7.6.0")
        with KafkaContainer(image).with_kraft() as container:
            yield container.get_bootstrap_server()
        return

    from devtools.local_broker import settings_from

    bootstrap = settings_from().bootstrap
    was_running = run_launcher("status", timeout=60).returncode == 0
    if not was_running:
        started = run_launcher("up")
        if started.returncode != 0:
            pytest.fail(
                "deploy/local/kafka up failed (set KAFKA_BOOTSTRAP_SERVERS to use another "
                f"broker):\n{started.stdout}{started.stderr}",
                pytrace=False,
            )
    try:
        yield bootstrap
    finally:
        if not was_running:
            run_launcher("down", timeout=120)


@pytest.fixture(scope="session")
def private_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    """A broker of the tests' own (tests/secure_kafka.py), started once per session on first
    use, for tests that need SASL/mTLS listeners or a broker they may freeze (lost partitions)."""
    with secure_broker(tmp_path_factory.mktemp("secure-kafka")) as broker:
        yield broker


@pytest.fixture
def kafka_helper(kafka_bootstrap: str) -> Iterator[KafkaHelper]:
    """new_topic / produce / consume_all against the session broker; topics made through it
    are deleted afterwards."""
    helper = KafkaHelper(kafka_bootstrap)
    try:
        yield helper
    finally:
        helper.delete_created()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--soak", action="store_true", default=False,
                     help="also run the slow soak tests (marked `soak`)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--soak"):
        return
    skip = pytest.mark.skip(reason="slow soak test: run with --soak (SOAK=1 ./scripts/test)")
    for item in items:
        if "soak" in item.keywords:
            item.add_marker(skip)
