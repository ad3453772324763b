"""Fast unit tests (no broker): consumer config, settings resolution, redaction, guardrail,
DLQ headers, and the CLI's refusal of unsafe settings."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from worker.engine.dead_letter_policy import Guardrail
from worker.errors import ConfigError
from worker.kafka.config import build_consumer_config, config_from_env, producer_config
from worker.kafka.dead_letter_producer import dlq_headers
from worker.kafka.secrets import redact
from worker.settings import Settings, add_arguments, from_args
from worker.types import DeadLetter, LocalMessage

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_are_safe() -> None:
    c = build_consumer_config("b:9092", "g")
    assert c["enable.auto.offset.store"] is False
    assert c["enable.auto.commit"] is False
    assert c["partition.assignment.strategy"] == "cooperative-sticky"
    assert c["auto.offset.reset"] == "earliest"
    assert "group.protocol" not in c


def test_a_dead_broker_is_tried_again_within_a_second_by_every_client() -> None:
    """So a killed leader's partitions learn their new leader soon (librdkafka re-queries only
    while the old leader's connection is down, not while it waits out a 10 s backoff)."""
    c = build_consumer_config("b:9092", "g")
    assert c["reconnect.backoff.max.ms"] == 1000
    assert producer_config(c)["reconnect.backoff.max.ms"] == 1000
    mine = build_consumer_config("b:9092", "g", {"reconnect.backoff.max.ms": "5000"})
    assert mine["reconnect.backoff.max.ms"] == "5000"


@pytest.mark.parametrize("key", ["enable.auto.offset.store", "enable.auto.commit"])
def test_refuses_auto_offset_store_and_auto_commit(key: str) -> None:
    with pytest.raises(ConfigError, match=f"{key}=true would let offsets be committed"):
        build_consumer_config("b", "g", {key: "true"})
    # Explicitly false is fine.
    assert build_consumer_config("b", "g", {key: "false"})[key] is False


def test_kip848_protocol_drops_classic_settings_and_refuses_them() -> None:
    c = build_consumer_config("b", "g", group_protocol="consumer")
    assert c["group.protocol"] == "consumer"
    assert "partition.assignment.strategy" not in c
    for key in ("session.timeout.ms", "heartbeat.interval.ms", "partition.assignment.strategy"):
        with pytest.raises(ConfigError, match=r"group\.protocol=consumer"):
            build_consumer_config("b", "g", {key: "1"}, group_protocol="consumer")
    with pytest.raises(ConfigError, match="not supported"):
        build_consumer_config("b", "g", group_protocol="share")


def test_static_membership_and_overrides() -> None:
    c = build_consumer_config("b", "g", {"fetch.max.bytes": "1000"}, group_instance_id="w-1")
    assert c["group.instance.id"] == "w-1"
    assert c["fetch.max.bytes"] == "1000"


def test_redaction_hides_secrets() -> None:
    cfg = {"sasl.password": "hunter2", "ssl.key.password": "k", "sasl.username": "u",
           "sasl.oauthbearer.client.secret": "s", "sasl.oauthbearer.config": "principal=x",
           "ssl.key.pem": "-----BEGIN", "bootstrap.servers": "b"}
    r = redact(cfg)
    assert "hunter2" not in repr(r) and "principal=x" not in repr(r)
    assert r["sasl.username"] == "u" and r["bootstrap.servers"] == "b"
    assert r["sasl.password"] == r["ssl.key.password"] == "***"


def test_kafka_env_maps_to_librdkafka_properties() -> None:
    env = {"KAFKA_SASL_PASSWORD": "p", "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
           "KAFKA_HEAP_OPTS": "-Xmx1G", "OTHER": "x",
           # the local launcher's settings are not librdkafka properties
           "KAFKA_PORT": "19092", "KAFKA_DATA_DIR": "/tmp/k", "KAFKA_RUNTIME": "jvm"}
    assert config_from_env(env) == {"sasl.password": "p", "security.protocol": "SASL_SSL"}


def test_producer_config_keeps_security_drops_consumer_settings() -> None:
    c = build_consumer_config("b", "g", {"security.protocol": "SSL", "ssl.ca.location": "/ca",
                                         "session.timeout.ms": "6000"},
                              group_instance_id="i")
    p = producer_config(c)
    assert p["security.protocol"] == "SSL" and p["ssl.ca.location"] == "/ca"
    assert p["enable.idempotence"] is True and p["acks"] == "all"
    assert not any(k.startswith(("group.", "enable.auto", "session.", "partition.", "auto."))
                   for k in p)


def _settings(argv: list[str], env: dict[str, str]) -> Settings:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return from_args(parser.parse_args(argv), env)


def test_settings_precedence_flag_over_env_over_default() -> None:
    s = _settings([], {})
    assert (s.bootstrap_servers, s.topics, s.group) == (
        "127.0.0.1:9092", ["customer-activity"], "activity-worker")
    assert s.ledger == "sqlite:///./.local/activity-worker.db"
    assert s.metrics_address == "127.0.0.1:9400"
    env = {"WORKER_GROUP": "from-env", "WORKER_TOPIC": "a,b", "WORKER_DRAIN": "true",
           "KAFKA_BOOTSTRAP_SERVERS": "kafka-env:9092", "KAFKA_SASL_PASSWORD": "pw",
           "WORKER_METRICS_ADDRESS": "off"}
    s = _settings([], env)
    assert s.group == "from-env" and s.topics == ["a", "b"]
    assert s.drain is True and s.metrics_address is None
    assert s.bootstrap_servers == "kafka-env:9092"
    assert s.kafka_config == {"sasl.password": "pw"}
    s = _settings(["--group", "flag", "--bootstrap-servers", "flag:1", "--topic", "x",
                   "--kafka-config", "sasl.password=other"], env)
    assert s.group == "flag" and s.bootstrap_servers == "flag:1"
    assert s.topics == ["x"]
    assert s.kafka_config == {"sasl.password": "other"}


@pytest.mark.parametrize(("argv", "env", "message"), [
    (["--batch-size", "zero"], {}, "--batch-size='zero' is not valid"),
    ([], {"WORKER_MAX_EVENTS": "-3"}, "WORKER_MAX_EVENTS='-3' is not valid"),
    (["--metrics-address", "9400"], {}, "not host:port"),
    (["--dlq-topic", "customer-activity"], {}, "must differ"),
    (["--kafka-config", "novalue"], {}, "is not key=value"),
    (["--dlq-max-share", "1.5"], {}, "must be in"),
])
def test_settings_errors_say_what_to_do(argv: list[str], env: dict[str, str],
                                        message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _settings(argv, env)


def test_guardrail_window() -> None:
    g = Guardrail(share=0.5, window=100, min_events=20)
    assert not g.add(10, 10)  # under min_events: never trips
    assert not g.add(10, 0)   # 10/20 = 50%: not more than the share
    assert g.add(10, 10)      # 20/30
    g = Guardrail(share=0.5, window=100, min_events=20)
    for _ in range(20):
        assert not g.add(10, 4)  # steady 40% over a sliding window
    assert not g.add(10, 10)      # one bad batch in a window of ~100 events
    assert g.add(50, 50)


def test_dlq_headers_carry_original_headers_and_why() -> None:
    msg = LocalMessage(b"v", _topic="src", _partition=2, _offset=41, _key=b"k",
                       _headers=[("trace", b"1")])
    h = dict(dlq_headers(DeadLetter(msg, "schema", "$.id: expected str", "proc", 3),
                         "2026-01-01T00:00:00.000Z"))
    assert h == {"trace": b"1", "worker.error.class": b"schema",
                 "worker.error.reason": b"$.id: expected str", "worker.processor": b"proc",
                 "worker.source.topic": b"src", "worker.source.partition": b"2",
                 "worker.source.offset": b"41", "worker.attempts": b"3",
                 "worker.failed_at": b"2026-01-01T00:00:00.000Z"}


def test_cli_refuses_auto_offset_store() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "worker", "run", "--kafka-config",
         "enable.auto.offset.store=true"], cwd=ROOT, capture_output=True, timeout=60,
        env={**os.environ, "WORKER_METRICS_ADDRESS": "off"})
    assert proc.returncode == 2
    assert b"enable.auto.offset.store=true" in proc.stderr
    assert b"remove" in proc.stderr


def test_run_help_documents_every_flag() -> None:
    out = subprocess.run([sys.executable, "-m", "worker", "run", "--help"], cwd=ROOT,
                         capture_output=True, timeout=60, check=True).stdout.decode()
    for flag in ("--bootstrap-servers", "--topic", "--group", "--processors", "--ledger",
                 "--dlq-topic", "--metrics-address", "--drain", "--max-events",
                 "--kafka-config", "WORKER_GROUP", "KAFKA_"):
        assert flag in out


def test_retry_and_on_failure_flags_apply_to_processors() -> None:
    from worker.app import apply_overrides
    from worker.processors.api import Processor, RetryPolicy

    def f(event: object, ctx: object) -> None:
        pass

    own = RetryPolicy(max_attempts=7)
    procs = [Processor(name="default", patterns=("a",), func=f),
             Processor(name="own", patterns=("a",), func=f, retry=own)]
    out = apply_overrides(procs, _settings(["--retry-attempts", "5", "--retry-backoff", "0.5",
                                            "--on-failure", "stop"], {}))
    assert out[0].retry == RetryPolicy(max_attempts=5, initial_backoff=0.5)
    assert out[1].retry == own  # a processor's own policy wins over the flags
    assert [p.on_failure for p in out] == ["stop", "stop"]
    unchanged = apply_overrides(procs, _settings([], {}))
    assert unchanged == procs


def test_ledger_retention_and_lease_by_flag_and_env() -> None:
    s = _settings([], {})
    assert (s.ledger_retention, s.ledger_lease) == (7 * 86400, 120)
    s = _settings([], {"WORKER_LEDGER_RETENTION": "3600", "WORKER_LEDGER_LEASE": "30"})
    assert (s.ledger_retention, s.ledger_lease) == (3600, 30)
    s = _settings(["--ledger-retention", "90000"], {"WORKER_LEDGER_RETENTION": "3600"})
    assert s.ledger_retention == 90000


def test_cli_refuses_a_lease_longer_than_the_retention(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "worker", "run", "--ledger-retention", "60", "--ledger-lease",
         "120", "--ledger", f"sqlite:///{tmp_path / 'l.db'}"], cwd=ROOT, capture_output=True,
        timeout=60, env={**os.environ, "WORKER_METRICS_ADDRESS": "off"})
    assert proc.returncode == 2, proc.stderr
    assert b"must be shorter than its retention" in proc.stderr


def test_each_default_is_one_value_for_flag_env_settings_and_engine() -> None:
    """A flag's default is the Settings default, and the engine's settings come from the same
    place (EngineConfig), so changing one default changes --help, the env var and the run."""
    from worker.app import engine_config
    from worker.engine.config import EngineConfig
    from worker.settings import OPTIONS

    defaults = Settings()
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    parsed = from_args(parser.parse_args([]), environ={})
    for opt in OPTIONS:
        assert getattr(defaults, opt.name) == opt.default(), opt.flag
        assert f"--{opt.name.replace('_', '-')}" == opt.flag or opt.name == "topics"
    assert parsed == defaults
    built, engine = engine_config(defaults), EngineConfig(topics=list(defaults.topics))
    assert built == engine


def test_the_engine_takes_each_run_setting_it_shares_a_name_with() -> None:
    """EngineConfig's run settings have the names of their Settings fields; each is copied."""
    from worker.app import ENGINE_SETTINGS, engine_config

    shared = {"topics", "batch_size", "commit_interval", "commit_every", "shutdown_timeout",
              "revoke_timeout", "drain", "max_events", "dlq_max_share", "dlq_window",
              "transaction_interval"}
    assert shared == ENGINE_SETTINGS
    s = _settings(["--topic", "t", "--batch-size", "7", "--commit-interval", "2",
                   "--commit-every", "9", "--shutdown-timeout", "3", "--revoke-timeout", "4",
                   "--drain", "--max-events", "11", "--dlq-max-share", "0.25",
                   "--dlq-window", "12", "--transaction-interval", "0.5"], {})
    c = engine_config(s)
    assert (c.topics, c.batch_size, c.commit_interval, c.commit_every, c.shutdown_timeout,
            c.revoke_timeout, c.drain, c.max_events, c.dlq_max_share, c.dlq_window,
            c.transaction_interval) == (["t"], 7, 2.0, 9, 3.0, 4.0, True, 11, 0.25, 12, 0.5)
    assert c.topics is not s.topics


@pytest.mark.parametrize("flag", ["--liveness-poll-stale", "--liveness-commit-stall"])
def test_liveness_bounds_must_be_above_zero(flag: str) -> None:
    with pytest.raises(ConfigError, match="must be above 0"):
        _settings([flag, "0"], {})
    assert getattr(_settings([flag, "7"], {}), flag[2:].replace("-", "_")) == 7.0
