"""`activity-worker report`: a compact summary of the built-in processors' read models."""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from worker.processors.sql import Sql

HELP = ("Print a summary of the built-in read models: top loyalty tiers, points totals, "
        "redemption failure codes, delivery failure rate per channel.")

DEFAULT_LEDGER = "sqlite:///./.local/activity-worker.db"
ENV_LEDGER = "WORKER_LEDGER"
TABLES = ("rm_loyalty_tier_current", "rm_points_cards", "rm_points_transactions",
          "rm_pending_points", "rm_redemptions", "rm_message_deliveries")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ledger", default=None, metavar="URL",
        help=f"the SQL ledger holding the read models: sqlite:///relative.db, "
        f"sqlite:////absolute.db or postgresql://... (default ${ENV_LEDGER} or {DEFAULT_LEDGER})")
    parser.add_argument("--top", type=int, default=5, metavar="N",
                        help="rows per top-N list (default 5)")


def sqlite_path(url: str) -> Path:
    """sqlite:///relative/path.db -> relative/path.db; sqlite:////abs.db -> /abs.db."""
    return Path(url.removeprefix("sqlite:///"))


def _connect(url: str) -> Any:
    if url.startswith("sqlite:///"):
        path = sqlite_path(url)
        if not path.is_file():
            raise _Unavailable(f"no ledger database at {path}: run the worker first (it creates "
                               f"the file), or point --ledger / ${ENV_LEDGER} at it.")
        return sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    if url.startswith(("postgresql://", "postgres://")):
        import psycopg

        try:
            return psycopg.connect(url, connect_timeout=10)
        except psycopg.Error as exc:
            raise _Unavailable(f"cannot connect to the PostgreSQL ledger: {exc}".strip()
                               + "; check --ledger / $WORKER_LEDGER.") from None
    raise _Unavailable(f"the report reads a SQL ledger; {url.split(':', 1)[0]}:// keeps no read "
                       "models: pass --ledger sqlite:///path.db or postgresql://...")


class _Unavailable(Exception):
    pass


def _table_exists(sql: Sql, table: str) -> bool:
    if sql.dialect == "sqlite":
        return sql.fetchone("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                            (table,)) is not None
    row = sql.fetchone("SELECT to_regclass(?) IS NOT NULL", (table,))  # follows search_path
    return bool(row and row[0])


def run(args: argparse.Namespace) -> int:
    url = args.ledger or os.environ.get(ENV_LEDGER) or DEFAULT_LEDGER
    try:
        conn = _connect(url)
    except _Unavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        sql = Sql(conn)
        missing = [t for t in TABLES if not _table_exists(sql, t)]
        if len(missing) == len(TABLES):
            print("error: the ledger has no read-model tables yet: run the worker with the "
                  "built-in processors on (the default) to create and fill them.",
                  file=sys.stderr)
            return 2
        print(render(sql, max(1, args.top), set(TABLES) - set(missing)))
        return 0
    finally:
        conn.close()


def _pct(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.1f}%" if whole else "-"


def render(sql: Sql, top: int, tables: set[str]) -> str:
    """The report text (tables absent from `tables` are reported as empty)."""
    out: list[str] = []
    for title, section in _SECTIONS:
        out.append(title)
        out += section(sql, top, tables) or ["  (none)"]
    return "\n".join(out)


def _tiers(sql: Sql, top: int, tables: set[str]) -> list[str]:
    if "rm_loyalty_tier_current" not in tables:
        return []
    rows = sql.fetchall(
        "SELECT COALESCE(campaign_name, campaign_id), COALESCE(tier_name, tier_id), COUNT(*) "
        "FROM rm_loyalty_tier_current WHERE tier_id IS NOT NULL "
        "GROUP BY COALESCE(campaign_name, campaign_id), COALESCE(tier_name, tier_id) "
        "ORDER BY COUNT(*) DESC, 1, 2 LIMIT ?", (top,))
    return [f"  {n:>6}  {tier}  ({campaign})" for campaign, tier, n in rows]


def _points(sql: Sql, top: int, tables: set[str]) -> list[str]:
    if "rm_points_cards" not in tables:
        return []
    cards, balance = sql.fetchone(
        "SELECT COUNT(*), COALESCE(SUM(balance), 0) FROM rm_points_cards") or (0, 0)
    customers = (sql.fetchone("SELECT COUNT(DISTINCT customer_id) FROM rm_points_cards")
                 or (0,))[0]
    pending = (sql.fetchone("SELECT COALESCE(SUM(points), 0) FROM rm_pending_points "
                            "WHERE state = 'pending'") or (0,))[0] \
        if "rm_pending_points" in tables else 0
    txs = (sql.fetchone("SELECT COUNT(*) FROM rm_points_transactions") or (0,))[0] \
        if "rm_points_transactions" in tables else 0
    out = [f"  {cards} card(s) of {customers} customer(s): balance {balance} points, "
           f"pending {pending}, {txs} transaction(s)"]
    for customer, pts in sql.fetchall(
            "SELECT customer_id, SUM(balance) FROM rm_points_cards "
            "GROUP BY customer_id ORDER BY SUM(balance) DESC, customer_id LIMIT ?", (top,)):
        out.append(f"  {pts:>6}  {customer}")
    return out


def _outcomes_per(sql: Sql, query: str) -> dict[str, dict[str, int]]:
    """Rows counted per group and outcome, from `SELECT group, outcome, COUNT(*) ...`."""
    per: dict[str, dict[str, int]] = {}
    for group, outcome, n in sql.fetchall(query):
        per.setdefault(group, {})[outcome] = n
    return per


def _redemptions(sql: Sql, top: int, tables: set[str]) -> list[str]:
    if "rm_redemptions" not in tables:
        return []
    per = _outcomes_per(sql, "SELECT COALESCE(NULLIF(campaign_name, ''), "
                        "NULLIF(campaign_id, ''), '(no campaign)'), outcome, COUNT(*) "
                        "FROM rm_redemptions GROUP BY 1, 2")
    ranked = sorted(per.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))[:top]
    out = [f"  {campaign}: {c.get('succeeded', 0)} / {c.get('failed', 0)} / "
           f"{c.get('rolled_back', 0)} / {c.get('rollback_failed', 0)}" for campaign, c in ranked]
    codes = sql.fetchall(
        "SELECT failure_code, COUNT(*) FROM rm_redemptions WHERE failure_code IS NOT NULL "
        "GROUP BY failure_code ORDER BY COUNT(*) DESC, failure_code LIMIT ?", (top,))
    if codes:
        out.append("  failure codes: " + ", ".join(f"{code} {n}" for code, n in codes))
    return out


def _deliveries(sql: Sql, top: int, tables: set[str]) -> list[str]:
    if "rm_message_deliveries" not in tables:
        return []
    out = []
    per = _outcomes_per(sql, "SELECT channel, outcome, COUNT(*) FROM rm_message_deliveries "
                        "GROUP BY 1, 2")
    for channel, c in sorted(per.items()):
        sent, failed = c.get("sent", 0), c.get("failed", 0)
        out.append(f"  {channel}: {sent} / {failed} / {c.get('recovered', 0)}, "
                   f"{_pct(failed, sent + failed)} failed")
    return out


#: the report's sections in order: a title, then the section's lines ("  (none)" when empty)
_SECTIONS: tuple[tuple[str, Callable[[Sql, int, set[str]], list[str]]], ...] = (
    ("Loyalty tiers (customers per current tier)", _tiers),
    ("Loyalty points", _points),
    ("Redemptions per campaign (succeeded / failed / rolled back / rollback failed)",
     _redemptions),
    ("Message delivery per channel (sent / failed / recovered, failure rate)", _deliveries),
)
