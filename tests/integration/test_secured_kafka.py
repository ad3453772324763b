"""The real worker (`python -m worker run`) against a real broker's secured listeners:
SASL/SCRAM (over SASL_PLAINTEXT and SASL_SSL), SASL/OAUTHBEARER (unsecured JWT) and mTLS, each
configured ONLY through `--kafka-config` or KAFKA_* env. Each run consumes every event,
dead-letters the bad ones through the same secured connection (the DLQ producer shares the
consumer's security settings), commits, and never prints a secret. Wrong credentials and a
missing client certificate stop the worker at once with a sentence that names the problem and
the settings to fix.

The broker (tests/secure_kafka.py) runs on free ports with its own data dir; test setup and
checks use its PLAINTEXT listener.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from tests.engine.helpers import (
    Running,
    committed,
    create_topic,
    event_json,
    produce,
    read_all,
    wait_for,
)
from tests.kafka_helpers import unique_name
from tests.secure_kafka import SecureBroker, set_scram_password
from worker.engine.lifecycle import EXIT_BAD_SETTINGS, EXIT_OK
from worker.engine.loop import Engine, EngineConfig
from worker.kafka.config import build_consumer_config
from worker.kafka.confluent_consumer import ConfluentConsumer
from worker.observability.health import HealthState
from worker.types import BatchResult, Message

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(120)]

REPO = Path(__file__).resolve().parents[2]
GOOD, BAD, PARTITIONS = 30, 3, 2

SEEN_MODULE = '''
import os

from worker.processors import processor


@processor("**", name="seen")
def seen(event, ctx):
    with open(os.environ["SEEN_FILE"], "a") as fh:
        fh.write(event.id + "\\n")
'''


def run_worker(broker: SecureBroker, tmp: Path, topic: str, group: str, env: dict[str, str],
               args: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`python -m worker run --drain` with this worktree's code, the connection settings only in
    `env`/`args` (no WORKER_BOOTSTRAP_SERVERS, no --bootstrap-servers)."""
    (tmp / "seen_proc.py").write_text(SEEN_MODULE)
    full = {k: v for k, v in os.environ.items()
            if not k.startswith(("KAFKA_", "WORKER_"))}
    full |= {"PYTHONPATH": f"{tmp}{os.pathsep}{REPO}", "WORKER_BUILTIN_PROCESSORS": "false",
             "SEEN_FILE": str(tmp / "seen.txt"), **env}
    return subprocess.run(
        [sys.executable, "-m", "worker", "run", "--topic", topic, "--group", group,
         "--processors", "seen_proc", "--ledger", "memory://", "--metrics-address", "off",
         "--commit-interval", "0.5", "--drain", *args],
        cwd=tmp, env=full, capture_output=True, text=True, timeout=timeout, check=False)


def summary(stdout: str) -> dict[str, object]:
    for line in stdout.splitlines():
        if '"worker summary"' in line:
            return dict(json.loads(line))
    raise AssertionError(f"no summary line in the worker's output:\n{stdout[-3000:]}")


def assert_no_secret(out: str, *values: str) -> None:
    for value in values:
        assert value not in out, "a secret value appears in the worker's output"


def as_properties(env: dict[str, str]) -> dict[str, str]:
    """KAFKA_* env vars as librdkafka properties (as the worker maps them), minus bootstrap."""
    return {k[len("KAFKA_"):].lower().replace("_", "."): v for k, v in env.items()
            if k != "KAFKA_BOOTSTRAP_SERVERS"}


def pem_body_lines(pem: str) -> list[str]:
    """The base64 lines of a PEM block (a leaked key would show any of them)."""
    return [ln for ln in pem.splitlines() if ln and not ln.startswith("-----")]


@pytest.fixture
def topic(private_kafka: SecureBroker) -> str:
    """A topic with GOOD events and BAD undecodable ones, plus its (empty) DLQ topic."""
    name = unique_name("secured")
    create_topic(private_kafka.plain_bootstrap, name, PARTITIONS)
    create_topic(private_kafka.plain_bootstrap, f"{name}.dlq", 1)
    records = [(i % PARTITIONS, f"k{i}".encode(), event_json(i)) for i in range(GOOD)]
    records += [(i % PARTITIONS, b"bad", b"{not json") for i in range(BAD)]
    produce(private_kafka.plain_bootstrap, name, records)
    return name


def check_consumed(broker: SecureBroker, tmp: Path, topic: str, group: str,
                   proc: subprocess.CompletedProcess[str]) -> str:
    """Exit 0, every good event processed, every bad one dead-lettered, offsets committed."""
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    s = summary(proc.stdout)
    assert (s["events"], s["dead_letters"]) == (GOOD + BAD, BAD), s
    seen = (tmp / "seen.txt").read_text().split()
    assert sorted(set(seen)) == sorted(f"evcus_{i:020d}" for i in range(GOOD))
    letters = read_all(broker.plain_bootstrap, f"{topic}.dlq", BAD)
    assert len(letters) == BAD
    assert {dict(m.headers())["worker.error.class"] for m in letters} == {b"invalid_json"}
    offsets = committed(broker.plain_bootstrap, group, topic, PARTITIONS)
    per_part = [sum(1 for i in range(GOOD) if i % PARTITIONS == p)
                + sum(1 for i in range(BAD) if i % PARTITIONS == p) for p in range(PARTITIONS)]
    assert offsets == dict(enumerate(per_part)), offsets
    return out


@pytest.mark.parametrize("tls", [False, True], ids=["sasl_plaintext", "sasl_ssl"])
def test_scram_sha512_from_env(private_kafka: SecureBroker, topic: str, tmp_path: Path,
                               tls: bool) -> None:
    group = unique_name("scram")
    proc = run_worker(private_kafka, tmp_path, topic, group, private_kafka.scram_env(tls=tls),
                      [])
    out = check_consumed(private_kafka, tmp_path, topic, group, proc)
    assert_no_secret(out, private_kafka.scram_password)
    assert '"sasl.password": "***"' in proc.stdout  # the config line shows it, redacted
    assert '"sasl.mechanism": "SCRAM-SHA-512"' in proc.stdout


def test_oauthbearer_from_kafka_config_flags(private_kafka: SecureBroker, topic: str,
                                              tmp_path: Path) -> None:
    group = unique_name("oauth")
    token_secret = "tok" + secrets.token_hex(10)
    proc = run_worker(private_kafka, tmp_path, topic, group, {},
                      private_kafka.oauth_args(token_secret))
    out = check_consumed(private_kafka, tmp_path, topic, group, proc)
    assert_no_secret(out, token_secret)
    assert '"sasl.oauthbearer.config": "***"' in proc.stdout


def test_mtls_with_inline_pem_key_from_env(private_kafka: SecureBroker, topic: str,
                                           tmp_path: Path) -> None:
    group = unique_name("mtls")
    proc = run_worker(private_kafka, tmp_path, topic, group, private_kafka.mtls_env(), [])
    out = check_consumed(private_kafka, tmp_path, topic, group, proc)
    assert_no_secret(out, private_kafka.pki.key_password,
                     *pem_body_lines(private_kafka.pki.client_key_pem))
    assert '"ssl.key.pem": "***"' in proc.stdout
    assert '"ssl.key.password": "***"' in proc.stdout


def test_wrong_scram_password_stops_at_once_and_says_what_to_fix(
        private_kafka: SecureBroker, topic: str, tmp_path: Path) -> None:
    wrong = "wrong-" + secrets.token_hex(8)
    t0 = time.monotonic()
    group = unique_name("badpw")
    proc = run_worker(private_kafka, tmp_path, topic, group,
                      private_kafka.scram_env(password=wrong), [], timeout=30)
    elapsed = time.monotonic() - t0
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out[-3000:]
    assert elapsed < 15, f"took {elapsed:.1f}s to give up"
    assert "rejected the worker's credentials" in proc.stderr
    assert "SCRAM-SHA-512" in proc.stderr and "sasl.password" in proc.stderr
    assert "Traceback" not in out
    assert_no_secret(out, wrong, private_kafka.scram_password)
    assert all(o < 0 for o in committed(private_kafka.plain_bootstrap, group, topic,
                                        PARTITIONS).values())


def test_missing_client_certificate_stops_at_once_and_says_what_to_fix(
        private_kafka: SecureBroker, topic: str, tmp_path: Path) -> None:
    proc = run_worker(private_kafka, tmp_path, topic, unique_name("nocert"),
                      private_kafka.mtls_env(with_cert=False), [], timeout=30)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out[-3000:]
    assert "requires a client certificate (mTLS) and the worker sent none" in proc.stderr
    assert "ssl.certificate.location" in proc.stderr
    assert "Traceback" not in out


def test_wrong_key_password_names_the_key_settings(private_kafka: SecureBroker, topic: str,
                                                  tmp_path: Path) -> None:
    wrong = "wrongkey-" + secrets.token_hex(8)
    env = private_kafka.mtls_env() | {"KAFKA_SSL_KEY_PASSWORD": wrong}
    proc = run_worker(private_kafka, tmp_path, topic, unique_name("badkey"), env, [], timeout=30)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out[-3000:]
    assert "settings were refused by librdkafka" in proc.stderr
    assert "ssl.key.pem failed" in proc.stderr and "ssl.key.password" in proc.stderr
    assert "Traceback" not in out
    assert_no_secret(out, wrong, *pem_body_lines(private_kafka.pki.client_key_pem))


class _NeverCalled:
    window = None  # one batch at a time (worker.types.BatchHandler)

    def handle(self, messages: object, cancelled: object) -> BatchResult:
        raise AssertionError("no batch can arrive without authentication")


def test_engine_stops_on_authentication_failure_instead_of_retrying_for_ever(
        private_kafka: SecureBroker, topic: str) -> None:
    """The engine itself (no start-up metadata check before it): librdkafka retries a refused
    login for ever, the engine stops with exit 2 and the reason."""
    env = private_kafka.scram_env(password="wrong-" + secrets.token_hex(8))
    config = build_consumer_config(env["KAFKA_BOOTSTRAP_SERVERS"], unique_name("engine-badpw"),
                                   as_properties(env))
    engine = Engine(ConfluentConsumer(config), _NeverCalled(),
                    EngineConfig(topics=[topic], install_signals=False, shutdown_timeout=10))
    t0 = time.monotonic()
    assert engine.run() == EXIT_BAD_SETTINGS
    assert time.monotonic() - t0 < 15
    assert engine.fatal_message is not None
    assert "rejected the worker's credentials" in engine.fatal_message


class _Counting:
    window = None  # one batch at a time (worker.types.BatchHandler)

    def __init__(self) -> None:
        self.events = 0

    def handle(self, messages: Sequence[Message], cancelled: Callable[[], bool]) -> BatchResult:
        self.events += len(messages)
        return BatchResult(completed=True)


def test_credentials_refused_after_assignment_are_reported_and_the_engine_recovers(
        private_kafka: SecureBroker, topic: str) -> None:
    """Credentials that stop working while the worker runs (rotated on the broker first) may
    heal: the engine keeps running, logs an error naming the problem, /readyz says it is not
    connected, and it consumes again once the broker accepts the credentials. The SCRAM
    listener makes clients re-authenticate every 3 s (KIP-368), so the change reaches the
    connections that are already open."""
    b = private_kafka.plain_bootstrap
    group = unique_name("reauth")
    config = build_consumer_config(private_kafka.bootstrap("SCRAM"), group,
                                   as_properties(private_kafka.scram_env()))
    handler, health = _Counting(), HealthState()
    health.set_ledger_ok(True)  # no ledger here: only Kafka decides readiness
    engine = Engine(ConfluentConsumer(config), handler,
                    EngineConfig(topics=[topic], install_signals=False, poll_timeout=0.1,
                                 commit_interval=0.2),
                    observers=[health])
    with capture_logs() as logs:
        run = Running(engine)
        try:
            wait_for(lambda: handler.events == GOOD + BAD, 30, "the topic consumed")
            assert health.readiness() == (True, [])
            set_scram_password(b, "rotated-" + secrets.token_hex(8))
            try:
                wait_for(lambda: [e for e in logs if e["event"].startswith("kafka refuses")],
                         30, "the refused re-authentication reported")
                assert "not connected to Kafka" in health.readiness()[1]
                assert run.thread.is_alive() and engine.fatal_message is None
            finally:
                set_scram_password(b, private_kafka.scram_password)
            produce(b, topic, [(0, None, event_json(GOOD + BAD))])
            wait_for(lambda: handler.events == GOOD + BAD + 1, 60,
                     "an event consumed after the credentials match again")
        finally:
            code = run.stop()
    assert code == EXIT_OK
    refused = [e for e in logs if e["event"].startswith("kafka refuses")]
    assert refused[0]["problem"] == "authentication"
    assert "rejected the worker's credentials" in refused[0]["error"]
    assert len(refused) <= 2  # at most one line per 30 s, not one per retry
    assert private_kafka.scram_password not in repr(logs)


def run_command(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m worker ARGS` with the connection settings only in `env` (KAFKA_*)."""
    full = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "WORKER_"))}
    full |= {"PYTHONPATH": str(REPO), **env}
    return subprocess.run([sys.executable, "-m", "worker", *args], cwd=REPO, env=full,
                          capture_output=True, text=True, timeout=90, check=False)


@pytest.mark.parametrize("tls", [False, True], ids=["sasl_plaintext", "sasl_ssl"])
def test_topics_create_and_generate_through_a_secured_listener(private_kafka: SecureBroker,
                                                               tls: bool) -> None:
    """The operator's setup commands take the same KAFKA_* settings as `run`."""
    env = private_kafka.scram_env(tls=tls)
    name = unique_name("secured-setup")
    made = run_command(env, "topics", "create", name, "--with-dlq", "--partitions", "2")
    assert made.returncode == 0, made.stdout + made.stderr
    assert env["KAFKA_BOOTSTRAP_SERVERS"] in made.stdout
    wait_for(lambda: len(read_all(private_kafka.plain_bootstrap, name, 0, timeout=1)) == 0, 20,
             "topic readable")
    sent = run_command(env, "generate", "-n", "25", "--topic", name, "--seed", "4")
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert len(read_all(private_kafka.plain_bootstrap, name, 25)) == 25
    out = made.stdout + made.stderr + sent.stdout + sent.stderr
    assert_no_secret(out, private_kafka.scram_password)


def test_topics_create_with_a_wrong_password_says_what_to_fix(private_kafka: SecureBroker
                                                              ) -> None:
    env = private_kafka.scram_env("not-the-password")
    proc = run_command(env, "topics", "create", unique_name("refused"))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "rejected the worker's credentials" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert_no_secret(proc.stdout + proc.stderr, "not-the-password")
