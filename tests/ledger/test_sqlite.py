"""SQLite specifics: WAL mode, one writer at a time across processes, clear errors."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from worker.errors import LedgerUnavailable
from worker.ledger import ClaimState, open_ledger

Keys = Callable[[int], list[str]]


def test_file_is_in_wal_mode(tmp_path: Path) -> None:
    ledger = open_ledger(f"sqlite:///{tmp_path}/l.db")
    ledger.ping()
    conn = sqlite3.connect(tmp_path / "l.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    ledger.close()


def test_relative_path_is_relative_to_the_working_directory(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    ledger = open_ledger("sqlite:///rel.db")
    ledger.ping()
    assert (tmp_path / "rel.db").exists()
    ledger.close()


def test_second_writer_waits_then_gets_a_clear_error(tmp_path: Path, keys: Keys) -> None:
    """Another worker sharing the file waits for the write lock up to busy_timeout, then gets
    LedgerUnavailable (the pipeline retries); once the first batch commits it sees DONE."""
    url = f"sqlite:///{tmp_path}/l.db?busy_timeout=0.2"
    first, second = open_ledger(url), open_ledger(url)
    ks = keys(2)
    s1 = first.session()
    assert s1.claim(ks) == [ClaimState.NEW] * 2
    s2 = second.session()
    with pytest.raises(LedgerUnavailable, match="locked by another process"):
        s2.claim(ks)
    s2.rollback()
    s1.mark_done(ks)
    s1.commit()
    s3 = second.session()
    assert s3.claim(ks) == [ClaimState.DONE] * 2
    s3.rollback()


def test_one_session_at_a_time_per_ledger(tmp_path: Path, keys: Keys) -> None:
    ledger = open_ledger(f"sqlite:///{tmp_path}/l.db")
    s = ledger.session()
    s.claim(keys(1))
    with pytest.raises(RuntimeError, match="one session at a time"):
        ledger.session()
    s.rollback()
    ledger.session().rollback()


def test_missing_directory_is_reported(tmp_path: Path) -> None:
    ledger = open_ledger(f"sqlite:///{tmp_path}/nowhere/l.db")
    with pytest.raises(LedgerUnavailable, match="does not exist"):
        ledger.ping()


@pytest.mark.parametrize(("option", "level"), [("", 2), ("?synchronous=normal", 1),
                                               ("?synchronous=FULL", 2)])
def test_synchronous_is_full_unless_asked(tmp_path: Path, option: str, level: int) -> None:
    ledger = open_ledger(f"sqlite:///{tmp_path / 'l.db'}{option}")
    session = ledger.session()
    assert session.transaction.execute("PRAGMA synchronous").fetchone()[0] == level
    session.rollback()
    ledger.close()


def test_unknown_synchronous_level_is_refused(tmp_path: Path) -> None:
    from worker.errors import ConfigError

    with pytest.raises(ConfigError, match="synchronous=full"):
        open_ledger(f"sqlite:///{tmp_path / 'l.db'}?synchronous=off")
