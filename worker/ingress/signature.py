"""Voucherify's webhook signature: the header `x-voucherify-signature` holds the hex HMAC-SHA256
of the message with the project's secret key.

Voucherify's own snippet signs the body as sent; integrators report deliveries whose signature
matches the compact (whitespace-free) JSON re-serialisation instead. Both are accepted: the raw
body first (no parsing), then the compact form of its JSON. Several secrets may be valid at once
(a rotation). Every comparison is constant-time (`hmac.compare_digest` on the digests); the hex
is read case-insensitively, and a header that is not 64 hex digits is refused without a compare.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Sequence
from enum import StrEnum

HEADER = "x-voucherify-signature"
UNSIGNED = "unsigned"  # how a delivery "matched" in the loopback development mode (--unsigned)


class Signed(StrEnum):
    """How a delivery's signature matched (or why it did not)."""

    RAW = "raw"          # the HMAC of the body as received
    COMPACT = "compact"  # the HMAC of the body's compact JSON
    MISSING = "missing"
    MALFORMED = "malformed"  # not 64 hex digits
    WRONG = "wrong"


def compact(body: bytes) -> bytes | None:
    """The compact re-serialisation of a JSON body (no spaces, key order and non-ASCII kept as
    sent); None when the body is not JSON."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def check(body: bytes, header: str | None, secrets: Sequence[bytes]) -> Signed:
    if not header:
        return Signed.MISSING
    text = header.strip()
    if len(text) != 64:
        return Signed.MALFORMED
    try:
        given = bytes.fromhex(text)
    except ValueError:
        return Signed.MALFORMED
    if any(hmac.compare_digest(given, hmac.new(s, body, hashlib.sha256).digest())
           for s in secrets):
        return Signed.RAW
    other = compact(body)
    if other is not None and other != body and any(
            hmac.compare_digest(given, hmac.new(s, other, hashlib.sha256).digest())
            for s in secrets):
        return Signed.COMPACT
    return Signed.WRONG


def sign(body: bytes, secret: bytes) -> str:
    """The header value Voucherify sends for `body` (for tests and the demo)."""
    return hmac.new(secret, body, hashlib.sha256).hexdigest()
