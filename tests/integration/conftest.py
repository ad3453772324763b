"""The private secured broker (tests/secure_kafka.py), started once per session for the tests
that need SASL/mTLS listeners or a broker they may freeze (the lost-partition test)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.secure_kafka import SecureBroker, secure_broker


@pytest.fixture(scope="session")
def private_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    with secure_broker(tmp_path_factory.mktemp("secure-kafka")) as broker:
        yield broker
