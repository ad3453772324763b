"""Every librdkafka 2.16 property that holds a secret is redacted in logs (and scrubbed from
error texts). The list is librdkafka's CONFIGURATION.md properties whose value is a password,
key, token or credential."""

from __future__ import annotations

import pytest

from worker.kafka.secrets import is_secret, redact

SECRET = [
    "sasl.password",
    "sasl.oauthbearer.config",
    "sasl.oauthbearer.client.secret",
    "sasl.oauthbearer.assertion.private.key.pem",
    "sasl.oauthbearer.assertion.private.key.passphrase",
    "ssl.key.password",
    "ssl.key.pem",
    "ssl_key",
    "ssl.keystore.password",
]
NOT_SECRET = ["sasl.username", "sasl.mechanism", "security.protocol", "ssl.ca.location",
              "ssl.certificate.location", "ssl.certificate.pem", "bootstrap.servers",
              "sasl.oauthbearer.method", "sasl.oauthbearer.client.id"]


@pytest.mark.parametrize("key", SECRET)
def test_secret_properties_are_redacted(key: str) -> None:
    assert is_secret(key)
    assert redact({key: "s3cr3t-value"}) == {key: "***"}


@pytest.mark.parametrize("key", NOT_SECRET)
def test_plain_properties_are_shown(key: str) -> None:
    assert not is_secret(key)
    assert redact({key: "value"}) == {key: "value"}
