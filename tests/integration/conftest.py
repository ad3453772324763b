"""Fixtures of the integration tests: `endpoints`, a real HTTP server on loopback whose paths
answer by a mode (tests.http_helpers.Endpoints)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.http_helpers import Endpoints


@pytest.fixture
def endpoints() -> Iterator[Endpoints]:
    server = Endpoints()
    yield server
    server.close()
