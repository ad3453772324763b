"""Which librdkafka properties are secrets, and keeping their values out of logs and errors."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Properties whose value is a secret (matched on the full key or as a substring).
# "passphrase" and "private.key": sasl.oauthbearer.assertion.private.key.{passphrase,pem}
# (librdkafka's JWT-bearer client assertion).
_SECRET_MARKERS = ("password", "secret", "sasl.oauthbearer.config", "ssl.key.pem",
                   "sasl.jaas.config", "ssl_key", "token", "credentials", "passphrase",
                   "private.key")


def is_secret(key: str) -> bool:
    k = key.lower()
    return any(marker in k for marker in _SECRET_MARKERS)


def redact(config: Mapping[str, Any]) -> dict[str, Any]:
    """A copy safe to log: secret values replaced, callables shown by name."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if is_secret(key):
            out[key] = "***"
        elif callable(value):
            out[key] = f"<{getattr(value, '__name__', 'callable')}>"
        else:
            out[key] = value
    return out


def secret_values(config: Mapping[str, Any]) -> list[str]:
    """The values of secret properties (for `scrub`), longest first."""
    values = [str(v) for k, v in config.items() if is_secret(k) and not callable(v) and v]
    return sorted((v for v in values if len(v) >= 3), key=len, reverse=True)


def scrub(text: str, secrets: list[str]) -> str:
    """`text` with every secret value replaced by ***."""
    for value in secrets:
        text = text.replace(value, "***")
    return text
