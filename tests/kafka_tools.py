"""Kafka's own command-line tools (the `kafka-tools` jar of the broker's version, with its
dependencies, from Maven Central: tests/tools/pom.xml), run with the JDK, for tests that hold the
worker to what Kafka itself reports (ConsumerGroupCommand's LAG) or writes (ConsoleProducer,
with every compression codec). The jars are fetched once into a cache dir keyed by the version."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

TOOLS_POM = Path(__file__).resolve().parent / "tools" / "pom.xml"


def _version() -> str:
    from devtools.local_broker import pinned_kafka_version

    return pinned_kafka_version()


def tools_classpath() -> str:
    """The classpath of kafka-tools (fetching it with Maven on first use)."""
    version = _version()
    libs = Path.home() / ".cache" / "activity-worker" / f"kafka-tools-{version}" / "libs"
    marker = libs / f"kafka-tools-{version}.jar"
    if not marker.is_file():
        mvn = shutil.which("mvn")
        if mvn is None:
            pytest.fail("Maven (mvn) is needed to fetch Kafka's tools: apt-get install maven")
        tmp = libs.parent / f".libs.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        proc = subprocess.run(
            [mvn, "-q", "-B", "-f", str(TOOLS_POM), "dependency:copy-dependencies",
             f"-DoutputDirectory={tmp}", f"-Dkafka.version={version}"],
            capture_output=True, text=True, timeout=900, check=False)
        if proc.returncode != 0 or not (tmp / marker.name).is_file():
            shutil.rmtree(tmp, ignore_errors=True)
            pytest.fail(f"Maven could not fetch kafka-tools {version}:\n"
                        f"{(proc.stdout + proc.stderr)[-2000:]}")
        libs.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(tmp, libs)
        except OSError:  # another process won the race
            shutil.rmtree(tmp, ignore_errors=True)
    return f"{libs}/*"


def run_tool(main_class: str, *args: str, stdin: bytes | None = None,
             timeout: float = 120) -> str:
    """Run one of Kafka's tools; its stdout (fails the test with its output if it fails)."""
    from devtools.local_broker import find_java

    proc = subprocess.run([find_java(), "-cp", tools_classpath(), main_class, *args], input=stdin,
                          capture_output=True, timeout=timeout, check=False)
    out = proc.stdout.decode(errors="replace")
    assert proc.returncode == 0, f"{main_class} failed ({proc.returncode}):\n{out}\n" + \
        proc.stderr.decode(errors="replace")[-3000:]
    return out


def group_lag(bootstrap: str, group: str) -> dict[tuple[str, int], tuple[int, int, int]]:
    """ConsumerGroupCommand --describe: (CURRENT-OFFSET, LOG-END-OFFSET, LAG) per partition."""
    out = run_tool("org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
                   "--bootstrap-server", bootstrap, "--describe", "--group", group)
    rows: dict[tuple[str, int], tuple[int, int, int]] = {}
    header: list[str] | None = None
    for line in out.splitlines():
        cells = line.split()
        if cells[:2] == ["GROUP", "TOPIC"]:
            header = cells
        elif header is not None and len(cells) >= 6 and cells[0] == group:
            row = dict(zip(header, cells, strict=False))
            rows[(row["TOPIC"], int(row["PARTITION"]))] = (
                int(row["CURRENT-OFFSET"]), int(row["LOG-END-OFFSET"]), int(row["LAG"]))
    return rows


def console_produce(bootstrap: str, topic: str, lines: list[bytes], codec: str) -> None:
    """Write one record per line with Kafka's Java console producer, compressed with `codec`."""
    run_tool("org.apache.kafka.tools.ConsoleProducer", "--bootstrap-server", bootstrap,
             "--topic", topic, "--compression-codec", codec,
             stdin=b"\n".join(lines) + b"\n")
