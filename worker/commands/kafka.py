"""`activity-worker kafka up|down|status`: the local broker launcher (deploy/local/README.md).

A development tool: the launcher lives in `devtools/` of a checkout, which the installed
package does not ship."""

from __future__ import annotations

import argparse
from types import ModuleType

from worker.errors import ConfigError

HELP = ("Run a local Apache Kafka broker, or a cluster with --nodes 3, for development and "
        "tests (up, down, status, node).")


def _launcher() -> ModuleType | None:
    try:
        from devtools import local_broker
    except ImportError:
        return None
    return local_broker


def add_arguments(parser: argparse.ArgumentParser) -> None:
    launcher = _launcher()
    if launcher is not None:
        launcher.add_arguments(parser)
    else:  # take whatever was asked, so run() can say what to do instead
        parser.add_argument("ignored", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    launcher = _launcher()
    if launcher is None:
        raise ConfigError("the local broker launcher is a development tool that is not "
                          "installed with the package: run deploy/local/kafka from a checkout "
                          "of the repository.")
    code: int = launcher.run(args)
    return code
