"""A read model of one row per event (message deliveries, redemptions): keyed by the event id,
so a redelivered event writes nothing twice, with an outcome, the event's creation time and one
index to aggregate by (the report counts the rows per group and outcome). The table, its index
and its insert are all written from one declaration, so the insert's columns and placeholders
cannot drift from the table's."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from worker.events import Event
from worker.processors.sql import Sql


@dataclass(frozen=True, slots=True)
class EventRows:
    table: str
    #: the columns between event_id and created_at, each "name TYPE[ NOT NULL]", in order
    columns: tuple[str, ...]
    #: the index's name and its columns
    index: str
    index_columns: tuple[str, ...]
    ddl: tuple[str, str] = field(init=False)
    insert_sql: str = field(init=False)

    def __post_init__(self) -> None:
        names = [c.split()[0] for c in self.columns]
        body = ",\n        ".join(["event_id TEXT PRIMARY KEY", *self.columns,
                                   "created_at TEXT NOT NULL"])
        ddl = (f"CREATE TABLE IF NOT EXISTS {self.table} (\n        {body})",
               f"CREATE INDEX IF NOT EXISTS {self.index}\n        ON {self.table} "
               f"({', '.join(self.index_columns)})")
        marks = ", ".join("?" * (len(names) + 2))
        insert = (f"INSERT INTO {self.table} (event_id, {', '.join(names)}, created_at) "
                  f"VALUES ({marks}) ON CONFLICT (event_id) DO NOTHING")
        object.__setattr__(self, "ddl", ddl)
        object.__setattr__(self, "insert_sql", insert)

    def setup(self, conn: Any) -> None:
        """Create the table and its index (a processor's `setup`)."""
        Sql(conn).run_all(self.ddl)

    def insert(self, sql: Sql, event: Event, *values: Any) -> None:
        """The event's row: `values` in the order of `columns`."""
        if len(values) != len(self.columns):
            raise TypeError(f"{self.table}: {len(self.columns)} values expected, "
                            f"got {len(values)}")
        sql.execute(self.insert_sql, (event.id, *values, event.created_at))
