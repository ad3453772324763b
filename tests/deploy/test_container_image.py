"""The container image, built and run for real (opt-in: CONTAINER_E2E=1; it builds the image with
deploy/container/build, which needs podman or docker and, the first time, about a minute to make
the base image from Debian's packages).

Each test runs the image as a user would: `podman run --read-only` (nothing written outside the
mounted data directory), as the image's non-root user, on the host network against the real
local broker, with a processor module mounted from outside (as a user adds their own):
- bad settings: exit 2 with the sentence saying what to fix as the last line (what Kubernetes
  keeps as the termination message);
- `run --drain`: every good event processed once, every bad one dead-lettered, the end offsets
  committed, exit 0, and the default SQLite ledger written inside the data volume;
- SIGTERM mid-stream (to the container, i.e. to tini as PID 1): the worker finishes its batch,
  commits exactly what it processed and exits 0 within --shutdown-timeout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.engine.helpers import committed, create_topic, event_json, produce, read_all, wait_for
from tests.http_helpers import get_json
from tests.kafka_helpers import free_port_in, unique_name

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.timeout(1200),
    pytest.mark.skipif(not os.environ.get("CONTAINER_E2E"),
                       reason="opt-in: CONTAINER_E2E=1 builds and runs the container image"),
]

REPO = Path(__file__).resolve().parents[2]
# The containers share the host's network: their metrics ports come from this range
# (CONTAINER_E2E_PORTS=first-last), not from anywhere.
_FIRST, _LAST = os.environ.get("CONTAINER_E2E_PORTS", "29400-29499").split("-")
PORTS = range(int(_FIRST), int(_LAST) + 1)
IMAGE_USER = 10001  # the image's USER (deploy/container/Containerfile)
DATA = "/var/lib/activity-worker"

SEEN_MODULE = '''
import os
import time

from worker.processors import processor

DELAY = float(os.environ.get("SEEN_DELAY", "0"))


@processor("**", name="seen")
def seen(event, ctx):
    time.sleep(DELAY)
    with open(os.environ["SEEN_FILE"], "a") as fh:
        fh.write(event.id + "\\n")
'''


@pytest.fixture(scope="session")
def engine() -> str:
    out = subprocess.run([str(REPO / "deploy/container/install-engine")], check=True,
                         capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def image(engine: str) -> str:
    """The image, built from this checkout (the base image is made once and then reused)."""
    env = dict(os.environ, IMAGE=os.environ.get("CONTAINER_E2E_IMAGE", "aw-deploy-worker:e2e"),
               CONTAINER_ENGINE=engine)
    if "CONTAINER_E2E_BASE_IMAGE" in os.environ:
        env |= {"BASE_IMAGE": os.environ["CONTAINER_E2E_BASE_IMAGE"], "MAKE_BASE_IMAGE": "1"}
    started = time.monotonic()
    out = subprocess.run([str(REPO / "deploy/container/build")], env=env, capture_output=True,
                         text=True, timeout=1100, check=False)
    assert out.returncode == 0, out.stderr[-4000:]
    print(f"\nimage built in {time.monotonic() - started:.1f}s")
    return out.stdout.strip().splitlines()[-1]


@pytest.fixture
def mounts(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """(data dir owned by the image's user, read-only plugin dir with the `seen` processor)."""
    data, plugins = tmp_path / "data", tmp_path / "plugins"
    data.mkdir()
    plugins.mkdir()
    (plugins / "seen_proc.py").write_text(SEEN_MODULE)
    os.chown(data, IMAGE_USER, IMAGE_USER)
    yield data, plugins
    shutil.rmtree(data, ignore_errors=True)


def metrics_port() -> int:
    return free_port_in(PORTS, f"in {PORTS}")


def run_args(engine: str, image: str, name: str, data: Path, plugins: Path,
             extra_env: dict[str, str], args: list[str]) -> list[str]:
    envs = {"PYTHONPATH": "/plugins", "SEEN_FILE": f"{DATA}/seen.txt",
            "WORKER_BUILTIN_PROCESSORS": "false", **extra_env}
    return [engine, "run", "--rm", "--name", name, "--network", "host", "--read-only",
            "-v", f"{data}:{DATA}", "-v", f"{plugins}:/plugins:ro",
            *[a for k, v in envs.items() for a in ("-e", f"{k}={v}")],
            image, "run", *args]


def summary(stdout: str) -> dict[str, object]:
    for line in stdout.splitlines():
        if '"worker summary"' in line:
            return dict(json.loads(line))
    raise AssertionError(f"no summary line in the worker's output:\n{stdout[-3000:]}")


def seen_ids(data: Path) -> list[str]:
    path = data / "seen.txt"
    return path.read_text().split() if path.exists() else []


def test_drain_in_the_container(engine: str, image: str, kafka_bootstrap: str,
                                mounts: tuple[Path, Path]) -> None:
    data, plugins = mounts
    good, bad, parts = 40, 3, 2
    topic, group = unique_name("image-drain"), unique_name("image-drain")
    create_topic(kafka_bootstrap, topic, parts)
    create_topic(kafka_bootstrap, f"{topic}.dlq", 1)
    records = [(i % parts, f"k{i}".encode(), event_json(i)) for i in range(good)]
    records += [(i % parts, b"bad", b"{not json") for i in range(bad)]
    produce(kafka_bootstrap, topic, records)

    name = f"aw-deploy-drain-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    proc = subprocess.run(
        run_args(engine, image, name, data, plugins, {},
                 ["--bootstrap-servers", kafka_bootstrap, "--topic", topic, "--group", group,
                  "--processors", "seen_proc", "--metrics-address", f"127.0.0.1:{metrics_port()}",
                  "--commit-interval", "0.5", "--drain"]),
        capture_output=True, text=True, timeout=180, check=False)
    print(f"\ndrain: exit {proc.returncode} after {time.monotonic() - started:.1f}s")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    s = summary(proc.stdout)
    print(f"summary: {s}")
    assert (s["events"], s["dead_letters"]) == (good + bad, bad), s
    assert sorted(seen_ids(data)) == sorted(f"evcus_{i:020d}" for i in range(good))
    letters = read_all(kafka_bootstrap, f"{topic}.dlq", bad)
    assert {dict(m.headers())["worker.error.class"] for m in letters} == {b"invalid_json"}
    per_part = [sum(1 for i in range(good) if i % parts == p)
                + sum(1 for i in range(bad) if i % parts == p) for p in range(parts)]
    assert committed(kafka_bootstrap, group, topic, parts) == dict(enumerate(per_part))
    # The image's default ledger (SQLite) is in the data volume: the only place a read-only
    # container can write.
    assert (data / "activity-worker.db").stat().st_size > 0


def test_sigterm_mid_stream_commits_within_the_shutdown_bound(
        engine: str, image: str, kafka_bootstrap: str, mounts: tuple[Path, Path]) -> None:
    data, plugins = mounts
    total, parts, shutdown_timeout = 600, 2, 10.0
    topic, group = unique_name("image-term"), unique_name("image-term")
    create_topic(kafka_bootstrap, topic, parts)
    create_topic(kafka_bootstrap, f"{topic}.dlq", 1)
    produce(kafka_bootstrap, topic,
            [(i % parts, f"k{i}".encode(), event_json(i)) for i in range(total)])

    name, port = f"aw-deploy-term-{uuid.uuid4().hex[:8]}", metrics_port()
    proc = subprocess.Popen(
        run_args(engine, image, name, data, plugins, {"SEEN_DELAY": "0.02"},
                 ["--bootstrap-servers", kafka_bootstrap, "--topic", topic, "--group", group,
                  "--processors", "seen_proc", "--metrics-address", f"127.0.0.1:{port}",
                  "--batch-size", "20", "--commit-interval", "60", "--commit-every", "100000",
                  "--shutdown-timeout", str(shutdown_timeout)]),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: len(seen_ids(data)) >= 60 or proc.poll() is not None, 120,
                 "the worker in the container to process its first events")
        assert proc.poll() is None, proc.communicate()[1][-4000:]
        # The probes the chart points at, served from inside the container.
        assert get_json(f"http://127.0.0.1:{port}/healthz") == (200, {"status": "ok",
                                                                   "reasons": []})
        ready = get_json(f"http://127.0.0.1:{port}/readyz")
        assert ready is not None and ready[0] == 200, ready
        # No commit yet: the commit policy (60 s, 100,000 events) is out of reach, so what is
        # committed after the stop was committed by the stop.
        assert all(o < 0 for o in committed(kafka_bootstrap, group, topic, parts).values())
        signalled = time.monotonic()
        subprocess.run([engine, "kill", "--signal", "TERM", name], check=True,
                       capture_output=True)
        stdout, stderr = proc.communicate(timeout=shutdown_timeout + 30)
        stopped = time.monotonic() - signalled
    finally:
        if proc.poll() is None:
            subprocess.run([engine, "kill", name], check=False, capture_output=True)
            proc.wait(30)
    print(f"\nSIGTERM -> exit {proc.returncode} in {stopped:.2f}s "
          f"(bound {shutdown_timeout:g}s)")
    assert proc.returncode == 0, (stdout + stderr)[-4000:]
    assert stopped < shutdown_timeout, stopped
    seen = seen_ids(data)
    assert len(seen) == len(set(seen)), "an event was processed twice"
    offsets = committed(kafka_bootstrap, group, topic, parts)
    print(f"processed {len(seen)} of {total}; committed {offsets}")
    assert 0 < len(seen) < total, "SIGTERM was not mid-stream"
    # Everything processed is committed, nothing more (the batch in flight was finished); a
    # partition not reached yet has no commit (-1001).
    assert sum(max(o, 0) for o in offsets.values()) == len(seen), (offsets, len(seen))
    assert summary(stdout)["events"] == len(seen)


def test_bad_settings_exit_2_with_the_reason_last(engine: str, image: str, kafka_bootstrap: str,
                                                  mounts: tuple[Path, Path]) -> None:
    """What Kubernetes keeps as the termination message (terminationMessagePolicy:
    FallbackToLogsOnError takes the log's tail): the sentence that says what to fix."""
    data, plugins = mounts
    topic = unique_name("image-nodlq")
    create_topic(kafka_bootstrap, topic, 1)  # and no dead-letter topic
    proc = subprocess.run(
        run_args(engine, image, f"aw-deploy-nodlq-{uuid.uuid4().hex[:8]}", data, plugins, {},
                 ["--bootstrap-servers", kafka_bootstrap, "--topic", topic,
                  "--metrics-address", "off"]),
        capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    last = (proc.stdout + proc.stderr).strip().splitlines()[-1]
    print(f"\nexit 2, last line: {last}")
    assert f"{topic}.dlq do not exist" in last and "topics create --with-dlq" in last
