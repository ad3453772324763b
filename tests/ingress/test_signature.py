"""The signature matrix, without a server: raw body and compact JSON, two secrets during a
rotation, wrong, missing, upper-case hex, non-hex, a body changed by one byte."""

from __future__ import annotations

import json

import pytest

from worker.ingress.signature import Signed, check, compact, sign

OLD, NEW = b"old-secret-key", b"new-secret-key"
DOC = {"id": "whs_1", "type": "customer.created", "data": {"customer": {"id": "cust_1",
                                                                        "name": "Zoë"}}}
PRETTY = json.dumps(DOC, indent=2, ensure_ascii=False).encode()
COMPACT = json.dumps(DOC, separators=(",", ":"), ensure_ascii=False).encode()


@pytest.mark.parametrize(("body", "header", "secrets", "expected"), [
    (PRETTY, sign(PRETTY, OLD), (OLD,), Signed.RAW),
    (PRETTY, sign(COMPACT, OLD), (OLD,), Signed.COMPACT),   # signed on the compact form
    (COMPACT, sign(COMPACT, OLD), (OLD,), Signed.RAW),
    (PRETTY, sign(PRETTY, OLD), (NEW, OLD), Signed.RAW),    # rotation: the old still works
    (PRETTY, sign(PRETTY, NEW), (NEW, OLD), Signed.RAW),    # ... and the new
    (PRETTY, sign(PRETTY, NEW), (OLD,), Signed.WRONG),      # a secret not (yet) configured
    (PRETTY, sign(PRETTY, OLD).upper(), (OLD,), Signed.RAW),  # hex is case-insensitive
    (PRETTY, f"  {sign(PRETTY, OLD)} ", (OLD,), Signed.RAW),
    (PRETTY, None, (OLD,), Signed.MISSING),
    (PRETTY, "", (OLD,), Signed.MISSING),
    (PRETTY, "z" * 64, (OLD,), Signed.MALFORMED),           # not hex
    (PRETTY, sign(PRETTY, OLD)[:-2], (OLD,), Signed.MALFORMED),  # too short
    (PRETTY, "sha256=" + sign(PRETTY, OLD), (OLD,), Signed.MALFORMED),
    (PRETTY + b"\n", sign(COMPACT, OLD), (OLD,), Signed.COMPACT),  # whitespace only: same JSON
    (PRETTY.replace(b"cust_1", b"cust_2"), sign(PRETTY, OLD), (OLD,), Signed.WRONG),  # one byte
    (b"not json", sign(b"not json", OLD), (OLD,), Signed.RAW),
    (b"not json", sign(b"not jsom", OLD), (OLD,), Signed.WRONG),
    (PRETTY, sign(PRETTY, OLD), (), Signed.WRONG),
], ids=["raw", "compact", "compact-body", "rotation-old", "rotation-new", "unknown-secret",
        "upper-hex", "spaces", "missing", "empty", "non-hex", "short", "prefixed",
        "whitespace-changed", "one-byte-changed", "not-json-signed", "not-json-wrong",
        "no-secrets"])
def test_signature_matrix(body: bytes, header: str | None, secrets: tuple[bytes, ...],
                          expected: Signed) -> None:
    assert check(body, header, secrets) == expected


def test_the_compact_form_keeps_key_order_and_non_ascii() -> None:
    assert compact(PRETTY) == COMPACT
    assert compact(b"{nope") is None
