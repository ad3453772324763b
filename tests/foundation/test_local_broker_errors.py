"""Launcher failures that need no broker: each gives one clear sentence, not a traceback."""

from __future__ import annotations

import os
import shutil
import socket
import sys
from pathlib import Path

import pytest

from devtools import local_broker
from devtools.local_broker import LauncherError, settings_from
from tests.conftest import run_launcher
from tests.kafka_helpers import free_port


def bin_dir_with(tmp_path: Path, *tools: str) -> Path:
    """A PATH directory holding only what deploy/local/kafka needs, plus `tools`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname", *tools):
        found = shutil.which(tool)
        assert found, f"{tool} is needed to run this test"
        (bin_dir / tool).symlink_to(found)
    (bin_dir / "python3").symlink_to(sys.executable)
    return bin_dir


def env_with_path(bin_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("JAVA_HOME", "PYTHON")}
    env["PATH"] = str(bin_dir)
    env["PYTHON"] = sys.executable
    return env


def ports() -> list[str]:
    """Both ports explicit and free: the default controller port (port + 1) may be taken."""
    return ["--port", str(free_port()), "--controller-port", str(free_port())]


def assert_one_sentence_error(result: object, starts: str) -> None:
    rc, out, err = result.returncode, result.stdout, result.stderr  # type: ignore[attr-defined]
    assert rc == 1, out + err
    assert "Traceback" not in out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"error: {starts}"), err


def test_missing_java_and_docker_says_what_to_install(tmp_path: Path) -> None:
    env = env_with_path(bin_dir_with(tmp_path))
    args = [*ports(), "--data-dir", str(tmp_path / "data")]
    r = run_launcher("up", *args, env=env, timeout=60)
    assert_one_sentence_error(r, "Neither Java nor a Docker engine was found: install Java 17")
    r = run_launcher("up", *args, "--runtime", "jvm", env=env, timeout=60)
    assert_one_sentence_error(r, "Java was not found: install Java 17 or newer")
    assert "apt-get install openjdk-17-jre-headless" in r.stderr
    r = run_launcher("up", *args, "--runtime", "docker", env=env, timeout=60)
    assert_one_sentence_error(r, "No Docker engine answers")


@pytest.mark.skipif(not shutil.which("java"), reason="needs java on PATH")
def test_missing_maven_when_jars_are_not_cached(tmp_path: Path) -> None:
    env = env_with_path(bin_dir_with(tmp_path, "java"))
    r = run_launcher(
        "up",
        *ports(),
        "--data-dir", str(tmp_path / "data"),
        "--libs-dir", str(tmp_path / "no-jars-yet"),
        env=env,
        timeout=60,
    )  # fmt: skip
    assert_one_sentence_error(r, "Maven is needed once to download the Kafka")


def test_port_in_use_by_someone_else(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = run_launcher("up", "--port", str(port), "--data-dir", str(tmp_path), timeout=60)
    assert_one_sentence_error(r, f"Port {port} on 127.0.0.1 is already in use")


def test_status_is_3_when_nothing_runs(tmp_path: Path) -> None:
    r = run_launcher("status", *ports(), "--data-dir", str(tmp_path))
    assert r.returncode == 3
    assert r.stdout.startswith("not running:")


def test_settings_precedence_flags_then_env_then_defaults(tmp_path: Path) -> None:
    env = {"KAFKA_PORT": "19000", "KAFKA_DATA_DIR": str(tmp_path), "KAFKA_HEAP": "256M"}
    s = settings_from(env=env)
    assert (s.port, s.controller_port, s.heap) == (19000, 19001, "256M")
    assert s.data_dir == tmp_path.resolve()
    assert s.version == local_broker.pinned_kafka_version()
    assert s.libs_dir.parts[-2:] == (f"kafka-{s.version}", "libs")
    s = settings_from(port=20000, controller_port=20500, env=env)
    assert (s.port, s.controller_port) == (20000, 20500)
    d = settings_from(env={})
    assert (d.port, d.controller_port) == (9092, 9093)
    assert d.data_dir == local_broker.REPO_ROOT / ".local" / "kafka"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"KAFKA_PORT": "abc"}, "is not a port number"),
        ({"KAFKA_PORT": "70000"}, "out of range"),
        ({"KAFKA_HEAP": "lots"}, "is not valid"),
        ({"KAFKA_RUNTIME": "podman"}, "is unknown"),
        ({"KAFKA_PORT": "9000", "KAFKA_CONTROLLER_PORT": "9000"}, "must differ"),
    ],
)
def test_bad_settings_are_refused_clearly(env: dict[str, str], message: str) -> None:
    with pytest.raises(LauncherError, match=message):
        settings_from(env=env)


def test_server_properties_for_a_single_node(tmp_path: Path) -> None:
    s = settings_from(port=19500, data_dir=tmp_path, env={})
    props = dict(
        line.split("=", 1)
        for line in local_broker.server_properties(s).splitlines()
        if line and not line.startswith("#")
    )
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19500,CONTROLLER://127.0.0.1:19501"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19500"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:19501"
    assert props["log.dirs"] == str(tmp_path.resolve() / "kraft")
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["num.partitions"] == "4"
    assert props["offsets.topic.replication.factor"] == "1"


def test_cluster_ids_look_like_kafka_uuids() -> None:
    ids = {local_broker._new_cluster_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)


needs_java = pytest.mark.skipif(not shutil.which("java"), reason="needs java on PATH")


@pytest.mark.kafka
@needs_java
def test_not_ready_in_time_stops_the_jvm_and_points_at_the_log(tmp_path: Path) -> None:
    data = tmp_path / "data"
    port, cport = free_port(), free_port()
    args = ["--port", str(port), "--controller-port", str(cport), "--data-dir", str(data)]
    r = run_launcher("up", *args, "--heap", "256M", "--timeout", "0.5")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    assert "was not ready within 0.5s" in r.stderr
    assert f"see {data / 'logs' / 'broker.log'}" in r.stderr
    assert not (data / "broker.pid").exists()
    assert local_broker.port_free(port)
    assert local_broker.port_free(cport)
    st = run_launcher("status", *args)
    assert st.returncode == 3


@pytest.mark.kafka
@needs_java
def test_a_jvm_that_cannot_start_gives_the_log_path(tmp_path: Path) -> None:
    data = tmp_path / "data"
    r = run_launcher("up", *ports(), "--data-dir", str(data), "--heap", "100000G")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    assert f"see {data / 'logs' / 'broker.log'}" in r.stderr
    assert "Could not reserve enough space" in r.stderr or "Invalid maximum heap" in r.stderr
