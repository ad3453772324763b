"""deploy/local/kafka against a real broker it starts on free ports and a temp data dir, so the
broker on 9092 is never touched. One broker start is shared across the module's tests, which
run in file order: up -> up again -> kill -9 -> up -> down."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from devtools.local_broker import port_free
from tests.conftest import REPO_ROOT, run_launcher
from tests.kafka_helpers import KafkaHelper, free_port

pytestmark = pytest.mark.kafka


def broker_jvms(properties: Path) -> list[int]:
    """Pids of every live JVM running kafka.Kafka with this data dir's server.properties."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if state != "Z" and b"kafka.Kafka" in args and str(properties).encode() in args:
            pids.append(int(entry.name))
    return pids


def wait_until(cond: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@dataclass
class Launched:
    port: int
    controller_port: int
    data_dir: Path
    ups: list[subprocess.CompletedProcess[str]]

    @property
    def first_up(self) -> subprocess.CompletedProcess[str]:
        """The `up` (of the two started together) that started the JVM."""
        starters = [u for u in self.ups if "starting:" in u.stdout]
        assert len(starters) == 1, [u.stdout + u.stderr for u in self.ups]
        return starters[0]

    @property
    def args(self) -> list[str]:
        return [
            "--port", str(self.port),
            "--controller-port", str(self.controller_port),
            "--data-dir", str(self.data_dir),
            "--heap", "512M",
        ]  # fmt: skip

    def run(self, action: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return run_launcher(action, *self.args, timeout=timeout)

    @property
    def pid(self) -> int:
        return int((self.data_dir / "broker.pid").read_text())

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def jvms(self) -> list[int]:
        return broker_jvms(self.data_dir / "server.properties")


@pytest.fixture(scope="module")
def launched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launched]:
    port, cport = free_port(), free_port()
    data_dir = tmp_path_factory.mktemp("kafka-launcher")
    launched = Launched(port, cport, data_dir, [])
    # Two `up`s at once on a fresh data dir: the lock must let only one of them start a JVM.
    with ThreadPoolExecutor(2) as pool:
        launched.ups = list(pool.map(lambda _: launched.run("up"), range(2)))
    try:
        yield launched
    finally:
        launched.run("down", timeout=120)
        for pid in launched.jvms():  # safety net: never leave a JVM behind
            os.kill(pid, signal.SIGKILL)


def test_up_starts_a_ready_broker_and_says_where(launched: Launched) -> None:
    up = launched.first_up
    assert up.returncode == 0, up.stdout + up.stderr
    out = up.stdout
    for step in ("resolving jars", "formatting storage in", "starting: Kafka", "ready:"):
        assert step in out
    assert f"bootstrap: 127.0.0.1:{launched.port}\n" in out
    log = launched.data_dir / "logs" / "broker.log"
    assert f"log: {log}\n" in out
    assert launched.jvms() == [launched.pid]
    other = next(u for u in launched.ups if u is not up)
    assert other.returncode == 0, other.stdout + other.stderr
    assert f"already running (pid {launched.pid})" in other.stdout
    # The SLF4J binding works: the broker's own log lines reach the printed log file.
    text = log.read_text()
    assert "Kafka Server started" in text
    assert "StaticLoggerBinder" not in text
    assert (launched.data_dir / "kraft" / "meta.properties").is_file()


def test_produce_consume_through_the_launched_broker(launched: Launched) -> None:
    helper = KafkaHelper(launched.bootstrap)
    topic = helper.new_topic(partitions=4)
    helper.produce(topic, [b"a", b"b", b"c"], key=b"k")
    got = helper.consume_all(topic, 3, deadline=30)
    assert [m.value() for m in got] == [b"a", b"b", b"c"]
    # Broker defaults the launcher sets: auto-created topics get 4 partitions.
    md = helper.admin.list_topics(timeout=10)
    assert len(md.topics[topic].partitions) == 4


def test_status_is_0_when_running_and_ready(launched: Launched) -> None:
    st = launched.run("status", timeout=60)
    assert st.returncode == 0, st.stdout + st.stderr
    assert f"running: Kafka (pid {launched.pid}) is ready" in st.stdout


def test_activity_worker_kafka_status_is_the_same_command(launched: Launched) -> None:
    st = subprocess.run(
        [sys.executable, "-m", "worker", "kafka", "status", *launched.args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert st.returncode == 0, st.stdout + st.stderr
    assert "is ready" in st.stdout


def test_up_twice_leaves_one_broker(launched: Launched) -> None:
    pid = launched.pid
    again = launched.run("up")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "already running" in again.stdout
    assert "starting:" not in again.stdout
    assert launched.pid == pid
    assert launched.jvms() == [pid]


def test_another_data_dir_on_the_same_port_is_refused_with_a_hint(
    launched: Launched, tmp_path: Path
) -> None:
    other = run_launcher(
        "up", "--port", str(launched.port), "--data-dir", str(tmp_path), timeout=60
    )
    assert other.returncode == 1, other.stdout + other.stderr
    assert other.stderr.strip() == (
        f"error: Port {launched.port} is used by a Kafka broker this launcher did not start "
        f"(not the broker of {tmp_path.resolve()}): use it with "
        f"KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:{launched.port}, stop it, or pick another --port."
    )
    assert launched.jvms() == [launched.pid]


def test_a_lost_pid_file_does_not_start_a_second_broker(launched: Launched) -> None:
    pid = launched.pid
    (launched.data_dir / "broker.pid").unlink()
    again = launched.run("up")
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"already running (pid {pid})" in again.stdout
    assert launched.pid == pid  # pid file written back
    assert launched.jvms() == [pid]


def test_kill_9_then_up_brings_it_back_with_its_data(launched: Launched) -> None:
    helper = KafkaHelper(launched.bootstrap)
    topic = helper.new_topic(partitions=1)
    helper.produce(topic, [b"before-kill"])
    cluster_id = (launched.data_dir / "kraft" / "meta.properties").read_text()
    old = launched.pid

    os.kill(old, signal.SIGKILL)
    wait_until(lambda: old not in launched.jvms(), 15, f"pid {old} to die")
    st = launched.run("status", timeout=60)
    assert st.returncode == 3
    assert "stale pid file" in st.stdout

    up = launched.run("up")
    assert up.returncode == 0, up.stdout + up.stderr
    assert f"removing stale pid file: broker pid {old}" in up.stdout
    assert "formatting storage: already formatted" in up.stdout  # formats once only
    assert launched.pid != old
    assert launched.jvms() == [launched.pid]
    assert (launched.data_dir / "kraft" / "meta.properties").read_text() == cluster_id
    got = helper.consume_all(topic, 1, deadline=30)
    assert got[0].value() == b"before-kill"


def test_down_stops_it_and_frees_the_port(launched: Launched) -> None:
    pid = launched.pid
    down = launched.run("down", timeout=120)
    assert down.returncode == 0, down.stdout + down.stderr
    assert f"stopped: Kafka pid {pid}" in down.stdout
    assert launched.jvms() == []
    assert not (launched.data_dir / "broker.pid").exists()
    assert port_free(launched.port)
    assert port_free(launched.controller_port)

    st = launched.run("status", timeout=60)
    assert st.returncode == 3
    assert "not running" in st.stdout
    again = launched.run("down", timeout=60)
    assert again.returncode == 0
    assert "nothing to stop" in again.stdout
