"""Keys no backend can refuse, and what happens when a store refuses one anyway.

Keys longer than MAX_STORED_KEY or holding a NUL are stored as a digest (PostgreSQL's btree rows
stop at ~2.7 KB and its text holds no NUL). A statement refused for a key's data (SQLSTATE
classes 22 and 54) is LedgerKeyRejected, not an outage: the pipeline dead-letters that
(event, processor) and the rest of the batch goes on."""

from __future__ import annotations

import base64
import json
import random

import pytest

from tests.ledger.conftest import Store, backends
from worker.errors import LedgerKeyRejected, LedgerUnavailable
from worker.ledger import _common, postgres
from worker.ledger._common import MAX_STORED_KEY, stored_key
from worker.ledger.base import ClaimState
from worker.processing.pipeline import Pipeline
from worker.processing.routing import Router
from worker.processors.api import Processor, RetryPolicy
from worker.types import LocalMessage

# random, so PostgreSQL cannot compress it under its index row limit (12 KB)
LONG = "p:" + base64.b64encode(random.Random(1).randbytes(9000)).decode()
NUL = "p:v-1:evcus_\x00nul"


def test_stored_keys_are_short_and_nul_free() -> None:
    assert stored_key("p:v-1:evcus_1") == "p:v-1:evcus_1"
    for key in (LONG, NUL, "y" * (MAX_STORED_KEY + 1)):
        kept = stored_key(key)
        assert kept.startswith("sha256:") and len(kept) == 71 and "\x00" not in kept
    assert stored_key(LONG) != stored_key(LONG + "z")
    assert stored_key("y" * MAX_STORED_KEY) == "y" * MAX_STORED_KEY


@pytest.mark.parametrize("store", backends(), indirect=True)
def test_every_backend_takes_long_and_nul_keys(store: Store) -> None:
    led = store.open()
    try:
        s = led.session()
        assert s.claim([LONG, NUL, "short"]) == [ClaimState.NEW] * 3
        s.mark_done([LONG, NUL, "short"])
        s.commit()
        s = led.session()
        assert s.claim([LONG, NUL, LONG + "other"]) == [ClaimState.DONE, ClaimState.DONE,
                                                         ClaimState.NEW]
        s.rollback()
    finally:
        led.close()


@pytest.mark.parametrize("store", backends("postgres"), indirect=True)
@pytest.mark.parametrize(("key", "sqlstate"), [(LONG, "54"), (NUL, "22")])
def test_postgres_refusing_a_key_is_not_an_outage(store: Store, key: str, sqlstate: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the digest (patched out here) PostgreSQL refuses these keys: the error says
    which class, and the connection stays usable."""
    monkeypatch.setattr(postgres, "stored_key", lambda k: k)
    led = store.open()
    try:
        s = led.session()
        with pytest.raises(LedgerKeyRejected) as info:
            s.claim(["fine", key])
        assert f"SQLSTATE {sqlstate}" in str(info.value)
        assert not isinstance(info.value, LedgerUnavailable)
        s.rollback()
        led.ping()
        s = led.session()
        assert s.claim(["fine"]) == [ClaimState.NEW]
        s.rollback()
    finally:
        led.close()


def _event(n: int, eid: str | None = None) -> bytes:
    return json.dumps({"id": eid or f"evcus_{n}", "type": "customer.order.paid",
                       "group_id": f"v-{n}", "created_at": "2024-03-11T12:06:34.423Z",
                       "data": {}}).encode()


@pytest.mark.parametrize("store", backends("postgres"), indirect=True)
def test_the_pipeline_dead_letters_a_refused_key_and_finishes_the_batch(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """The issue's stall: a key PostgreSQL refuses used to be taken for an outage, retried
    for ever, and no event of the batch got through."""
    monkeypatch.setattr(postgres, "stored_key", lambda k: k)
    seen: list[str] = []
    procs = [Processor(name="p", patterns=("**",), func=lambda e, c: seen.append(e.id),
                       retry=RetryPolicy(max_attempts=1))]
    led = store.open()
    try:
        pipe = Pipeline(procs, led, router=Router(procs), sleep=lambda s, c: None)
        values = [_event(1), _event(2, "evcus_\x00nul"), _event(3), _event(4)]
        result = pipe.handle([LocalMessage(v, "t", 0, i) for i, v in enumerate(values)],
                             lambda: False)
        assert result.completed
        assert seen == ["evcus_1", "evcus_3", "evcus_4"]
        [letter] = result.dead_letters
        assert (letter.error_class, letter.processor, letter.source.offset()) == (
            "ledger_rejected", "p", 1)
        assert "SQLSTATE 22" in letter.reason
    finally:
        led.close()


def test_digest_is_applied_where_the_store_sees_keys() -> None:
    assert postgres.stored_key is _common.stored_key
