"""Idempotency ledgers. `open_ledger(url)` picks the backend from the URL scheme."""

from worker.ledger.base import ClaimState, Ledger, LedgerSession

__all__ = ["ClaimState", "Ledger", "LedgerSession"]
