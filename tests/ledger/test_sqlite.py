"""SQLite specifics: WAL mode, one writer at a time across processes, clear errors."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from worker.errors import LedgerUnavailable
from worker.ledger import ClaimState, open_ledger, sqlite_schema
from worker.ledger.base import Ledger

Keys = Callable[[int], list[str]]


def _done(ledger: Ledger, ks: list[str]) -> None:
    """One batch that claims `ks` and marks them all done."""
    s = ledger.session()
    s.claim(ks)
    s.mark_done(ks)
    s.commit()


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


# -- hashed keys: collisions and the first schema's files ---------------------------------------

def test_rows_are_keyed_by_the_hash_of_the_key(tmp_path: Path, keys: Keys) -> None:
    from worker.ledger.sqlite_connection import key_hash

    ledger = open_ledger(f"sqlite:///{tmp_path}/l.db")
    ks = keys(3)
    _done(ledger, ks)
    ledger.close()
    conn = sqlite3.connect(tmp_path / "l.db")
    rows = dict(conn.execute("SELECT kh, key FROM activity_worker_ledger"))
    index = conn.execute("SELECT kh, id FROM activity_worker_ledger_hot UNION ALL "
                         "SELECT kh, id FROM activity_worker_ledger_cold").fetchall()
    ids = dict(conn.execute("SELECT kh, id FROM activity_worker_ledger"))
    conn.close()
    assert rows == {key_hash(k): k for k in ks}
    assert sorted(index) == sorted(ids.items())  # every row has one index entry
    assert len({key_hash(k) for k in keys(10_000)}) == 10_000


def test_a_hash_collision_is_never_a_duplicate(tmp_path: Path, keys: Keys,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Every key hashes alike here: the full key kept in each row tells them apart, so each is
    still NEW once and DONE afterwards, across sessions, releases and rollbacks."""
    import worker.ledger.sqlite as sqlite_ledger

    monkeypatch.setattr(sqlite_ledger, "key_hashes", lambda keys: [42] * len(keys))
    ledger = open_ledger(f"sqlite:///{tmp_path}/l.db")
    a, b, c, d = keys(4)
    s = ledger.session()
    assert s.claim([a, b]) == [ClaimState.NEW, ClaimState.NEW]
    s.mark_done([a, b])
    s.commit()
    s = ledger.session()
    assert s.claim([a, b, c]) == [ClaimState.DONE, ClaimState.DONE, ClaimState.NEW]
    s.release([c])                       # a failed effect: c must be claimable again
    s.commit()
    s = ledger.session()
    assert s.claim([c, d]) == [ClaimState.NEW, ClaimState.NEW]
    s.rollback()                         # a cancelled batch: neither c nor d is done
    s = ledger.session()
    assert s.claim([d, c, b]) == [ClaimState.NEW, ClaimState.NEW, ClaimState.DONE]
    s.mark_done([c, d])
    s.commit()
    s = ledger.session()
    assert s.claim([a, b, c, d]) == [ClaimState.DONE] * 4
    s.rollback()
    ledger.close()


def test_prune_removes_expired_colliding_keys_only(tmp_path: Path, keys: Keys,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import worker.ledger.sqlite as sqlite_ledger

    monkeypatch.setattr(sqlite_ledger, "key_hashes", lambda keys: [7] * len(keys))
    now = [1_000_000.0]
    ledger = open_ledger(f"sqlite:///{tmp_path}/l.db", retention_seconds=100, lease_seconds=10,
                         prune_interval_seconds=0, clock=lambda: now[0])
    old, young = keys(2), keys(2)
    for batch in (old, young):
        s = ledger.session()
        assert s.claim(batch) == [ClaimState.NEW] * 2
        s.mark_done(batch)
        s.commit()
        now[0] += 60
    now[0] += 30                         # old is 150 s old, young 90 s: only old expires
    assert ledger.prune() == 2
    s = ledger.session()
    assert s.claim(old + young) == [ClaimState.NEW] * 2 + [ClaimState.DONE] * 2
    s.rollback()
    ledger.close()


def _v1_file(path: Path, rows: list[tuple[str, int]]) -> None:
    """A ledger file as the first schema (before hashed keys) wrote it."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE activity_worker_ledger "
                 "(key TEXT PRIMARY KEY, created_ms INTEGER NOT NULL) WITHOUT ROWID")
    conn.execute("CREATE INDEX activity_worker_ledger_created "
                 "ON activity_worker_ledger (created_ms)")
    conn.executemany("INSERT INTO activity_worker_ledger VALUES (?, ?)", rows)
    conn.commit()
    conn.close()


def test_a_file_of_the_first_schema_is_migrated_with_its_done_marks(tmp_path: Path,
                                                                     keys: Keys) -> None:
    import time

    done = keys(1200)
    now_ms = int(time.time() * 1000)
    _v1_file(tmp_path / "l.db", [(k, now_ms) for k in done])
    ledger = open_ledger(f"sqlite:///{tmp_path}/l.db")
    fresh = keys(3)
    s = ledger.session()
    assert s.claim(done + fresh) == [ClaimState.DONE] * len(done) + [ClaimState.NEW] * 3
    s.mark_done(fresh)
    s.commit()
    ledger.close()
    conn = sqlite3.connect(tmp_path / "l.db")
    columns = [r[1] for r in conn.execute("PRAGMA table_info(activity_worker_ledger)")]
    assert columns == ["id", "kh", "key", "created_ms"]
    assert conn.execute("SELECT count(*) FROM activity_worker_ledger").fetchone()[0] == 1203
    assert conn.execute("SELECT count(*) FROM activity_worker_ledger_cold").fetchone()[0] == 1200
    assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name LIKE '%_v1'"
                        ).fetchone()[0] == 0
    conn.close()


def test_migration_keeps_colliding_keys(tmp_path: Path, keys: Keys,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import worker.ledger.sqlite as sqlite_ledger
    import worker.ledger.sqlite_connection as sqlite_connection

    for module in (sqlite_ledger, sqlite_connection):  # claims, and the migration's hashes
        monkeypatch.setattr(module, "key_hashes", lambda keys: [1] * len(keys))
    done = keys(5)
    _v1_file(tmp_path / "l.db", [(k, 10**13) for k in done])
    ledger = open_ledger(f"sqlite:///{tmp_path}/l.db")
    s = ledger.session()
    assert s.claim(done + keys(1)) == [ClaimState.DONE] * 5 + [ClaimState.NEW]
    s.rollback()
    ledger.close()


def test_prune_walks_rows_in_claim_order_and_stops_at_a_young_one(tmp_path: Path,
                                                                  keys: Keys) -> None:
    """Two processes' clocks may disagree a little: a young row claimed before older ones
    holds them back until it expires too (kept longer, never dropped early)."""
    from worker.ledger.sqlite import SqliteLedger

    now = [1_000_000.0]
    ledger = SqliteLedger(f"sqlite:///{tmp_path}/l.db", retention_seconds=100,
                          prune_interval_seconds=0, prune_chunk=2, clock=lambda: now[0])
    batches = [keys(3), keys(3), keys(3)]
    for batch, at in zip(batches, (1_000_000.0, 1_000_050.0, 1_000_010.0), strict=True):
        now[0] = at
        s = ledger.session()
        s.claim(batch)
        s.mark_done(batch)
        s.commit()
    now[0] = 1_000_120.0                 # batches 0 and 2 expired, batch 1 (claimed 2nd) not
    assert ledger.prune() == 3
    s = ledger.session()
    assert s.claim([k for b in batches for k in b]) == (
        [ClaimState.NEW] * 3 + [ClaimState.DONE] * 6)
    s.rollback()
    now[0] = 1_000_200.0
    assert ledger.prune() == 6
    ledger.close()


def test_a_table_that_is_not_a_ledger_is_refused(tmp_path: Path) -> None:
    from worker.errors import ConfigError

    conn = sqlite3.connect(tmp_path / "l.db")
    conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, total INTEGER)")
    conn.commit()
    conn.close()
    ledger = open_ledger(f"sqlite:///{tmp_path}/l.db?table=orders")
    with pytest.raises(ConfigError, match="point \\?table= at another table"):
        ledger.ping()


def test_an_older_workers_index_on_a_migrated_file_is_dropped(tmp_path: Path,
                                                                keys: Keys) -> None:
    """A worker of the first schema opening a migrated file adds its created_ms index back
    (`CREATE INDEX IF NOT EXISTS`); the next current worker drops it (it slows every insert)."""
    ledger = open_ledger(f"sqlite:///{tmp_path}/l.db")
    ledger.ping()
    ledger.close()
    conn = sqlite3.connect(tmp_path / "l.db")
    conn.execute("CREATE INDEX IF NOT EXISTS activity_worker_ledger_created "
                 "ON activity_worker_ledger (created_ms)")
    conn.commit()
    ledger = open_ledger(f"sqlite:///{tmp_path}/l.db")
    ledger.ping()
    ledger.close()
    names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")]
    conn.close()
    assert names == []


def test_two_workers_opening_a_first_schema_file_at_once_migrate_it_once(tmp_path: Path,
                                                                          keys: Keys) -> None:
    import threading


    done = keys(20_000)
    _v1_file(tmp_path / "l.db", [(k, 10**13) for k in done])
    ledgers = [open_ledger(f"sqlite:///{tmp_path}/l.db") for _ in range(2)]
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def open_it(ledger: Ledger) -> None:
        try:
            start.wait(timeout=10)
            ledger.ping()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_it, args=(x,)) for x in ledgers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors and not any(t.is_alive() for t in threads)
    for ledger in ledgers:
        s = ledger.session()
        assert s.claim(done[:50] + done[-50:]) == [ClaimState.DONE] * 100
        s.rollback()
        ledger.close()
    conn = sqlite3.connect(tmp_path / "l.db")
    assert conn.execute("SELECT count(*) FROM activity_worker_ledger").fetchone()[0] == 20_000
    conn.close()


def test_one_savepoint_name_serves_every_processor_of_a_batch(tmp_path: Path,
                                                              keys: Keys) -> None:
    """The session reuses one savepoint object and name: writes of processors that succeed
    before and after a failed one all stay, the failed one's roll back alone, and a finished
    session refuses a savepoint."""
    ledger = open_ledger(f"sqlite:///{tmp_path}/l.db")
    ks = keys(5)
    session = ledger.session()
    session.claim(ks)
    tx = session.transaction
    tx.execute("CREATE TABLE effects (k TEXT)")
    for i, k in enumerate(ks):
        try:
            with session.savepoint():
                tx.execute("INSERT INTO effects VALUES (?)", (k,))
                if i in (1, 3):
                    raise ValueError("processor failed")
        except ValueError:
            session.release([k])
        else:
            session.mark_done([k])
    with session.savepoint():  # a processor that does not touch the database
        pass
    session.commit()
    with pytest.raises(RuntimeError, match="already committed"):
        session.savepoint()
    conn = sqlite3.connect(f"{tmp_path}/l.db")
    assert [r[0] for r in conn.execute("SELECT k FROM effects ORDER BY rowid")] == [
        ks[0], ks[2], ks[4]]
    conn.close()
    again = ledger.session()
    assert again.claim(ks) == [ClaimState.DONE, ClaimState.NEW, ClaimState.DONE,
                               ClaimState.NEW, ClaimState.DONE]
    again.rollback()
    ledger.close()


# -- the hot and cold index tables --------------------------------------------------------------

def _v2_file(path: Path, rows: list[tuple[int, str, int]]) -> None:
    """A ledger file as the second schema wrote it: rows `(id, h, key, created_ms)` found through
    one index on h."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE activity_worker_ledger (id INTEGER PRIMARY KEY, "
                 "h INTEGER NOT NULL, key TEXT NOT NULL, created_ms INTEGER NOT NULL)")
    conn.execute("CREATE INDEX activity_worker_ledger_h ON activity_worker_ledger (h)")
    conn.executemany("INSERT INTO activity_worker_ledger (h, key, created_ms) VALUES (?, ?, ?)",
                     rows)
    conn.commit()
    conn.close()


def test_a_file_of_the_second_schema_is_migrated_with_its_done_marks(tmp_path: Path,
                                                                      keys: Keys) -> None:
    from worker.ledger.sqlite_connection import key_hash

    done = keys(1500)
    collide = keys(2)  # two rows of one hash, as the second schema allowed
    _v2_file(tmp_path / "l.db", [(key_hash(k), k, 10**13) for k in done]
             + [(5, k, 10**13) for k in collide])
    ledger = open_ledger(f"sqlite:///{tmp_path}/l.db")
    fresh = keys(3)
    s = ledger.session()
    assert s.claim(done + collide + fresh) == (
        [ClaimState.DONE] * len(done) + [ClaimState.NEW] * 5)  # collide's h was not key_hash
    s.mark_done(fresh)
    s.commit()
    ledger.close()
    conn = sqlite3.connect(tmp_path / "l.db")
    columns = [r[1] for r in conn.execute("PRAGMA table_info(activity_worker_ledger)")]
    assert columns == ["id", "kh", "key", "created_ms"]  # a second-schema worker refuses it
    assert conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'").fetchall() == []
    assert conn.execute("SELECT count(*) FROM activity_worker_ledger_cold").fetchone()[0] == 1502
    conn.close()


def test_a_missing_index_table_is_rebuilt_from_the_rows(tmp_path: Path, keys: Keys) -> None:
    ks = keys(4)
    ledger = open_ledger(f"sqlite:///{tmp_path}/l.db")
    _done(ledger, ks)
    ledger.close()
    conn = sqlite3.connect(tmp_path / "l.db")
    conn.execute("DROP TABLE activity_worker_ledger_cold")
    conn.commit()
    conn.close()
    ledger = open_ledger(f"sqlite:///{tmp_path}/l.db")
    s = ledger.session()
    assert s.claim(ks) == [ClaimState.DONE] * 4
    s.rollback()
    ledger.close()


def _index_sizes(path: Path) -> tuple[int, int]:
    conn = sqlite3.connect(path)
    hot, cold = (conn.execute(f"SELECT count(*) FROM activity_worker_ledger_{p}").fetchone()[0]
                 for p in ("hot", "cold"))
    conn.close()
    return hot, cold


@pytest.mark.parametrize("colliding", [False, True])
def test_merges_into_the_cold_index_keep_every_done_mark(tmp_path: Path, keys: Keys,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         colliding: bool) -> None:
    """Two ledgers on one file (as two processes), each merging the hot index table into the cold
    one after its own batches: every key stays DONE for both, releases and rollbacks still free
    their keys, and collisions are still told apart."""
    import worker.ledger.sqlite as sqlite_ledger

    monkeypatch.setattr(sqlite_schema, "HOT_MIN", 5)
    if colliding:
        monkeypatch.setattr(sqlite_ledger, "key_hashes", lambda keys: [3] * len(keys))
    path = tmp_path / "l.db"
    ledgers = [open_ledger(f"sqlite:///{path}") for _ in range(2)]
    done: list[str] = []
    for round_ in range(6):
        ledger, other = ledgers[round_ % 2], ledgers[(round_ + 1) % 2]
        batch, failed, cancelled = keys(4), keys(1), keys(2)
        s = ledger.session()
        assert s.claim(done + batch + failed) == [ClaimState.DONE] * len(done) + [
            ClaimState.NEW] * 5
        s.mark_done(batch)
        s.release(failed)
        s.commit()
        done += batch
        s = other.session()
        assert s.claim(cancelled + failed + done) == [ClaimState.NEW] * 3 + [
            ClaimState.DONE] * len(done)
        s.rollback()
    hot, cold = _index_sizes(path)
    assert hot < 8 and hot + cold == len(done)  # merged, without the released or rolled-back
    for ledger in ledgers:
        ledger.close()


def test_a_merge_drops_the_entries_of_pruned_rows(tmp_path: Path, keys: Keys,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:

    monkeypatch.setattr(sqlite_schema, "HOT_MIN", 4)
    now = [1_000_000.0]
    ledger = open_ledger(f"sqlite:///{tmp_path}/l.db", retention_seconds=100, lease_seconds=10,
                         prune_interval_seconds=0, clock=lambda: now[0])
    old, kept = keys(6), keys(1)
    for batch in (old, kept):
        _done(ledger, batch)             # old: 6 >= 4 entries, merged into the cold index
        now[0] += 60
    assert _index_sizes(tmp_path / "l.db") == (1, 6)
    assert ledger.prune() == 6           # old is 120 s old, kept 60 s
    young = keys(5)
    _done(ledger, young)                 # the merge drops the pruned rows' entries
    assert _index_sizes(tmp_path / "l.db") == (0, 6)
    s = ledger.session()
    assert s.claim(old + kept + young) == [ClaimState.NEW] * 6 + [ClaimState.DONE] * 6
    s.rollback()
    now[0] += 1000                       # everything expires: the index tables empty too
    assert ledger.prune() == 6
    assert _index_sizes(tmp_path / "l.db") == (0, 0)
    s = ledger.session()
    assert s.claim(old + kept + young) == [ClaimState.NEW] * 12
    s.rollback()
    ledger.close()


def test_a_merge_waits_for_no_other_process(tmp_path: Path, keys: Keys,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A merge is skipped, not waited for, while another process holds the write lock; the
    next batch's commit merges."""
    import worker.ledger.sqlite as sqlite_ledger

    monkeypatch.setattr(sqlite_schema, "HOT_MIN", 2)
    ledger = open_ledger(f"sqlite:///{tmp_path}/l.db?busy_timeout=5")
    ledger.ping()
    s = ledger.session()
    s.claim(keys(3))
    s.commit()                           # nothing marked done: the claims are released
    ks = keys(3)
    s = ledger.session()
    s.claim(ks)
    s.mark_done(ks)
    blocker = sqlite3.connect(tmp_path / "l.db", isolation_level=None)
    original = sqlite_ledger.SqliteLedger._merge

    def merge_while_locked(self: sqlite_ledger.SqliteLedger) -> None:
        blocker.execute("BEGIN IMMEDIATE")
        try:
            original(self)
        finally:
            blocker.execute("ROLLBACK")

    monkeypatch.setattr(sqlite_ledger.SqliteLedger, "_merge", merge_while_locked)
    import time

    t0 = time.monotonic()
    s.commit()
    assert time.monotonic() - t0 < 2
    assert _index_sizes(tmp_path / "l.db") == (3, 0)
    monkeypatch.setattr(sqlite_ledger.SqliteLedger, "_merge", original)
    s = ledger.session()
    assert s.claim(ks) == [ClaimState.DONE] * 3
    s.commit()                           # no new rows, but the merge is still due
    assert _index_sizes(tmp_path / "l.db") == (0, 3)
    blocker.close()
    ledger.close()


def test_a_merge_overdue_twice_over_waits_for_the_lock(tmp_path: Path, keys: Keys,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Busy processes sharing a file would starve a merge that never waits: once the hot table
    holds twice its limit, the merge waits for the write lock (up to busy_timeout)."""
    import threading

    import worker.ledger.sqlite as sqlite_ledger

    monkeypatch.setattr(sqlite_schema, "HOT_MIN", 2)
    ledger = open_ledger(f"sqlite:///{tmp_path}/l.db?busy_timeout=10")
    ks = keys(4)
    s = ledger.session()
    s.claim(ks)
    s.mark_done(ks)
    blocker = sqlite3.connect(tmp_path / "l.db", isolation_level=None, check_same_thread=False)
    original = sqlite_ledger.SqliteLedger._merge

    def merge_while_locked(self: sqlite_ledger.SqliteLedger) -> None:
        blocker.execute("BEGIN IMMEDIATE")
        threading.Timer(0.3, blocker.execute, ("ROLLBACK",)).start()
        original(self)

    monkeypatch.setattr(sqlite_ledger.SqliteLedger, "_merge", merge_while_locked)
    s.commit()                           # 4 >= 2 * 2: waits ~0.3 s for the lock, then merges
    assert _index_sizes(tmp_path / "l.db") == (0, 4)
    blocker.close()
    ledger.close()
