"""A private Kafka broker with secured client listeners, for the tests of the worker against
SASL/SCRAM, SASL/OAUTHBEARER and mTLS. Built on the local launcher's internals
(devtools/local_broker.py: `settings_from` + extra `Listener`s + `--add-scram` at format
time), on free ports and a temp data dir; it never touches the broker on 9092.

Listeners (the controller and the inter-broker PLAINTEXT listener stay plain):

| name     | protocol       | client authentication                                     |
|----------|----------------|-----------------------------------------------------------|
| SCRAM    | SASL_PLAINTEXT | SCRAM-SHA-512 (user made at format time); re-auth every 3 s |
| SCRAMTLS | SASL_SSL       | the same SCRAM user, over TLS (broker certificate only)    |
| OAUTH    | SASL_PLAINTEXT | OAUTHBEARER, Kafka's default *unsecured* JWT validator     |
| MTLS     | SSL            | a certificate signed by the test CA (client auth required) |

The CA, the broker's certificate (SAN IP:127.0.0.1) and the client's certificate and encrypted
key are made with `openssl` at test time (EC P-256: fast). Every secret is random per run.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from devtools.local_broker import (
    BrokerSettings,
    LauncherError,
    Listener,
    down,
    running_pid,
    settings_from,
    up,
)
from tests.kafka_helpers import free_port

SCRAM_USER = "worker"


@dataclass(frozen=True)
class Pki:
    """Files and secrets of the test CA, the broker certificate and the client certificate."""

    ca: Path
    broker_keystore: Path  # PEM: unencrypted PKCS#8 key, then the certificate
    client_cert: Path
    client_key: Path  # PEM: PKCS#8 encrypted with key_password
    key_password: str

    @property
    def client_key_pem(self) -> str:
        return self.client_key.read_text()

    @property
    def client_cert_pem(self) -> str:
        return self.client_cert.read_text()


def set_scram_password(plain_bootstrap: str, password: str) -> None:
    """Create or change the SCRAM-SHA-512 credential of SCRAM_USER (through PLAINTEXT)."""
    from confluent_kafka.admin import (
        AdminClient,
        ScramCredentialInfo,
        ScramMechanism,
        UserScramCredentialUpsertion,
    )

    admin = AdminClient({"bootstrap.servers": plain_bootstrap})
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096)
    futures = admin.alter_user_scram_credentials(
        [UserScramCredentialUpsertion(SCRAM_USER, info, password.encode())])
    for fut in futures.values():
        fut.result(timeout=30)


def _openssl(*args: str, cwd: Path) -> None:
    proc = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60, check=False)
    if proc.returncode != 0:
        raise AssertionError(f"openssl {args[0]} failed: {proc.stderr.strip()[-800:]}")


def make_pki(directory: Path) -> Pki:
    """A throw-away CA, a broker certificate for 127.0.0.1 and a client certificate."""
    d = directory
    d.mkdir(parents=True, exist_ok=True)
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256")
    _openssl("req", "-x509", *ec, "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
             "-subj", "/CN=activity-worker test CA", cwd=d)
    (d / "broker.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                                  "extendedKeyUsage=serverAuth\n")
    (d / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for name in ("broker", "client"):
        _openssl("req", "-new", *ec, "-nodes", "-keyout", f"{name}.plain.key", "-out",
                 f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext", "-out",
                 f"{name}.pem", cwd=d)
    # Kafka's PEM keystore: the private key (PKCS#8) followed by the certificate.
    _openssl("pkcs8", "-topk8", "-nocrypt", "-in", "broker.plain.key", "-out", "broker.p8",
             cwd=d)
    (d / "broker.keystore.pem").write_text((d / "broker.p8").read_text()
                                           + (d / "broker.pem").read_text())
    password = "keypw-" + secrets.token_hex(8)
    _openssl("pkcs8", "-topk8", "-v2", "aes-256-cbc", "-in", "client.plain.key", "-out",
             "client.key", "-passout", f"pass:{password}", cwd=d)
    for f in ("ca.key", "broker.plain.key", "client.plain.key", "broker.p8"):
        (d / f).unlink()
    return Pki(ca=d / "ca.pem", broker_keystore=d / "broker.keystore.pem",
               client_cert=d / "client.pem", client_key=d / "client.key", key_password=password)


@dataclass(frozen=True)
class SecureBroker:
    settings: BrokerSettings
    pki: Pki
    scram_password: str
    ports: dict[str, int]  # listener name -> port

    @property
    def plain_bootstrap(self) -> str:
        """The PLAINTEXT listener: for test setup (topics, producing, offset checks) only."""
        return self.settings.bootstrap

    def bootstrap(self, listener: str) -> str:
        return f"127.0.0.1:{self.ports[listener]}"

    @property
    def pid(self) -> int:
        pid = running_pid(self.settings)
        assert pid is not None, "the private broker is not running"
        return pid

    def scram_env(self, password: str | None = None, *, tls: bool = False) -> dict[str, str]:
        """librdkafka settings for the SCRAM listener (SCRAMTLS with `tls`), as KAFKA_* env."""
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap("SCRAMTLS" if tls else "SCRAM"),
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL" if tls else "SASL_PLAINTEXT",
            "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "KAFKA_SASL_USERNAME": SCRAM_USER,
            "KAFKA_SASL_PASSWORD": self.scram_password if password is None else password,
        }
        if tls:
            env["KAFKA_SSL_CA_LOCATION"] = str(self.pki.ca)
        return env

    def oauth_args(self, token_secret: str) -> list[str]:
        """librdkafka settings for the OAUTHBEARER listener, as --kafka-config flags. The
        unsecured JWT librdkafka builds carries `token_secret` as an extension, so a leak of
        sasl.oauthbearer.config into the logs would show it."""
        config = f"principal=worker lifeSeconds=3600 extension_testtoken={token_secret}"
        return [
            "--kafka-config", f"bootstrap.servers={self.bootstrap('OAUTH')}",
            "--kafka-config", "security.protocol=SASL_PLAINTEXT",
            "--kafka-config", "sasl.mechanism=OAUTHBEARER",
            "--kafka-config", "enable.sasl.oauthbearer.unsecure.jwt=true",
            "--kafka-config", f"sasl.oauthbearer.config={config}",
        ]  # fmt: skip

    def mtls_env(self, *, with_cert: bool = True) -> dict[str, str]:
        """librdkafka settings for the mTLS listener, as KAFKA_* env vars; the client key and
        certificate are passed inline (ssl.key.pem / ssl.certificate.pem)."""
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap("MTLS"),
            "KAFKA_SECURITY_PROTOCOL": "SSL",
            "KAFKA_SSL_CA_LOCATION": str(self.pki.ca),
        }
        if with_cert:
            env |= {
                "KAFKA_SSL_CERTIFICATE_PEM": self.pki.client_cert_pem,
                "KAFKA_SSL_KEY_PEM": self.pki.client_key_pem,
                "KAFKA_SSL_KEY_PASSWORD": self.pki.key_password,
            }
        return env


def _listeners(pki: Pki, ports: dict[str, int]) -> tuple[Listener, ...]:
    scram_jaas = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
    oauth_jaas = ("org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule "
                  'required unsecuredLoginStringClaim_sub="broker";')
    scram = (("sasl.enabled.mechanisms", "SCRAM-SHA-512"),
             ("scram-sha-512.sasl.jaas.config", scram_jaas))
    server_tls = (("ssl.keystore.type", "PEM"),
                  ("ssl.keystore.location", str(pki.broker_keystore)))
    return (
        # KIP-368: clients must re-authenticate every 3 s, so a credential changed on the
        # broker reaches connections that are already open (the re-authentication test).
        Listener("SCRAM", ports["SCRAM"], "SASL_PLAINTEXT", (
            *scram, ("scram-sha-512.connections.max.reauth.ms", "3000"))),
        Listener("SCRAMTLS", ports["SCRAMTLS"], "SASL_SSL", (*scram, *server_tls)),
        # No sasl.server.callback.handler.class: Kafka's default unsecured validator.
        Listener("OAUTH", ports["OAUTH"], "SASL_PLAINTEXT", (
            ("sasl.enabled.mechanisms", "OAUTHBEARER"),
            ("oauthbearer.sasl.jaas.config", oauth_jaas),
        )),
        Listener("MTLS", ports["MTLS"], "SSL", (
            *server_tls,
            ("ssl.truststore.type", "PEM"),
            ("ssl.truststore.location", str(pki.ca)),
            ("ssl.client.auth", "required"),
        )),
    )  # fmt: skip


@contextmanager
def secure_broker(directory: Path) -> Iterator[SecureBroker]:
    """Start the private broker (formatted fresh in `directory`), yield it, stop it. A broker
    left SIGSTOPped by a failed test is continued first, so it can stop."""
    pki = make_pki(directory / "pki")
    password = "scram-" + secrets.token_hex(12)
    ports = {name: free_port() for name in ("SCRAM", "SCRAMTLS", "OAUTH", "MTLS")}
    base = settings_from(port=free_port(), controller_port=free_port(),
                         data_dir=directory / "kafka", heap="512M", timeout_s=90.0,
                         runtime="jvm", env={})
    settings = dataclasses.replace(
        base,
        listeners=_listeners(pki, ports),
        scram_credentials=(f"SCRAM-SHA-512=[name={SCRAM_USER},password={password}]",),
        # Lets the lost-partition test use a short consumer session.
        extra_properties=(("group.min.session.timeout.ms", "1000"),),
    )
    lines: list[str] = []
    try:
        up(settings, lines.append)
    except LauncherError as exc:
        raise AssertionError(f"the private secured broker did not start: {exc}\n"
                             + "\n".join(lines)) from None
    try:
        yield SecureBroker(settings, pki, password, ports)
    finally:
        pid = running_pid(settings)
        if pid is not None:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        down(settings, lambda _line: None)
