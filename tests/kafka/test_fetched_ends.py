"""The last stable offset and high watermark per partition, read from librdkafka's statistics
(the only place a consumer's fetches expose the LSO): a recorded document, and the shapes that
must be left out (librdkafka's internal partition -1, offsets not known yet)."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

from worker.kafka.confluent_consumer import fetched_ends

RECORDED = (Path(__file__).parents[1] / "observability" / "data" / "librdkafka_stats.json")


def test_a_recorded_statistics_document() -> None:
    doc = json.loads(RECORDED.read_text())
    expected = {(topic, int(p)): (s["ls_offset"], s["hi_offset"])
                for topic, t in doc["topics"].items() for p, s in t["partitions"].items()
                if int(p) >= 0 and s["ls_offset"] >= 0 and s["hi_offset"] >= 0}
    assert expected  # the recording has partitions
    assert fetched_ends(RECORDED.read_text()) == expected


def test_an_open_transaction_and_what_is_left_out() -> None:
    doc = {"name": "c", "topics": {"t": {"partitions": {
        "0": {"ls_offset": 6, "hi_offset": 9, "app_offset": 6},   # held by a transaction
        "1": {"ls_offset": 4, "hi_offset": 4},
        "2": {"ls_offset": -1001, "hi_offset": -1001},            # not fetched yet
        "-1": {"ls_offset": 0, "hi_offset": 0}}}}}                # librdkafka's internal one
    assert fetched_ends(json.dumps(doc)) == {("t", 0): (6, 9), ("t", 1): (4, 4)}
    assert fetched_ends("{}") == {}
    with pytest.raises(msgspec.DecodeError):
        fetched_ends("not json")
