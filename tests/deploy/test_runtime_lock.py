"""The image's lock is the runtime part of requirements.lock: the packages `activity-worker`
needs (extras of its dependencies included), each entry copied with its hashes; none of the dev
tools."""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools.runtime_lock import lock_entries, runtime_closure, subset

LOCK = (Path(__file__).resolve().parents[2] / "requirements.lock").read_text()


def test_runtime_closure_is_the_product_not_the_dev_tools() -> None:
    names = runtime_closure()
    assert {"confluent-kafka", "msgspec", "structlog", "prometheus-client", "redis", "psycopg",
            "psycopg-binary", "aiohttp", "yarl"} <= names  # psycopg-binary: psycopg[binary]
    assert not names & {"pytest", "mypy", "ruff", "uv", "hypothesis", "testcontainers",
                        "setuptools", "activity-worker"}


def test_subset_copies_the_locked_entries_with_their_hashes() -> None:
    out = subset(LOCK, runtime_closure())
    entries = lock_entries(LOCK)
    assert entries["msgspec"] in out and "--hash=sha256:" in entries["msgspec"]
    assert set(lock_entries(out)) == runtime_closure()


def test_a_package_missing_from_the_lock_is_named() -> None:
    with pytest.raises(SystemExit, match="no pin for not-a-package"):
        subset(LOCK, {"msgspec", "not-a-package"})
