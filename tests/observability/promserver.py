"""A private, throwaway Prometheus for tests, and helpers to check PromQL against it.

`PrometheusServer(target, rule_files)` starts Debian's `prometheus` binary on a free loopback
port with a temp config (scrape interval 1s, job "activity-worker" -- the name the alert rules
and the dashboard select on) and a temp TSDB, waits until it is ready, and stops it on close().

How thresholds are removed from alert expressions (`underlying_exprs`): an alert expr is split
at its top-level set operators (`and`, `or`, `unless`, with any on()/ignoring() clause), and a
trailing comparison with a number (`> 1000`, `== 0`, `> bool 0.05`) is cut off each operand.
What is left is the measurement the alert compares ("how much lag", "is the target up"),
and every one of them must return data: a rule whose metric is misspelled returns nothing.

Grafana variables are replaced by what they mean for a single worker (`grafana_to_promql`).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
ALERTS = REPO / "deploy" / "prometheus" / "alerts.yml"
PROM_CONFIG = REPO / "deploy" / "prometheus" / "prometheus.yml"
DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "activity-worker.json"
JOB = "activity-worker"
INSTALL_HINT = ("install it with: apt-get update && "
                "apt-get install -y --no-install-recommends prometheus")


def find_binary(name: str) -> str | None:
    return shutil.which(name) or (f"/usr/bin/{name}" if os.path.exists(f"/usr/bin/{name}")
                                  else None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class PrometheusServer:
    def __init__(self, target: str, rule_files: list[Path] | None = None,
                 binary: str | None = None, start_timeout: float = 60.0,
                 extra_jobs: dict[str, str] | None = None) -> None:
        binary = binary or find_binary("prometheus")
        if binary is None:
            raise RuntimeError(f"prometheus binary not found: {INSTALL_HINT}")
        self._dir = Path(tempfile.mkdtemp(prefix="obs-prom-"))
        rules = []
        for i, f in enumerate(rule_files or []):
            dest = self._dir / f"rules{i}.yml"
            shutil.copyfile(f, dest)
            rules.append(str(dest))
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s",
                       "scrape_timeout": "900ms"},
            "rule_files": rules,
            "scrape_configs": [{"job_name": JOB, "static_configs": [{"targets": [target]}]},
                               *({"job_name": job, "static_configs": [{"targets": [t]}]}
                                 for job, t in (extra_jobs or {}).items())],
        }
        # JSON is valid YAML, so no YAML library is needed.
        (self._dir / "prometheus.yml").write_text(json.dumps(config, indent=2))
        self.log_path = self._dir / "prometheus.log"
        self.target = target
        last_error = ""
        for _attempt in range(3):  # the free port may be taken between probe and bind
            self.port = free_port()
            self.url = f"http://127.0.0.1:{self.port}"
            log = open(self.log_path, "wb")  # noqa: SIM115 - closed in close()
            self._log = log
            self._proc = subprocess.Popen(
                [binary, f"--config.file={self._dir / 'prometheus.yml'}",
                 f"--storage.tsdb.path={self._dir / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            deadline = time.monotonic() + start_timeout
            while time.monotonic() < deadline and self._proc.poll() is None:
                try:
                    if http_get(self.url + "/-/ready", timeout=1)[0] == 200:
                        return
                except OSError:
                    pass
                time.sleep(0.1)  # polling a condition with a deadline
            self._stop_process()
            last_error = self.log_path.read_text(errors="replace")[-2000:]
        shutil.rmtree(self._dir, ignore_errors=True)
        raise RuntimeError(f"prometheus did not become ready; its log ends with:\n{last_error}")

    def _stop_process(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=5)
        self._log.close()

    def close(self) -> None:
        self._stop_process()
        shutil.rmtree(self._dir, ignore_errors=True)

    # -- API -------------------------------------------------------------------------------
    def api(self, path: str, **params: str) -> Any:
        qs = urllib.parse.urlencode(params)
        status, body = http_get(f"{self.url}/api/v1/{path}" + (f"?{qs}" if qs else ""))
        doc = json.loads(body)
        if status != 200 or doc.get("status") != "success":
            raise AssertionError(f"Prometheus API {path} {params} -> {status}: {doc}")
        return doc["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        assert data["resultType"] in ("vector", "matrix", "scalar"), data
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        return list(data["result"])

    def wait_target_up(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            last = self.api("targets")["activeTargets"]
            if all(t["health"] == "up" for t in last) and any(
                    self.target in t["scrapeUrl"] for t in last):
                return
            time.sleep(0.2)
        raise AssertionError(f"Prometheus never scraped {self.target} successfully: {last}")

    def rules(self) -> list[dict[str, Any]]:
        return [r for g in self.api("rules")["groups"] for r in g["rules"]]


def has_data(result: list[dict[str, Any]]) -> bool:
    """Non-empty, with at least one sample that is a number (not NaN)."""
    for series in result:
        values = [series["value"]] if "value" in series else series.get("values", [])
        for _ts, v in values:
            if not math.isnan(float(v)):
                return True
    return False


_SET_OP = re.compile(r"\s+(?:and|or|unless)(?:\s+(?:on|ignoring)\s*\([^)]*\))?\s+")
_TRAILING_CMP = re.compile(r"\s*(?:==|!=|>=|<=|>|<)\s*(?:bool\s+)?[-+]?[0-9.]+(?:e[-+]?\d+)?\s*$")


def _split_top_level(expr: str) -> list[str]:
    """Split at set operators that are outside (), {} and [] and outside strings."""
    parts, depth, start, i, quote = [], 0, 0, 0, ""
    while i < len(expr):
        c = expr[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == quote:
                quote = ""
        elif c in "\"'`":
            quote = c
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif depth == 0:
            m = _SET_OP.match(expr, i)
            if m and (i == 0 or expr[i - 1] != "_"):
                parts.append(expr[start:i])
                start = i = m.end()
                continue
        i += 1
    parts.append(expr[start:])
    return [p.strip() for p in parts if p.strip()]


def underlying_exprs(expr: str) -> list[str]:
    """The measurements an alert condition compares, without the thresholds (see module doc)."""
    out = []
    for part in _split_top_level(" ".join(expr.split())):
        out.append(_TRAILING_CMP.sub("", part).strip())
    return out


def grafana_to_promql(expr: str, rate_interval: str = "1m") -> str:
    """Replace Grafana's variables by their meaning for the job under test."""
    return (expr.replace("$__rate_interval", rate_interval)
            .replace("$__interval", "15s")
            .replace("${job}", JOB).replace("$job", JOB)
            .replace("${instance}", ".*").replace("$instance", ".*"))


def dashboard_exprs(path: Path = DASHBOARD) -> Iterator[tuple[str, str]]:
    """(panel title, expr) for every query of every panel, rows included."""
    doc = json.loads(path.read_text())

    def walk(panels: list[dict[str, Any]]) -> Iterator[tuple[str, str]]:
        for p in panels:
            for t in p.get("targets", []):
                if t.get("expr"):
                    yield p.get("title", "?"), t["expr"]
            yield from walk(p.get("panels", []))

    yield from walk(doc["panels"])


def dashboard_variable_selectors(path: Path = DASHBOARD) -> Iterator[tuple[str, str, str]]:
    """(variable, selector, label) of each `label_values(selector, label)` variable."""
    doc = json.loads(path.read_text())
    for var in doc["templating"]["list"]:
        if var.get("type") != "query":
            continue
        q = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        m = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", q.strip())
        assert m, f"dashboard variable {var['name']}: unsupported query {q!r}"
        yield var["name"], m.group(1), m.group(2)
