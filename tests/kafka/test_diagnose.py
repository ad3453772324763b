"""worker.kafka.diagnose: librdkafka's connection errors → the cause and the settings to fix
(texts as librdkafka 2.16 reports them; the real broker cases are in
tests/integration/test_secured_kafka.py)."""

from __future__ import annotations

from worker.kafka.diagnose import classify
from worker.kafka.secrets import scrub, secret_values

SASL = {"bootstrap.servers": "b:9094", "security.protocol": "SASL_SSL",
        "sasl.username": "worker", "sasl.password": "hunter2-secret"}


def test_authentication_names_the_sasl_settings_and_hides_the_password() -> None:
    d = classify("_AUTHENTICATION", "sasl_ssl://b:9094/bootstrap: SASL authentication error: "
                 "Authentication failed ... hunter2-secret (after 307ms in state AUTH_REQ)", SASL)
    assert d is not None and d.kind == "authentication" and d.is_settings_problem
    assert "b:9094 rejected the worker's credentials" in d.message
    assert "sasl.password" in d.message
    assert "hunter2-secret" not in d.message and "sasl_ssl://" not in d.message


def test_missing_and_rejected_client_certificates() -> None:
    text = ("ssl://b:9093/bootstrap: Receive failed: error:0A000412:SSL routines::ssl/tls alert "
            "bad certificate: SSL alert number 42 (after 0ms in state APIVERSION_QUERY)")
    none = classify("_TRANSPORT", text, {"security.protocol": "SSL"})
    assert none is not None and none.kind == "client_certificate"
    assert "requires a client certificate (mTLS) and the worker sent none" in none.message
    given = classify("_TRANSPORT", text, {"ssl.certificate.location": "/c.pem"})
    assert given is not None and "rejected the worker's client certificate" in given.message


def test_broker_certificate_not_trusted() -> None:
    d = classify("_SSL", "ssl://b:9093/bootstrap: SSL handshake failed: certificate verify "
                 "failed", {"security.protocol": "SSL"})
    assert d is not None and d.kind == "tls" and "ssl.ca.location" in d.message


def test_transport_problems_are_not_settings_problems() -> None:
    refused = classify("_TRANSPORT", "b:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: "
                       "Connection refused", {"bootstrap.servers": "b:1"})
    assert refused is not None and not refused.is_settings_problem
    assert "nothing accepts connections at b:1" in refused.message
    closed = classify("_ALL_BROKERS_DOWN", "1/1 brokers are down", {})
    assert closed is not None and "set security.protocol" in closed.message
    assert classify("_ALL_BROKERS_DOWN", "1/1 brokers are down", SASL) is None
    assert classify("_MSG_TIMED_OUT", "whatever", SASL) is None


def test_scrub_and_secret_values() -> None:
    cfg = {"sasl.password": "pw-1234", "ssl.key.pem": "-----BEGIN KEY-----abc",
           "sasl.username": "worker", "ssl.key.password": "", "on_commit": print}
    values = secret_values(cfg)
    assert values == ["-----BEGIN KEY-----abc", "pw-1234"]
    assert scrub("a pw-1234 b", values) == "a *** b"
