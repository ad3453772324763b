"""Child-process bodies for the multi-process ledger tests (importable under `spawn`)."""

from __future__ import annotations

import time
from typing import Any

from worker.ledger import ClaimState, open_ledger


def race(url: str, keys: list[str], barrier: Any, out: Any, deadline_s: float) -> None:
    """Claim `keys` in batches as fast as possible; retry BUSY keys until every key is NEW or
    DONE for this process. Sends back the keys this process won (NEW and committed)."""
    try:
        _race(url, keys, barrier, out, deadline_s)
    except BaseException as exc:
        out.put(("error", repr(exc)))
        raise


def _race(url: str, keys: list[str], barrier: Any, out: Any, deadline_s: float) -> None:
    ledger = open_ledger(url)
    won: list[str] = []
    pending = list(keys)
    barrier.wait(timeout=60)
    deadline = time.monotonic() + deadline_s
    while pending:
        if time.monotonic() > deadline:
            out.put(("timeout", pending))
            return
        busy: list[str] = []
        for i in range(0, len(pending), 50):
            batch = pending[i:i + 50]
            session = ledger.session()
            states = session.claim(batch)
            new = [k for k, s in zip(batch, states, strict=True) if s == ClaimState.NEW]
            busy += [k for k, s in zip(batch, states, strict=True) if s == ClaimState.BUSY]
            session.mark_done(new)
            session.commit()
            won += new
        pending = busy
    ledger.close()
    out.put(("ok", won))


def hold_then_wait(url: str, keys: list[str], effects_sql: str, ready: Any,
                   commit_first: bool) -> None:
    """Claim `keys`, write one effect row per key through the session's transaction and mark
    them done, then (optionally commit and) signal `ready` and block until killed."""
    ledger = open_ledger(url)
    session = ledger.session()
    assert session.claim(keys) == [ClaimState.NEW] * len(keys)
    tx = session.transaction
    for key in keys:
        with session.savepoint():
            tx.execute(effects_sql, (key,))
    session.mark_done(keys)
    if commit_first:
        session.commit()
    ready.set()
    time.sleep(600)  # the parent kills this process with SIGKILL
