"""The pure parts of the cluster suite's reading of __consumer_offsets (tests/cluster/scenario.py):
which partition holds a group's commits, and what counts as a commit going backwards."""

from __future__ import annotations

import pytest

from tests.cluster.scenario import CommitRecord, offsets_partition, went_back


# Expected values printed by Java 17: (h == Integer.MIN_VALUE ? 0 : Math.abs(h)) % 50 with
# h = group.hashCode(), Kafka's Utils.abs rule. "polygenelubricants" hashes to MIN_VALUE, and
# "test-group" / "zzzz…" differ between abs() and masking the sign bit.
@pytest.mark.parametrize(("group", "partition"), [
    ("brokers-abc", 47), ("test-group", 12), ("é-grüppe", 46),
    ("ledger-postgres-1a2b3c4d", 10), ("polygenelubricants", 0), ("zzzzzzzzzzzzzzzz", 34),
])
def test_the_offsets_partition_is_kafkas(group: str, partition: int) -> None:
    assert offsets_partition(group) == partition


def test_a_commit_lower_than_an_earlier_one_of_its_partition_went_back() -> None:
    log = [CommitRecord(0, 100, 1, 0), CommitRecord(1, 50, 2, 1), CommitRecord(0, 100, 3, 2),
           CommitRecord(0, 90, 4, 3), CommitRecord(1, 60, 5, 4), CommitRecord(0, 120, 6, 5)]
    assert went_back(log) == [(log[0], log[3])]
