"""The production deploy files say only true things: the systemd unit is valid for systemd, its
settings are settings the worker knows, its exit-code policy matches the engine's exit codes,
and the example worker.env is a configuration the worker accepts."""

from __future__ import annotations

import argparse
import configparser
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from worker.engine.lifecycle import EXIT_BAD_SETTINGS, EXIT_FATAL_PROCESSING, EXIT_GUARDRAIL
from worker.engine.loop import EngineConfig
from worker.settings import OPTIONS, Settings, add_arguments, from_args

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "deploy" / "systemd" / "activity-worker@.service"
ENV_FILE = ROOT / "deploy" / "systemd" / "worker.env"
WORKER_VARS = {opt.env for opt in OPTIONS}


def _unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read_string(UNIT.read_text())
    return parser


def _unit_environment(instance: str) -> dict[str, str]:
    out = {}
    for line in UNIT.read_text().splitlines():
        if line.startswith("Environment="):
            key, _, value = line[len("Environment="):].partition("=")
            out[key] = value.replace("%i", instance).replace("%H", "host1")
    return out


def _env_file() -> dict[str, str]:
    out = {}
    for line in ENV_FILE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key] = value
    return out


def _settings(env: dict[str, str]) -> Settings:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return from_args(parser.parse_args([]), env)


def test_every_variable_is_a_setting_the_worker_knows() -> None:
    for name in [*_unit_environment("9401"), *_env_file()]:
        assert name in WORKER_VARS or name.startswith("KAFKA_"), name


def test_the_example_configuration_is_accepted_and_means_what_it_says() -> None:
    s = _settings({**_env_file(), **_unit_environment("9401")})
    assert s.metrics_address == "0.0.0.0:9401"
    assert s.group_instance_id == "host1-9401"
    assert s.ledger.startswith("postgresql://")
    assert s.kafka_config["security.protocol"] == "SASL_SSL"
    assert s.kafka_config["sasl.password"] == "change-me"
    config = s.consumer_config()
    assert config["group.instance.id"] == "host1-9401"


def test_the_restart_policy_matches_the_engine_exit_codes() -> None:
    service = _unit()["Service"]
    prevented = {int(x) for x in service["RestartPreventExitStatus"].split()}
    assert prevented == {EXIT_BAD_SETTINGS, EXIT_FATAL_PROCESSING, EXIT_GUARDRAIL}
    assert service["KillSignal"] == "SIGTERM"
    # systemd must wait longer than the worker's own shutdown bound before it kills
    assert int(service["TimeoutStopSec"]) > EngineConfig(topics=["t"]).shutdown_timeout
    assert service["ExecStart"].endswith("activity-worker run")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze is not installed (Debian package systemd)")
def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    # The installed entry point stands in for /opt/activity-worker/venv/bin/activity-worker.
    entry = shutil.which("activity-worker") or str(Path(sys.executable).with_name(
        "activity-worker"))
    text = re.sub(r"^ExecStart=\S+", f"ExecStart={entry}", UNIT.read_text(), flags=re.M)
    unit = tmp_path / "activity-worker@.service"
    unit.write_text(text)
    instance = tmp_path / "activity-worker@9401.service"
    proc = subprocess.run(["systemd-analyze", "verify", str(instance)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr
