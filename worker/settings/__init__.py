"""Typed settings for `activity-worker run`, from flags and environment variables.

Every run setting is declared once, as a field of `Settings` in `worker/settings/table.py`; the
flags, the WORKER_* env vars, the conversion and the README's configuration table
(`python -m worker.settings --markdown`) are all made from its fields.

Every flag `--some-name` can also be set by the env var `WORKER_SOME_NAME`; a flag given on the
command line wins over the env var, which wins over the default. Repeatable flags take a
comma-separated env value (`WORKER_TOPIC=a,b`); `WORKER_KAFKA_CONFIG` takes `key=value` pairs
separated by newlines or `;`.

Any librdkafka property can be passed with `--kafka-config key=value` or an env var
`KAFKA_<PROPERTY>` (`KAFKA_SASL_PASSWORD` → `sasl.password`); `--kafka-config` wins over
`KAFKA_*`. `KAFKA_BOOTSTRAP_SERVERS` is used when `--bootstrap-servers` is not given.
"""

from __future__ import annotations

from worker.settings.resolve import add_arguments, add_client_arguments, client_config, from_args
from worker.settings.table import (
    DEFAULT_BOOTSTRAP,
    DEFAULT_GROUP,
    DEFAULT_TOPIC,
    OPTIONS,
    Kind,
    Option,
    Settings,
    markdown_table,
    setting,
)

__all__ = ["DEFAULT_BOOTSTRAP", "DEFAULT_GROUP", "DEFAULT_TOPIC", "OPTIONS", "Kind", "Option",
           "Settings", "add_arguments", "add_client_arguments", "client_config", "from_args",
           "markdown_table", "setting"]
