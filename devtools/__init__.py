"""Development tooling, not part of the installed product (the wheel ships `worker/` only): the
local Kafka broker launcher (`deploy/local/kafka`, `activity-worker kafka` from a checkout) and
the realistic event generator (`activity-worker generate`, the demo, tests and benchmarks)."""
