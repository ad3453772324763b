"""The offset tracker without a broker: what may be stored, committed, re-read and forgotten.
The same rules on the real broker: tests/engine/test_engine_kafka.py,
tests/integration/test_lost_partitions.py and the kill -9 test."""

from __future__ import annotations

from worker.engine.offsets import Confirmed, OffsetTracker, Policy

A, B = ("t", 0), ("t", 1)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_only_finished_batches_of_assigned_partitions_are_stored() -> None:
    t = OffsetTracker(Policy(commit_every=10, commit_interval=5))
    assert t.finished({A: 9, B: 4}, {A: 1, B: 2}, 15, assigned={A}) == [(A, 10)]
    assert t.stored == {A: 10} and t.uncommitted == 15
    assert t.position(A, 0) == 10 and t.position(B, 3) == 3
    assert t.behind(A, 11) and not t.behind(A, 10) and not t.behind(B, 99)


def test_a_cancelled_batch_stores_nothing_and_is_re_read_once() -> None:
    t = OffsetTracker(Policy(commit_every=10, commit_interval=5))
    assert t.cancelled({A: 20, B: 7}, assigned={A}) == {A}
    assert t.stored == {} and t.uncommitted == 0
    assert t.seeks() == {A: 20}
    assert t.seeks() == {}


def test_the_commit_policy_counts_events_and_time() -> None:
    clock = Clock()
    t = OffsetTracker(Policy(commit_every=10, commit_interval=5), clock=clock)
    assert not t.commit_due()  # nothing finished
    t.finished({A: 3}, {A: 0}, 4, assigned={A})
    assert not t.commit_due()
    clock.now += 5
    assert t.commit_due()
    t.committing_all()
    assert not t.commit_due() and t.uncommitted == 0
    t.finished({A: 20}, {A: 0}, 10, assigned={A})
    assert t.commit_due()  # commit_every reached, whatever the time


def test_on_revoke_only_what_is_stored_and_not_yet_committed_is_sent() -> None:
    t = OffsetTracker(Policy(commit_every=10, commit_interval=5))
    t.finished({A: 9, B: 4}, {A: 0, B: 0}, 15, assigned={A, B})
    assert t.confirmed(A, 10) is Confirmed.ADVANCED and t.confirmed(A, 10) is Confirmed.SAME
    assert t.to_commit([A, B]) == [(B, 5)]
    t.forget([A, B])
    assert t.stored == {} and t.committed == {} and t.to_commit([A, B]) == []


def test_an_older_commit_confirmed_after_a_newer_one_is_committed_over_again() -> None:
    """librdkafka retries a commit that met a coordinator change; the retry can land after a
    later commit, and the broker then holds the older offset (seen in the cluster soak run: a
    partition's committed offset went back by 1,000). The newer one is sent again."""
    clock = Clock()
    t = OffsetTracker(Policy(commit_every=1000, commit_interval=0.5), clock=clock)
    t.finished({A: 20705}, {A: 0}, 500, assigned={A})
    t.committing_all()
    t.finished({A: 21705}, {A: 0}, 500, assigned={A})
    t.committing_all()
    assert t.confirmed(A, 21706) is Confirmed.ADVANCED
    assert not t.commit_due()
    assert t.confirmed(A, 20706) is Confirmed.WENT_BACK  # the retried older commit landed
    assert t.committed[A] == 20706  # what the broker holds now
    clock.now += 0.5
    assert t.commit_due()  # with no new event: the stored 21706 goes out again
    t.committing_all()
    assert t.confirmed(A, 21706) is Confirmed.ADVANCED and not t.commit_due()


def test_skipped_offsets_are_stepped_over_only_once_every_handed_record_finished() -> None:
    t = OffsetTracker(Policy(commit_every=10, commit_interval=5))
    # nothing handed over yet: whatever the client stepped over (markers only) may be stored
    assert t.settled([A, B]) == [A, B]
    assert t.step_over({A: 1, B: -1001}) == [(A, 1)]  # a marker at 0; B's position unknown
    assert t.uncommitted == 1  # the next commit tick sends it
    t.handed_over({A: 4, B: 2})  # records 1..4 of A and 0..2 of B go to the handler
    assert t.settled([A, B]) == []  # in flight: the client's position is past them
    t.finished({A: 4}, {A: 0}, 4, assigned={A, B})
    assert t.settled([A, B]) == [A]
    assert t.step_over({A: 7}) == [(A, 7)]  # 5 and 6: an aborted record and its marker
    assert t.step_over({A: 7}) == [] and t.step_over({A: 6}) == []  # never back, never twice
    assert t.stored[A] == 7


def test_a_rewound_partition_waits_for_a_record_before_stepping_over() -> None:
    t = OffsetTracker(Policy(commit_every=10, commit_interval=5))
    t.handed_over({A: 9})
    t.cancelled({A: 5}, assigned={A})
    assert t.settled([A]) == []  # a rewind is due
    assert t.seeks() == {A: 5}
    assert t.settled([A]) == []  # sought: the client's position is stale until a record comes
    t.handed_over({A: 9})
    t.finished({A: 9}, {A: 0}, 5, assigned={A})
    assert t.settled([A]) == [A]
    t.forget([A])
    assert t.handed == {} and t.settled([A]) == [A]


def test_a_parked_event_holds_its_partition_until_a_batch_reads_it_again() -> None:
    t = OffsetTracker(Policy(commit_every=10, commit_interval=5), read_ahead=100)
    both = {A, B}
    # a batch of A 0..9 with a parked event at 4 (B flows)
    assert t.finished({A: 9, B: 9}, {A: 0, B: 0}, 20, both, {A: 0, B: 0}, {A: 4}) == [
        (A, 4), (B, 10)]
    # later batches of A finish, its offset stays at the parked event; an earlier park wins
    assert t.finished({A: 19}, {A: 0}, 10, both, {A: 10}) == [(A, 4)]
    assert t.finished({A: 29}, {A: 0}, 10, both, {A: 20}, {A: 25}) == [(A, 4)]
    assert t.held == {A: 4}
    # the step-over never moves a held partition
    t.handed_over({A: 29, B: 9})
    assert t.settled(both) == [B]
    # read again: sought back to 4 once (asking twice does nothing)
    assert t.reread([A, B], both) == {A: 4} and t.reread([A], both) == {}
    assert t.seeks() == {A: 4}
    # the batch read again from 4 parks at 12: held there now (4..11 are done)
    assert t.finished({A: 14}, {A: 0}, 11, both, {A: 4}, {A: 12}) == [(A, 12)]
    assert t.held == {A: 12}
    assert t.reread([A], both) == {A: 12} and t.seeks() == {A: 12}
    # read again with nothing parked: the hold ends
    assert t.finished({A: 29}, {A: 0}, 18, both, {A: 12}) == [(A, 30)]
    assert t.held == {} and t.finished({A: 39}, {A: 0}, 10, both, {A: 30}) == [(A, 40)]


def test_a_held_partition_is_read_ahead_at_most_its_bound_and_rewinds_never_pass_it() -> None:
    t = OffsetTracker(Policy(commit_every=10, commit_interval=5), read_ahead=50)
    t.handed_over({A: 9})
    t.finished({A: 9}, {A: 0}, 10, {A}, {A: 0}, {A: 5})
    t.handed_over({A: 54})  # the next to read, 55, is 50 past the parked event
    assert t.read_ahead_over() == []
    t.handed_over({A: 55})
    assert t.read_ahead_over() == [A]
    # a cancelled batch behind the hold is read again from the parked event, not its first
    assert t.cancelled({A: 40}, {A}) == {A} and t.seeks() == {A: 5}
    assert t.read_ahead_over() == []  # sought back
    # a revoke commits no more than the parked event; a forgotten partition holds nothing
    assert t.to_commit([A]) == [(A, 5)]
    t.forget([A])
    assert t.held == {} and t.reread([A], {A}) == {}
