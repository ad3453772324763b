"""An unreachable store raises LedgerUnavailable (with what to check, and no password) from
every operation, and the same ledger object carries on when the server returns."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.ledger.conftest import LocalServer, free_port
from worker.errors import LedgerUnavailable
from worker.ledger import ClaimState, open_ledger

NEW, DONE = ClaimState.NEW, ClaimState.DONE
Keys = Callable[[int], list[str]]
Throwaway = Callable[[str], LocalServer]


@pytest.mark.parametrize("url", [
    pytest.param("redis://:s3cret@127.0.0.1:{port}/0", id="redis"),
    pytest.param("postgresql://worker:s3cret@127.0.0.1:{port}/activity_worker", id="postgres"),
])
def test_closed_port_raises_ledger_unavailable(url: str, keys: Keys) -> None:
    ledger = open_ledger(url.format(port=free_port()))   # opening does not connect
    with pytest.raises(LedgerUnavailable) as ping_error:
        ledger.ping()
    session = ledger.session()
    with pytest.raises(LedgerUnavailable) as claim_error:
        session.claim(keys(2))
    session.rollback()
    for err in (ping_error.value, claim_error.value):
        assert "s3cret" not in str(err)
        assert "***" in str(err)
        assert "check that the server is running" in str(err)
    ledger.close()


@pytest.mark.parametrize("kind", [pytest.param("redis", marks=pytest.mark.redis),
                                  pytest.param("postgres", marks=pytest.mark.postgres)])
def test_server_down_then_back(kind: str, throwaway: Throwaway, keys: Keys) -> None:
    server = throwaway(kind)
    ledger = open_ledger(server.up())
    done, later = keys(3), keys(2)
    s = ledger.session()
    assert s.claim(done) == [NEW] * 3
    s.mark_done(done)
    s.commit()

    server.down()
    with pytest.raises(LedgerUnavailable):
        ledger.ping()
    s = ledger.session()
    with pytest.raises(LedgerUnavailable):
        s.claim(later)
    s.rollback()

    server.up()
    ledger.ping()
    s = ledger.session()
    assert s.claim(done + later) == [DONE] * 3 + [NEW] * 2   # done marks survived the restart
    s.mark_done(later)
    s.commit()
    ledger.close()


@pytest.mark.postgres
def test_postgres_connection_lost_mid_batch(throwaway: Throwaway, keys: Keys) -> None:
    """A batch whose connection dies: the processor's error becomes LedgerUnavailable (not the
    event's fault, so it must not be dead-lettered), rollback is safe, nothing was committed."""
    server = throwaway("postgres")
    ledger = open_ledger(server.up())
    ks = keys(2)
    s = ledger.session()
    assert s.claim(ks) == [NEW, NEW]
    tx = s.transaction
    server.down()
    with pytest.raises(LedgerUnavailable), s.savepoint():
        tx.execute("SELECT 1")
    with pytest.raises(LedgerUnavailable):
        s.commit()
    s.rollback()
    server.up()
    s = ledger.session()
    assert s.claim(ks) == [NEW, NEW]
    s.rollback()
    ledger.close()
