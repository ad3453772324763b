"""The front door: Voucherify's webhook deliveries into Kafka (`activity-worker ingress`).

- `signature`: the `x-voucherify-signature` check (raw body or compact JSON, several secrets);
- `delivery`: what is read from a signed body (decodable? the customer key, the headers);
- `endpoint`: one request in, one answer out — 2xx only once the broker stored the record;
- `metrics`: the ingress's own Prometheus registry;
- `service`: the producer, the server and the shutdown put together.

The Kafka side is `worker.kafka.durable_producer` (confluent-kafka stays in `worker.kafka`);
the HTTP server is the worker's own bounded one (`worker.observability.http`).
"""
