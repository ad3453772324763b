"""Turn librdkafka's connection errors into sentences an operator can act on.

librdkafka retries a failed authentication or TLS handshake for ever and reports it only as an
error callback (plus `%3|...|FAIL|` lines on stderr); a metadata request then fails with a bare
"Broker transport failure". `classify` names the cause (SASL credentials, the broker's
certificate, a missing or rejected client certificate, a protocol mismatch, nothing listening)
and says which settings to fix, with secret values scrubbed from librdkafka's text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from worker.kafka.secrets import scrub, secret_values

SASL_SETTINGS = ("sasl.mechanism, sasl.username and sasl.password (or the sasl.oauthbearer.* "
                 "settings) via --kafka-config or KAFKA_SASL_* env")
CLIENT_CERT_SETTINGS = ("ssl.certificate.location + ssl.key.location (or ssl.certificate.pem + "
                        "ssl.key.pem) and ssl.key.password")

# OpenSSL alerts a broker sends when it wants (another) client certificate: 42 bad certificate,
# 116 certificate required (TLS 1.3), 48 unknown CA, 45 certificate expired.
_CLIENT_CERT_ALERTS = re.compile(r"alert (bad certificate|certificate required|unknown ca|"
                                 r"certificate expired)|alert number (42|116|48|45)\b", re.I)
_DETAIL = re.compile(r"^[a-z_]+://[^ ]+: ", re.I)  # "sasl_ssl://host:port/bootstrap: " prefix


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """What went wrong (`kind`: authentication, tls, client_certificate, transport) and the
    operator-facing sentence (cause + what to change)."""

    kind: str
    message: str

    @property
    def is_settings_problem(self) -> bool:
        """Credentials or certificates: retrying cannot help, the settings must change."""
        return self.kind in ("authentication", "tls", "client_certificate")


def classify(code_name: str, text: str, config: Mapping[str, Any]) -> Diagnosis | None:
    """A Diagnosis for a librdkafka error (its code name, e.g. `_AUTHENTICATION`, and text),
    or None when the error says nothing about the connection settings."""
    detail = scrub(_DETAIL.sub("", text.strip()), secret_values(config))
    where = config.get("bootstrap.servers", "?")
    protocol = str(config.get("security.protocol", "plaintext")).upper()
    if code_name == "_AUTHENTICATION":
        return Diagnosis("authentication", (
            f"Kafka at {where} rejected the worker's credentials ({detail}). Check "
            f"{SASL_SETTINGS}: the user, password/token and mechanism must match what the "
            "broker's listener accepts."))
    if code_name == "_SSL":
        return Diagnosis("tls", (
            f"the TLS handshake with Kafka at {where} failed ({detail}). Check ssl.ca.location "
            "(the CA that signed the broker's certificate) and that the broker's certificate "
            "names the host in bootstrap.servers; for mTLS also " + CLIENT_CERT_SETTINGS + "."))
    if code_name == "_TRANSPORT" and _CLIENT_CERT_ALERTS.search(text):
        have_cert = any(k in config for k in ("ssl.certificate.location", "ssl.certificate.pem",
                                              "ssl.keystore.location"))
        cause = ("rejected the worker's client certificate" if have_cert else
                 "requires a client certificate (mTLS) and the worker sent none")
        return Diagnosis("client_certificate", (
            f"Kafka at {where} {cause} ({detail}). Set {CLIENT_CERT_SETTINGS} to a certificate "
            "signed by a CA the broker trusts (--kafka-config or KAFKA_SSL_* env)."))
    if code_name == "_TRANSPORT" and "refused" in text.lower():
        return Diagnosis("transport", (
            f"nothing accepts connections at {where} ({detail}). Check --bootstrap-servers "
            "(or KAFKA_BOOTSTRAP_SERVERS) and that the broker runs."))
    if code_name in ("_TRANSPORT", "_ALL_BROKERS_DOWN") and "SASL" not in protocol \
            and "SSL" not in protocol:
        return Diagnosis("transport", (
            f"Kafka at {where} closed the connection ({detail}). If that listener is secured, "
            "set security.protocol (SSL, SASL_SSL or SASL_PLAINTEXT) and its settings."))
    return None
