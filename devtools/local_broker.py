"""A local single-node KRaft Apache Kafka broker for development, tests and CI.

`deploy/local/kafka up|down|status` and `activity-worker kafka up|down|status` both run this
module (`python -m devtools.local_broker`). Two ways to run the broker:

* jvm: the broker jars are resolved from Maven Central with `mvn dependency:copy-dependencies`
  on deploy/local/pom.xml into a cache dir keyed by the Kafka version, then run on the local
  Java 17+. This is the path used on machines without Docker and in CI, and the one the tests
  exercise.
* docker: the official `apache/kafka:<version>` image, chosen only when Java is missing (or
  `--runtime docker`) and `docker info` answers. It cannot be tested on the project's machines
  (no Docker engine there), so it is kept small.

State of the jvm broker lives in the data dir: server.properties (rewritten at each start),
kraft/ (the log dir, formatted once), broker.pid, logs/broker.log (the JVM's stdout+stderr,
where log4j2 writes: see deploy/local/log4j2.xml).

The broker counts as ready only once a real client round trip works: metadata, a topic,
one produced record read back, and an offset commit through the group coordinator.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from worker.errors import WorkerError

REPO_ROOT = Path(__file__).resolve().parents[1]  # devtools/ lives at the top of a checkout
DEPLOY_DIR = REPO_ROOT / "deploy" / "local"
POM_FILE = DEPLOY_DIR / "pom.xml"
LOG4J_CONFIG = DEPLOY_DIR / "log4j2.xml"

HOST = "127.0.0.1"
DEFAULT_PORT = 9092
DEFAULT_HEAP = "1G"
DEFAULT_TIMEOUT_S = 120.0
READY_TOPIC = "launcher-readiness"
STOP_GRACE_S = 30.0
LOG_ROTATE_BYTES = 50 * 1024 * 1024

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_NOT_RUNNING = 3

INSTALL_JAVA = "apt-get install openjdk-17-jre-headless"
INSTALL_MAVEN = "apt-get install maven"

Out = Callable[[str], None]

# Brokers started from this process: polled so an exited one is reaped, and kept so Python
# does not warn about them while we run (the broker outlives the launcher on purpose).
_CHILDREN: list[subprocess.Popen[bytes]] = []


class LauncherError(WorkerError):
    """The launcher cannot do what was asked; the message says what the operator should do."""


def _print(line: str) -> None:
    print(line, flush=True)


# --------------------------------------------------------------------------- settings


def pinned_kafka_version() -> str:
    """The Kafka version pinned in deploy/local/pom.xml (the one source of truth)."""
    try:
        root = ET.parse(POM_FILE).getroot()
    except (OSError, ET.ParseError) as exc:
        raise LauncherError(
            f"Cannot read {POM_FILE} ({exc}): run the launcher from a checkout of the repository."
        ) from exc
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    node = root.find("m:properties/m:kafka.version", ns)
    if node is None or not (node.text or "").strip():
        raise LauncherError(f"{POM_FILE} has no <kafka.version> property: restore the file.")
    return (node.text or "").strip()


@dataclass(frozen=True, slots=True)
class Listener:
    """An extra client listener next to PLAINTEXT (e.g. SASL or mTLS, for tests of secured
    clients). `properties` are scoped to it: written as `listener.name.<name>.<key>=<value>`."""

    name: str  # upper case, e.g. "SCRAM"
    port: int
    protocol: str  # SASL_PLAINTEXT | SASL_SSL | SSL
    properties: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class BrokerSettings:
    """Where and how the local broker runs. Build with `settings_from()`; add secured listeners
    with `dataclasses.replace(settings, listeners=..., scram_credentials=...)`."""

    port: int
    controller_port: int
    data_dir: Path
    version: str
    heap: str
    libs_dir: Path
    timeout_s: float
    runtime: str  # auto | jvm | docker
    # Extra listeners (jvm runtime only); the PLAINTEXT listener and the controller stay.
    listeners: tuple[Listener, ...] = ()
    # Extra broker properties, written after the defaults (so they win).
    extra_properties: tuple[tuple[str, str], ...] = ()
    # `kafka-storage format --add-scram` values, e.g. "SCRAM-SHA-512=[name=u,password=p]":
    # KRaft stores SCRAM users in the metadata log, created when the storage is formatted.
    scram_credentials: tuple[str, ...] = ()
    # One node of a local cluster (devtools/local_cluster.py): its id, every voter as
    # (node id, controller port), the replication of the internal and new topics, and the
    # cluster id all nodes are formatted with. The defaults are the single node.
    node_id: int = 1
    voters: tuple[tuple[int, int], ...] = ()
    replication: int = 1
    cluster_id: str | None = None

    @property
    def ports(self) -> tuple[int, ...]:
        return (self.port, self.controller_port, *(lst.port for lst in self.listeners))

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def properties_file(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def kraft_dir(self) -> Path:
        return self.data_dir / "kraft"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "broker.pid"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "logs" / "broker.log"

    @property
    def container_name(self) -> str:
        return f"activity-worker-kafka-{self.port}"


def _env_int(name: str, value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise LauncherError(f"{name}={value!r} is not a port number: give an integer.") from None
    if not 0 < port < 65536:
        raise LauncherError(f"{name}={port} is out of range: give a port between 1 and 65535.")
    return port


def settings_from(
    port: int | None = None,
    controller_port: int | None = None,
    data_dir: str | Path | None = None,
    version: str | None = None,
    heap: str | None = None,
    libs_dir: str | Path | None = None,
    timeout_s: float | None = None,
    runtime: str | None = None,
    env: dict[str, str] | None = None,
) -> BrokerSettings:
    """Settings from explicit values, else env vars of the same name, else defaults."""
    e = dict(os.environ) if env is None else env
    if port is None:
        port = _env_int("KAFKA_PORT", e["KAFKA_PORT"]) if e.get("KAFKA_PORT") else DEFAULT_PORT
    if controller_port is None:
        cp = e.get("KAFKA_CONTROLLER_PORT")
        controller_port = _env_int("KAFKA_CONTROLLER_PORT", cp) if cp else port + 1
    if controller_port == port:
        raise LauncherError(f"The controller port must differ from the broker port {port}.")
    data = Path(data_dir or e.get("KAFKA_DATA_DIR") or REPO_ROOT / ".local" / "kafka")
    version = version or e.get("KAFKA_VERSION") or pinned_kafka_version()
    heap = heap or e.get("KAFKA_HEAP") or DEFAULT_HEAP
    if not re.fullmatch(r"\d+[kKmMgG]?", heap):
        raise LauncherError(f"Heap size {heap!r} is not valid: give a JVM size such as 512M or 1G.")
    libs = libs_dir or e.get("KAFKA_LIBS_DIR")
    libs_path = (
        Path(libs)
        if libs
        else Path.home() / ".cache" / "activity-worker" / f"kafka-{version}" / "libs"
    )
    if timeout_s is None:
        raw = e.get("KAFKA_START_TIMEOUT")
        try:
            timeout_s = float(raw) if raw else DEFAULT_TIMEOUT_S
        except ValueError:
            raise LauncherError(
                f"KAFKA_START_TIMEOUT={raw!r} is not a number of seconds."
            ) from None
    runtime = runtime or e.get("KAFKA_RUNTIME") or "auto"
    if runtime not in ("auto", "jvm", "docker"):
        raise LauncherError(f"Runtime {runtime!r} is unknown: use auto, jvm or docker.")
    return BrokerSettings(
        port=port,
        controller_port=controller_port,
        data_dir=data.expanduser().resolve(),
        version=version,
        heap=heap,
        libs_dir=libs_path.expanduser().resolve(),
        timeout_s=timeout_s,
        runtime=runtime,
    )


# --------------------------------------------------------------------------- prerequisites


def find_java() -> str:
    """Path of a Java 17+ `java`, from JAVA_HOME or PATH; a LauncherError saying what to install."""
    java_home = os.environ.get("JAVA_HOME")
    candidate = Path(java_home) / "bin" / "java" if java_home else None
    java = str(candidate) if candidate and candidate.is_file() else shutil.which("java")
    if not java:
        raise LauncherError(
            "Java was not found: install Java 17 or newer (e.g. `"
            + INSTALL_JAVA
            + "`) or set JAVA_HOME, to run the local Kafka broker."
        )
    try:
        proc = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LauncherError(f"{java} -version failed ({exc}): check your Java install.") from exc
    match = re.search(r'version "(\d+)(?:\.(\d+))?', proc.stderr + proc.stdout)
    if not match:
        raise LauncherError(f"{java} -version printed no version: check your Java install.")
    major = int(match.group(1))
    if major == 1 and match.group(2):  # "1.8.0_x" style
        major = int(match.group(2))
    if major < 17:
        raise LauncherError(
            f"Java {major} at {java} is too old: Kafka needs Java 17 or newer (e.g. `"
            + INSTALL_JAVA
            + "`; or set JAVA_HOME)."
        )
    return java


def docker_answers() -> bool:
    """True when a Docker engine answers `docker info` within a few seconds (quietly)."""
    docker = shutil.which("docker")
    if not docker:
        return False
    try:
        return (
            subprocess.run(
                [docker, "info"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=5,
                check=False,
            ).returncode
            == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


def choose_runtime(settings: BrokerSettings) -> str:
    """Pick "jvm" when Java 17+ is here (tested path), else "docker" when an engine answers."""
    if settings.runtime == "jvm":
        find_java()
        return "jvm"
    if settings.runtime == "docker":
        if not docker_answers():
            raise LauncherError(
                "No Docker engine answers `docker info`: start Docker, or use --runtime jvm "
                "with Java 17+."
            )
        return "docker"
    if settings.listeners:
        find_java()  # the extra listeners are written for the jvm broker only
        return "jvm"
    try:
        find_java()
        return "jvm"
    except LauncherError:
        if docker_answers():
            return "docker"
        if os.environ.get("JAVA_HOME") or shutil.which("java"):
            raise  # a Java that is there but unusable: its own message says what to do
        raise LauncherError(
            "Neither Java nor a Docker engine was found: install Java 17 or newer (e.g. `"
            + INSTALL_JAVA
            + "`, plus `maven` to fetch the Kafka jars), or start Docker."
        ) from None


def _libs_ready(libs: Path, version: str) -> bool:
    return (libs / f"kafka_2.13-{version}.jar").is_file()


def ensure_libs(settings: BrokerSettings, out: Out) -> Path:
    """The broker's jar directory, resolved with Maven once per Kafka version (atomically)."""
    libs = settings.libs_dir
    if _libs_ready(libs, settings.version):
        out(f"resolving jars: Kafka {settings.version} jars cached in {libs}")
        return libs
    if libs.exists() and any(libs.iterdir()):
        raise LauncherError(
            f"{libs} exists but holds no kafka_2.13-{settings.version}.jar: empty it, or point "
            "KAFKA_LIBS_DIR at a directory with the Kafka jars."
        )
    mvn = shutil.which("mvn")
    if not mvn:
        raise LauncherError(
            f"Maven is needed once to download the Kafka {settings.version} jars: install it "
            "(e.g. `"
            + INSTALL_MAVEN
            + "`), or set KAFKA_LIBS_DIR to a directory that already holds them."
        )
    out(f"resolving jars: fetching Kafka {settings.version} with Maven into {libs} ...")
    libs.parent.mkdir(parents=True, exist_ok=True)
    tmp = libs.parent / f".{libs.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    cmd = [
        mvn,
        "-q",
        "-B",
        "-f",
        str(POM_FILE),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={tmp}",
        f"-Dkafka.version={settings.version}",
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    except subprocess.TimeoutExpired:
        shutil.rmtree(tmp, ignore_errors=True)
        raise LauncherError(
            "Maven did not finish fetching the Kafka jars within 15 minutes: check access to "
            "Maven Central and retry."
        ) from None
    if proc.returncode != 0 or not _libs_ready(tmp, settings.version):
        shutil.rmtree(tmp, ignore_errors=True)
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise LauncherError(
            f"Maven could not fetch Kafka {settings.version} (exit {proc.returncode}): check "
            f"access to Maven Central and that {settings.version} is a published Kafka "
            f"version.\n{tail}"
        )
    try:
        if libs.exists():
            libs.rmdir()  # empty (checked above)
        os.rename(tmp, libs)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not _libs_ready(libs, settings.version):  # not a concurrent winner: a real failure
            raise
    return libs


# --------------------------------------------------------------------------- process state


def _read_pid(settings: BrokerSettings) -> int | None:
    try:
        return int(settings.pid_file.read_text().strip())
    except (OSError, ValueError):
        return None


def _reap_children() -> None:
    """Collect brokers started from this process that have exited (else they stay zombies)."""
    for child in _CHILDREN:
        child.poll()


def _is_our_broker(pid: int, settings: BrokerSettings) -> bool:
    """Alive (not a zombie) and really the broker of this data dir (guards against pid reuse)."""
    proc = Path("/proc") / str(pid)
    if not Path("/proc/self").exists():  # not Linux: best effort
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True
    try:
        stat = (proc / "stat").read_text()
        cmdline = (proc / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    if stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X"):
        return False
    args = [a.decode(errors="replace") for a in cmdline]
    return "kafka.Kafka" in args and str(settings.properties_file) in args


def _scan_for_broker(settings: BrokerSettings) -> int | None:
    """A live broker JVM of this data dir found in /proc (when its pid file was lost)."""
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    for entry in proc.iterdir():
        if entry.name.isdigit() and _is_our_broker(int(entry.name), settings):
            return int(entry.name)
    return None


def running_pid(settings: BrokerSettings) -> int | None:
    """Pid of this data dir's running broker JVM, or None. Trusts the pid file only after
    checking the process, and finds a JVM whose pid file was deleted."""
    _reap_children()
    pid = _read_pid(settings)
    if pid is not None and _is_our_broker(pid, settings):
        return pid
    found = _scan_for_broker(settings)
    if found is not None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        settings.pid_file.write_text(f"{found}\n")
    return found


def port_free(port: int) -> bool:
    """Whether a server could bind HOST:port now (SO_REUSEADDR, as the JVM does)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def _accepts(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((HOST, port)) == 0


@contextlib.contextmanager
def _lock(settings: BrokerSettings) -> Iterator[None]:
    """Serialise up/down on one data dir (two concurrent `up`s must not start two JVMs)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with open(settings.data_dir / ".launcher.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def log_tail(settings: BrokerSettings, lines: int = 20) -> str:
    try:
        with open(settings.log_file, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 16384))
            text = fh.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


# --------------------------------------------------------------------------- readiness


class ProbeFailed(Exception):
    """One readiness attempt did not complete; the message says which step."""


_QUIET = logging.getLogger("devtools.local_broker.librdkafka")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False


def probe(bootstrap: str, timeout_s: float = 15.0, brokers: int = 1) -> None:
    """Ready means: metadata answers and lists `brokers` brokers, the readiness topic exists
    (replicated on all of them), one record produced to it with acks=all is consumed back, and
    an offset commit goes through the group coordinator."""
    from confluent_kafka import KafkaError, KafkaException, TopicPartition
    from confluent_kafka.cimpl import NewTopic

    from worker.kafka.clients import new_admin, new_consumer, new_producer

    deadline = time.monotonic() + timeout_s

    def left() -> float:
        return max(0.1, deadline - time.monotonic())

    common: dict[str, str | int | float | bool] = {"bootstrap.servers": bootstrap}
    admin = new_admin(common, logger=_QUIET)
    try:
        md = admin.list_topics(timeout=left())
    except KafkaException as exc:
        raise ProbeFailed(f"no metadata from {bootstrap}: {exc}") from None
    if len(md.brokers) < brokers:
        raise ProbeFailed(f"metadata lists {len(md.brokers)} of {brokers} brokers")
    topic_md = md.topics.get(READY_TOPIC)
    if topic_md is None or topic_md.error is not None:
        futures = admin.create_topics(
            [NewTopic(READY_TOPIC, 1, brokers, config={"retention.ms": "3600000"})],
            operation_timeout=left(),
            request_timeout=left(),
        )
        try:
            futures[READY_TOPIC].result(timeout=left())
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise ProbeFailed(f"cannot create topic {READY_TOPIC}: {exc}") from None
        except Exception as exc:  # concurrent.futures.TimeoutError and friends
            raise ProbeFailed(f"cannot create topic {READY_TOPIC}: {exc!r}") from None

    token = uuid.uuid4().hex.encode()
    delivered: list[tuple[object, int]] = []
    producer = new_producer(
        {**common, "acks": "all", "linger.ms": 0, "message.timeout.ms": int(left() * 1000)},
        logger=_QUIET,
    )
    producer.produce(
        READY_TOPIC,
        token,
        partition=0,
        on_delivery=lambda err, msg: delivered.append((err, msg.offset() or 0)),
    )
    producer.flush(left())
    if not delivered:
        raise ProbeFailed("a produced record was not acknowledged in time")
    err, offset = delivered[0]
    if err is not None:
        raise ProbeFailed(f"produce failed: {err}")

    group = f"launcher-readiness-{uuid.uuid4().hex[:12]}"
    consumer = new_consumer(
        {**common, "group.id": group, "enable.auto.commit": False, "auto.offset.reset": "earliest"},
        logger=_QUIET,
    )
    try:
        consumer.assign([TopicPartition(READY_TOPIC, 0, offset)])
        got = None
        while got is None and time.monotonic() < deadline:
            msg = consumer.poll(min(0.5, left()))
            if msg is not None and msg.error() is None and msg.value() == token:
                got = msg
        if got is None:
            raise ProbeFailed("the produced record was not consumed back in time")
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                consumer.commit(message=got, asynchronous=False)
                break
            except KafkaException as exc:  # coordinator still loading: retry
                last = exc
                time.sleep(0.2)
        else:
            raise ProbeFailed(f"offset commit through the group coordinator failed: {last}")
    finally:
        consumer.close()
    with contextlib.suppress(Exception):  # tidy only; a leftover empty group is harmless
        admin.delete_consumer_groups([group], request_timeout=2)[group].result(timeout=3)


def _speaks_kafka(bootstrap: str, timeout_s: float) -> bool:
    """Whether something at `bootstrap` answers a Kafka metadata request."""
    from confluent_kafka import KafkaException

    from worker.kafka.clients import new_admin

    try:
        md = new_admin({"bootstrap.servers": bootstrap}, logger=_QUIET).list_topics(
            timeout=timeout_s
        )
    except KafkaException:
        return False
    return bool(md.brokers)


def wait_ready(
    settings: BrokerSettings, alive: Callable[[], bool], deadline: float, what: str
) -> None:
    """Poll until `probe` passes; fail fast if the broker dies, with the log tail."""
    last = "the port never opened"
    while time.monotonic() < deadline:
        if not alive():
            raise LauncherError(
                f"The Kafka broker exited during {what}: see {settings.log_file}\n"
                + log_tail(settings)
            )
        if not _accepts(settings.port):
            time.sleep(0.1)
            continue
        try:
            probe(settings.bootstrap, min(15.0, max(1.0, deadline - time.monotonic())))
            return
        except ProbeFailed as exc:
            last = str(exc)
            time.sleep(0.2)
    raise LauncherError(
        f"Kafka at {settings.bootstrap} was not ready within {settings.timeout_s:g}s ({last}): "
        f"see {settings.log_file}, or raise --timeout."
    )


# --------------------------------------------------------------------------- the jvm broker


def _new_cluster_id() -> str:
    """A Kafka `Uuid` string (url-safe base64 of 16 random bytes), as `random-uuid` makes."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cid.startswith("-"):
            return cid


#: The smallest session timeout and heartbeat interval a consumer-protocol (KIP-848) group may
#: be given with a group config on the local broker (Kafka's own minimums: 45 s and 5 s).
KIP848_MIN_SESSION_MS = 3000
KIP848_MIN_HEARTBEAT_MS = 500


def server_properties(settings: BrokerSettings) -> str:
    h, p, c = HOST, settings.port, settings.controller_port
    voters = settings.voters or ((settings.node_id, c),)
    rf = settings.replication
    min_isr = min(2, rf)  # RF 3 with min.insync.replicas 2: one node may be down
    extra = settings.listeners
    listeners = ",".join(
        [f"PLAINTEXT://{h}:{p}", f"CONTROLLER://{h}:{c}"]
        + [f"{lst.name}://{h}:{lst.port}" for lst in extra]
    )
    advertised = ",".join(
        [f"PLAINTEXT://{h}:{p}"] + [f"{lst.name}://{h}:{lst.port}" for lst in extra]
    )
    protocols = ",".join(
        ["CONTROLLER:PLAINTEXT", "PLAINTEXT:PLAINTEXT"]
        + [f"{lst.name}:{lst.protocol}" for lst in extra]
    )
    scoped = [
        f"listener.name.{lst.name.lower()}.{key}={value}"
        for lst in extra
        for key, value in lst.properties
    ]
    return "\n".join(
        [
            "# Written by deploy/local/kafka at each start; edit the launcher, not this file.",
            "process.roles=broker,controller",
            f"node.id={settings.node_id}",
            # A static voter set: the controller port may change between runs of one data dir.
            "controller.quorum.voters=" + ",".join(f"{n}@{h}:{port}" for n, port in voters),
            f"listeners={listeners}",
            f"advertised.listeners={advertised}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            f"listener.security.protocol.map={protocols}",
            f"log.dirs={settings.kraft_dir}",
            "num.partitions=4",
            f"default.replication.factor={rf}",
            f"min.insync.replicas={min_isr}",
            f"offsets.topic.replication.factor={rf}",
            f"transaction.state.log.replication.factor={rf}",
            f"transaction.state.log.min.isr={min_isr}",
            f"share.coordinator.state.topic.replication.factor={rf}",
            f"share.coordinator.state.topic.min.isr={min_isr}",
            # No 3 s wait before a new group's first assignment: every test makes a group.
            "group.initial.rebalance.delay.ms=0",
            # KIP-848 groups take their session timeout and heartbeat interval from the broker
            # (45 s and 5 s by default, and no group may ask for less than the minimums, which
            # are the same). Lower minimums let a test give its group shorter ones with a
            # group config (consumer.session.timeout.ms), as a classic consumer sets its own;
            # the defaults stay those of production.
            f"group.consumer.min.session.timeout.ms={KIP848_MIN_SESSION_MS}",
            f"group.consumer.min.heartbeat.interval.ms={KIP848_MIN_HEARTBEAT_MS}",
            *scoped,
            *(f"{key}={value}" for key, value in settings.extra_properties),
            "",
        ]
    )


def _java_cmd(java: str, settings: BrokerSettings, libs: Path, *main: str) -> list[str]:
    return [
        java,
        f"-Xms{settings.heap}",
        f"-Xmx{settings.heap}",
        "-XX:+UseG1GC",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
        "-cp",
        str(libs / "*"),
        *main,
    ]


def _open_log(settings: BrokerSettings, banner: str) -> int:
    log = settings.log_file
    log.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        if log.stat().st_size > LOG_ROTATE_BYTES:
            os.replace(log, log.with_name(log.name + ".1"))
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.write(
        fd, f"\n===== {time.strftime('%Y-%m-%dT%H:%M:%S')} launcher: {banner} =====\n".encode()
    )
    return fd


def _format_storage(settings: BrokerSettings, java: str, libs: Path, out: Out) -> None:
    if (settings.kraft_dir / "meta.properties").is_file():
        out(f"formatting storage: already formatted ({settings.kraft_dir})")
        return
    out(f"formatting storage in {settings.kraft_dir} ...")
    cmd = _java_cmd(
        java,
        settings,
        libs,
        "kafka.tools.StorageTool",
        "format",
        "-t",
        settings.cluster_id or _new_cluster_id(),
        "-c",
        str(settings.properties_file),
        *(arg for cred in settings.scram_credentials for arg in ("--add-scram", cred)),
    )
    fd = _open_log(settings, "formatting storage")
    try:
        rc = subprocess.run(
            cmd, stdin=subprocess.DEVNULL, stdout=fd, stderr=fd, timeout=120, check=False
        ).returncode
    except subprocess.TimeoutExpired:
        rc = -1
    finally:
        os.close(fd)
    if rc != 0 or not (settings.kraft_dir / "meta.properties").is_file():
        raise LauncherError(
            f"Formatting Kafka storage in {settings.kraft_dir} failed: see {settings.log_file}\n"
            + log_tail(settings)
        )


def launch_jvm(settings: BrokerSettings, out: Out) -> subprocess.Popen[bytes]:
    """Write server.properties, format the storage once, and start the broker JVM (its own
    session, so it outlives the launcher); readiness is the caller's to wait for."""
    for p in settings.ports:
        if not port_free(p):
            raise LauncherError(_port_busy_message(settings, p))
    java = find_java()
    libs = ensure_libs(settings, out)
    if not list(libs.glob("log4j-slf4j*-impl-*.jar")):
        out(f"warning: no SLF4J binding jar in {libs}: the broker will not write logs")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    tmp = settings.properties_file.with_suffix(".tmp")
    tmp.write_text(server_properties(settings))
    os.replace(tmp, settings.properties_file)
    _format_storage(settings, java, libs, out)

    out(f"starting: Kafka {settings.version} node {settings.node_id} on {settings.bootstrap} "
        f"(heap {settings.heap}) ...")
    fd = _open_log(settings, f"starting Kafka {settings.version} on {settings.bootstrap}")
    try:
        proc = subprocess.Popen(
            _java_cmd(java, settings, libs, "kafka.Kafka", str(settings.properties_file)),
            stdin=subprocess.DEVNULL,
            stdout=fd,
            stderr=fd,
            cwd=settings.data_dir,
            start_new_session=True,  # survives the launcher and Ctrl-C in its terminal
        )
    finally:
        os.close(fd)
    _CHILDREN.append(proc)
    settings.pid_file.write_text(f"{proc.pid}\n")
    return proc


def _start_jvm(settings: BrokerSettings, out: Out) -> None:
    proc = launch_jvm(settings, out)
    deadline = time.monotonic() + settings.timeout_s
    try:
        wait_ready(settings, lambda: proc.poll() is None, deadline, "start-up")
    except LauncherError:
        if proc.poll() is None:
            _stop_pid(proc.pid, settings)
        settings.pid_file.unlink(missing_ok=True)
        raise


def _port_busy_message(settings: BrokerSettings, port: int) -> str:
    owner = f"not the broker of {settings.data_dir}"
    if port == settings.port and _speaks_kafka(f"{HOST}:{port}", 2.0):
        return (
            f"Port {port} is used by a Kafka broker this launcher did not start ({owner}): "
            f"use it with KAFKA_BOOTSTRAP_SERVERS={HOST}:{port}, stop it, or pick another "
            "--port."
        )
    return (
        f"Port {port} on {HOST} is already in use by another process ({owner}): stop it, or "
        "choose other ports with --port / --controller-port."
    )


def _wait_gone(pid: int, settings: BrokerSettings, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        _reap_children()
        if not _is_our_broker(pid, settings):
            return True
        time.sleep(0.1)
    return not _is_our_broker(pid, settings)


def _stop_pid(pid: int, settings: BrokerSettings) -> str:
    """SIGTERM (Kafka's clean shutdown), then SIGKILL after STOP_GRACE_S. Returns how."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if _wait_gone(pid, settings, STOP_GRACE_S):
        return "SIGTERM"
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if _wait_gone(pid, settings, 10.0):
        return f"SIGKILL after {STOP_GRACE_S:.0f}s"
    raise LauncherError(
        f"Kafka broker pid {pid} survived SIGKILL: check it with `ps -p {pid}` and end it by hand."
    )


# --------------------------------------------------------------------------- docker (untested)


def _docker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def _docker_state(settings: BrokerSettings) -> str | None:
    """Docker's state ("running", "exited", ...) of our container, or None (no container
    or no Docker). Only asked when the docker CLI exists and the engine answers."""
    if not docker_answers():
        return None
    proc = _docker("inspect", "-f", "{{.State.Status}}", settings.container_name, timeout=10)
    return proc.stdout.strip() if proc.returncode == 0 else None


def _start_docker(settings: BrokerSettings, out: Out) -> None:
    """Run apache/kafka:<version> with the same single-node settings. NOT tested by the suite:
    the project's machines have no Docker engine. Data lives in the container (no volume)."""
    name = settings.container_name
    state = _docker_state(settings)
    if state is not None and state != "running":
        out(f"starting: existing container {name} ...")
        proc = _docker("start", name)
    else:
        for p in (settings.port,):
            if not port_free(p):
                raise LauncherError(_port_busy_message(settings, p))
        out(f"starting: docker container {name} from apache/kafka:{settings.version} ...")
        env = {
            "KAFKA_NODE_ID": "1",
            "KAFKA_PROCESS_ROLES": "broker,controller",
            "KAFKA_LISTENERS": "PLAINTEXT://:9092,CONTROLLER://:9093",
            "KAFKA_ADVERTISED_LISTENERS": f"PLAINTEXT://{HOST}:{settings.port}",
            "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
            "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:9093",
            "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
            "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
            "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
            "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR": "1",
            "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR": "1",
            "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
            "KAFKA_NUM_PARTITIONS": "4",
            "KAFKA_HEAP_OPTS": f"-Xmx{settings.heap} -Xms{settings.heap}",
        }
        args = ["run", "-d", "--name", name, "-p", f"{HOST}:{settings.port}:9092"]
        for k, v in env.items():
            args += ["-e", f"{k}={v}"]
        proc = _docker(*args, f"apache/kafka:{settings.version}", timeout=600)
    if proc.returncode != 0:
        raise LauncherError(
            f"Docker could not start {name}: {proc.stderr.strip()[-500:]} (fix Docker, or use "
            "--runtime jvm with Java 17+)."
        )
    deadline = time.monotonic() + settings.timeout_s
    try:
        wait_ready(settings, lambda: _docker_state(settings) == "running", deadline, "start-up")
    except LauncherError as exc:
        raise LauncherError(f"{exc} (container logs: docker logs {name})") from None


# --------------------------------------------------------------------------- commands


def _report(settings: BrokerSettings, out: Out, docker: bool = False) -> None:
    out(f"bootstrap: {settings.bootstrap}")
    if docker:
        out(f"log: docker logs {settings.container_name}")
    else:
        out(f"log: {settings.log_file}")


def up(settings: BrokerSettings, out: Out = _print) -> int:
    """Start the broker unless it runs; return once it answers a produce and a consume."""
    t0 = time.monotonic()
    with _lock(settings):
        pid = running_pid(settings)
        if pid is not None:
            deadline = time.monotonic() + settings.timeout_s
            wait_ready(settings, lambda: running_pid(settings) == pid, deadline, "a check")
            out(f"ready: Kafka is already running (pid {pid}); nothing to do")
            _report(settings, out)
            return EXIT_OK
        stale = _read_pid(settings)
        if stale is not None or settings.pid_file.exists():
            out(f"removing stale pid file: broker pid {stale} is no longer running")
            settings.pid_file.unlink(missing_ok=True)
        if _docker_state(settings) == "running":
            deadline = time.monotonic() + settings.timeout_s
            wait_ready(settings, lambda: True, deadline, "a readiness check")
            out(f"ready: container {settings.container_name} is already running; nothing to do")
            _report(settings, out, docker=True)
            return EXIT_OK
        runtime = choose_runtime(settings)
        if runtime == "docker":
            _start_docker(settings, out)
            out(f"ready: answered a produce and a consume in {time.monotonic() - t0:.1f}s")
            _report(settings, out, docker=True)
            return EXIT_OK
        _start_jvm(settings, out)
        out(
            f"ready: Kafka {settings.version} (pid {_read_pid(settings)}) answered a produce and "
            f"a consume in {time.monotonic() - t0:.1f}s"
        )
        _report(settings, out)
        return EXIT_OK


def down(settings: BrokerSettings, out: Out = _print) -> int:
    """Stop the broker (SIGTERM, SIGKILL after a bound) and wait until its ports are free."""
    with _lock(settings):
        pid = running_pid(settings)
        if pid is None:
            settings.pid_file.unlink(missing_ok=True)
            if _docker_state(settings) is not None:
                proc = _docker("rm", "-f", settings.container_name)
                if proc.returncode != 0:
                    raise LauncherError(
                        f"docker rm -f {settings.container_name} failed: {proc.stderr.strip()}"
                    )
                out(f"stopped: removed container {settings.container_name}")
                return EXIT_OK
            out(f"not running: no broker for data dir {settings.data_dir}; nothing to stop")
            return EXIT_OK
        t0 = time.monotonic()
        how = _stop_pid(pid, settings)
        settings.pid_file.unlink(missing_ok=True)
        deadline = time.monotonic() + 15.0
        while not all(port_free(p) for p in settings.ports):
            if time.monotonic() > deadline:
                raise LauncherError(
                    f"The broker (pid {pid}) stopped but port {settings.port} or "
                    f"{settings.controller_port} is still taken after 15s: find the owner with "
                    f"`ss -ltnp`."
                )
            time.sleep(0.1)
        out(
            f"stopped: Kafka pid {pid} ({how}) in {time.monotonic() - t0:.1f}s; "
            f"port {settings.port} is free"
        )
        return EXIT_OK


def status(settings: BrokerSettings, out: Out = _print) -> int:
    """Exit 0 when this data dir's broker runs and answers a produce and consume, else 3."""
    pid = running_pid(settings)
    docker = False
    if pid is None:
        docker = _docker_state(settings) == "running"
    if pid is None and not docker:
        stale = _read_pid(settings)
        note = f" (stale pid file: pid {stale} is gone)" if stale is not None else ""
        busy = (
            "" if port_free(settings.port) else f"; port {settings.port} is used by another process"
        )
        out(f"not running: no broker for data dir {settings.data_dir}{note}{busy}")
        return EXIT_NOT_RUNNING
    try:
        probe(settings.bootstrap, min(settings.timeout_s, 15.0))
    except ProbeFailed as exc:
        who = f"pid {pid}" if pid else f"container {settings.container_name}"
        out(f"not ready: the broker runs ({who}) but failed a readiness check: {exc}")
        _report(settings, out, docker)
        return EXIT_NOT_RUNNING
    out(f"running: Kafka (pid {pid}) is ready" if pid else "running: docker container is ready")
    _report(settings, out, docker)
    return EXIT_OK


# --------------------------------------------------------------------------- CLI

ACTIONS: dict[str, Callable[[BrokerSettings, Out], int]] = {
    "up": up,
    "down": down,
    "status": status,
}

ACTION_HELP = {
    "up": "start the broker (no-op when it already runs) and wait until it is ready",
    "down": "stop the broker and wait until its ports are free",
    "status": "exit 0 when the broker runs and answers a produce and a consume, else 3",
}
NODE_HELP = ("act on one node of a cluster (--nodes 2 or more): stop (SIGTERM), kill (SIGKILL), "
             "freeze (SIGSTOP), thaw (SIGCONT), start (and wait until its replicas are in sync)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by `deploy/local/kafka` and `activity-worker kafka`."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = (
        "Every option can also be set by the environment variable in brackets.\n"
        "Jars are fetched once with Maven (needs `mvn`); the broker needs Java 17+."
    )
    opts = argparse.ArgumentParser(add_help=False)
    opts.add_argument(
        "--nodes",
        type=int,
        help="nodes: 1 is a single broker; 3 is a cluster of combined broker+controller nodes "
        "with replication factor 3 and min.insync.replicas 2, node i on port + 2(i-1), "
        "default port 19092, data dir <repo>/.local/kafka-cluster, heap 512M [KAFKA_NODES] "
        "(default 1)",
    )
    opts.add_argument("--port", type=int, help=f"broker port [KAFKA_PORT] (default {DEFAULT_PORT})")
    opts.add_argument(
        "--controller-port",
        type=int,
        help="KRaft controller port [KAFKA_CONTROLLER_PORT] (default: port + 1)",
    )
    opts.add_argument(
        "--data-dir", help="data, pid file and logs [KAFKA_DATA_DIR] (default <repo>/.local/kafka)"
    )
    opts.add_argument(
        "--version",
        dest="kafka_version",
        help="Kafka version to run [KAFKA_VERSION] (default: pinned in deploy/local/pom.xml)",
    )
    opts.add_argument("--heap", help=f"JVM heap, e.g. 512M [KAFKA_HEAP] (default {DEFAULT_HEAP})")
    opts.add_argument(
        "--libs-dir",
        help="where the broker jars are cached [KAFKA_LIBS_DIR] "
        "(default ~/.cache/activity-worker/kafka-<version>/libs)",
    )
    opts.add_argument(
        "--timeout",
        type=float,
        help="seconds to wait for readiness [KAFKA_START_TIMEOUT] "
        f"(default {DEFAULT_TIMEOUT_S:.0f})",
    )
    opts.add_argument(
        "--runtime",
        choices=("auto", "jvm", "docker"),
        help="jvm: local Java + Maven jars; docker: apache/kafka image; auto: jvm when Java 17+ "
        "is installed, else docker [KAFKA_RUNTIME] (default auto)",
    )
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, text in ACTION_HELP.items():
        sub.add_parser(name, parents=[opts], help=text, description=text)
    from devtools.local_cluster import NODE_ACTIONS

    node = sub.add_parser("node", parents=[opts], help=NODE_HELP, description=NODE_HELP)
    node.add_argument("node_action", choices=NODE_ACTIONS, metavar="ACTION")
    node.add_argument("node_id", type=int, metavar="ID", help="the node's id, 1 to --nodes")


def run(args: argparse.Namespace) -> int:
    try:
        settings = settings_from(
            port=args.port,
            controller_port=args.controller_port,
            data_dir=args.data_dir,
            version=args.kafka_version,
            heap=args.heap,
            libs_dir=args.libs_dir,
            timeout_s=args.timeout,
            runtime=args.runtime,
        )
        nodes = args.nodes or int(os.environ.get("KAFKA_NODES") or 1)
        if nodes == 1:
            if args.action == "node":
                raise LauncherError("`node` acts on one node of a cluster: give --nodes 3 (or "
                                    "KAFKA_NODES=3) as for `up`.")
            return ACTIONS[args.action](settings, _print)
        return _run_cluster(args, settings, nodes)
    except LauncherError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return EXIT_ERROR


def _run_cluster(args: argparse.Namespace, settings: BrokerSettings, nodes: int) -> int:
    from devtools.local_cluster import cluster_from

    if settings.runtime == "docker":
        raise LauncherError("A cluster runs on the jvm runtime only: install Java 17+.")
    env = os.environ
    cluster = cluster_from(
        nodes,
        settings,
        port_given=bool(args.port or env.get("KAFKA_PORT")),
        data_dir_given=bool(args.data_dir or env.get("KAFKA_DATA_DIR")),
        heap_given=bool(args.heap or env.get("KAFKA_HEAP")),
    )
    if args.action == "node":
        return cluster.node_action(args.node_action, args.node_id)
    if args.action == "up":
        return cluster.up()
    if args.action == "down":
        return cluster.down()
    return cluster.status()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="deploy/local/kafka",
        description="Run a local single-node KRaft Apache Kafka broker for development and tests.",
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `deploy/local/kafka status | head -1`: the reader left
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
