"""The names of the worker's Prometheus metrics as exposed (prefix `activity_worker_`), their
label values known up front, and their buckets. Declared with their help text in
worker.observability.metrics; docs/observability.md documents each one."""

from __future__ import annotations

from worker.vocabulary import CircuitState, ErrorClass, Outcome

PREFIX = "activity_worker_"

# Names as exposed (counters get `_total` added by prometheus_client; histograms get
# `_bucket`/`_sum`/`_count`). docs/observability.md documents each one.
EVENTS_CONSUMED = PREFIX + "events_consumed"
PROCESSOR_OUTCOMES = PREFIX + "processor_outcomes"
UNMATCHED_EVENTS = PREFIX + "unmatched_events"
DEAD_LETTERS = PREFIX + "dead_letters"
PROCESSING_SECONDS = PREFIX + "processing_seconds"
END_TO_END_LATENCY_SECONDS = PREFIX + "end_to_end_latency_seconds"
BATCH_SIZE = PREFIX + "batch_size"
CONSUMER_LAG_OFFSETS = PREFIX + "consumer_lag_offsets"
CONSUMER_LAG_SECONDS = PREFIX + "consumer_lag_seconds"
OPEN_TRANSACTION_SECONDS = PREFIX + "open_transaction_seconds"
COMMITTED_OFFSET = PREFIX + "committed_offset"
COMMIT_AGE_SECONDS = PREFIX + "commit_age_seconds"
ASSIGNED_PARTITIONS = PREFIX + "assigned_partitions"
REBALANCES = PREFIX + "rebalances"
LEDGER_OPERATION_SECONDS = PREFIX + "ledger_operation_seconds"
LEDGER_OPERATION_ERRORS = PREFIX + "ledger_operation_errors"
LEDGER_UP = PREFIX + "ledger_up"
GUARDRAIL_TRIPS = PREFIX + "guardrail_trips"
DLQ_WRITE_FAILURES = PREFIX + "dlq_write_failures"
DLQ_WRITE_FAILING = PREFIX + "dlq_write_failing"
DLQ_LETTERS_SHRUNK = PREFIX + "dlq_letters_shrunk"
PROCESSOR_CALL_AGE_SECONDS = PREFIX + "processor_call_age_seconds"
EFFECTS_IN_FLIGHT = PREFIX + "effects_in_flight"
EFFECTS_QUEUED = PREFIX + "effects_queued"
EFFECT_OLDEST_AGE_SECONDS = PREFIX + "effect_oldest_age_seconds"
EFFECTS_MAX_IN_FLIGHT = PREFIX + "effects_max_in_flight"
EFFECTS_WAITING = PREFIX + "effects_waiting"
EFFECTS_KEYS_ACTIVE = PREFIX + "effects_keys_active"
EFFECTS_SLOTS_FREE = PREFIX + "effects_slots_free"
DESTINATION_STATE = PREFIX + "destination_state"
DESTINATION_DOWN_SECONDS = PREFIX + "destination_down_seconds"
DESTINATION_CONCURRENCY_LIMIT = PREFIX + "destination_concurrency_limit"
DESTINATION_RATE_LIMIT = PREFIX + "destination_rate_limit"
DESTINATION_CALLS_REFUSED = PREFIX + "destination_calls_refused"
DESTINATION_OPENED = PREFIX + "destination_opened"
DESTINATION_EVENTS_PARKED = PREFIX + "destination_events_parked"
DESTINATION_PARTITIONS_HELD = PREFIX + "destination_partitions_held"
LIBRDKAFKA_REPLYQ = PREFIX + "librdkafka_replyq"
LIBRDKAFKA_MSG_CNT = PREFIX + "librdkafka_msg_cnt"
LIBRDKAFKA_BROKER_UP = PREFIX + "librdkafka_broker_up"
LIBRDKAFKA_BROKER_RTT_AVG_SECONDS = PREFIX + "librdkafka_broker_rtt_avg_seconds"
LIBRDKAFKA_BROKER_RTT_P99_SECONDS = PREFIX + "librdkafka_broker_rtt_p99_seconds"
LIBRDKAFKA_CONSUMER_LAG = PREFIX + "librdkafka_consumer_lag"
LIBRDKAFKA_FETCHQ_MESSAGES = PREFIX + "librdkafka_fetchq_messages"
LIBRDKAFKA_REBALANCES = PREFIX + "librdkafka_rebalances"
LIBRDKAFKA_REBALANCE_AGE_SECONDS = PREFIX + "librdkafka_rebalance_age_seconds"
LIBRDKAFKA_ASSIGNMENT_SIZE = PREFIX + "librdkafka_assignment_size"
LIBRDKAFKA_STATS_ERRORS = PREFIX + "librdkafka_stats_errors"

METRIC_NAMES: tuple[str, ...] = tuple(
    v for k, v in dict(globals()).items() if k.isupper() and isinstance(v, str)
    and v.startswith(PREFIX) and v != PREFIX
)

OUTCOMES = tuple(Outcome)
# Error classes of worker.errors / the pipeline, exported at 0 from the start so dashboards and
# rate() see a series before the first dead letter (other reasons appear when they happen).
KNOWN_DLQ_REASONS = tuple(ErrorClass)
REBALANCE_KINDS = ("assigned", "revoked", "lost")
CIRCUIT_STATES = tuple(CircuitState)

PROCESSING_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                      1.0, 2.5, 5.0, 10.0)
LATENCY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
                   900.0, 3600.0)
BATCH_SIZE_BUCKETS = (1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0)
LEDGER_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

# Event types are an open set written by producers: cap the label values so a feed of junk
# types cannot blow up the number of series. Types past the cap are counted as "other".
MAX_UNMATCHED_TYPES = 200
