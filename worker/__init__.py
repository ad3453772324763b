"""activity-worker: a Kafka consumer worker for Voucherify customer activity events."""

__version__ = "0.1.0"
