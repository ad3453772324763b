"""The launcher's extra listeners (used by tests/secure_kafka.py): what server.properties and
the storage format command get. The real broker with these listeners runs in
tests/integration/test_secured_kafka.py."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from devtools.local_broker import Listener, server_properties, settings_from


def test_listeners_are_added_next_to_plaintext_with_scoped_properties(tmp_path: Path) -> None:
    base = settings_from(port=20000, controller_port=20001, data_dir=tmp_path, env={})
    s = dataclasses.replace(
        base,
        listeners=(Listener("SCRAM", 20002, "SASL_PLAINTEXT",
                            (("sasl.enabled.mechanisms", "SCRAM-SHA-512"),)),
                   Listener("MTLS", 20003, "SSL", (("ssl.client.auth", "required"),))),
        extra_properties=(("group.min.session.timeout.ms", "1000"),))
    props = dict(line.split("=", 1) for line in server_properties(s).splitlines()
                 if line and not line.startswith("#"))
    assert props["listeners"] == ("PLAINTEXT://127.0.0.1:20000,CONTROLLER://127.0.0.1:20001,"
                                  "SCRAM://127.0.0.1:20002,MTLS://127.0.0.1:20003")
    assert props["advertised.listeners"] == ("PLAINTEXT://127.0.0.1:20000,"
                                             "SCRAM://127.0.0.1:20002,MTLS://127.0.0.1:20003")
    assert props["listener.security.protocol.map"] == (
        "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SCRAM:SASL_PLAINTEXT,MTLS:SSL")
    assert props["inter.broker.listener.name"] == "PLAINTEXT"
    assert props["listener.name.scram.sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert props["listener.name.mtls.ssl.client.auth"] == "required"
    assert props["group.min.session.timeout.ms"] == "1000"
    assert s.ports == (20000, 20001, 20002, 20003)


def test_without_listeners_the_properties_are_unchanged(tmp_path: Path) -> None:
    s = settings_from(port=20000, controller_port=20001, data_dir=tmp_path, env={})
    text = server_properties(s)
    assert "listeners=PLAINTEXT://127.0.0.1:20000,CONTROLLER://127.0.0.1:20001\n" in text
    assert "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT\n" in text
    assert "listener.name." not in text
