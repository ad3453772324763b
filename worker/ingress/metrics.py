"""The ingress's Prometheus metrics (a registry of its own, served on its /metrics): requests
by outcome, the time the broker took to store a delivery, bytes received, requests in flight,
readiness. Every outcome's series exists from the start, at 0."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from worker.ingress.signature import UNSIGNED, Signed
from worker.observability.metric_names import PREFIX
from worker.vocabulary import IngressOutcome

REQUESTS = PREFIX + "ingress_requests"
STORE_SECONDS = PREFIX + "ingress_store_seconds"
BODY_BYTES = PREFIX + "ingress_body_bytes"
IN_FLIGHT = PREFIX + "ingress_in_flight"
READY = PREFIX + "ingress_ready"
SIGNATURES = PREFIX + "ingress_signatures"

STORE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class IngressMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(REQUESTS, "Requests to the webhook endpoint, by what they were "
                                "answered with.", ["outcome"], registry=r)
        self.outcome = {o: self.requests.labels(o) for o in IngressOutcome}
        self.store_seconds = Histogram(STORE_SECONDS, "From receiving a delivery to the "
                                       "broker's acknowledgement of its record (acks=all).",
                                       buckets=STORE_BUCKETS, registry=r)
        self.body_bytes = Counter(BODY_BYTES, "Bytes of delivery bodies received.", registry=r)
        self.in_flight = Gauge(IN_FLIGHT, "Deliveries waiting for the broker's acknowledgement.",
                               registry=r)
        self.ready = Gauge(READY, "1 while a broker answers and the topic is there.",
                           registry=r)
        self.signatures = Counter(SIGNATURES, "Signature checks of POSTed deliveries, by how "
                                  "they matched: raw, compact, unsigned (loopback dev mode), "
                                  "missing, malformed, wrong.", ["match"], registry=r)
        self.signed = {m: self.signatures.labels(m) for m in (*Signed, UNSIGNED)}
