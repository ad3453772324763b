"""The HTTP forwarder's call: POSTs an event, as the JSON it arrived as, to an endpoint. The
built-in processor (worker.processors.builtin.http_forwarder) registers it from these settings,
read from the environment:

  WORKER_FORWARD_URL              the endpoint (required), e.g. https://hooks.example.com/voucherify
  WORKER_FORWARD_PATTERNS         event types to forward, comma-separated (default customer.**)
  WORKER_FORWARD_SECRET           HMAC-SHA256 key of the signature header (default: no header)
  WORKER_FORWARD_TIMEOUT          seconds per request, connect to last byte (default 10)
  WORKER_FORWARD_MAX_CONCURRENCY  requests in flight at once, at most (default 64; also under
                                  --max-in-flight and the endpoint's adaptive limit)
  WORKER_FORWARD_ATTEMPTS         attempts per event on other failures (default 5); an
                                  unavailable endpoint spends none of them

Each request carries `Content-Type: application/json`, `Idempotency-Key: <the ledger key>` (a
redelivery after a crash repeats the key, so the receiver can drop the repeat),
`X-Activity-Worker-Event-Type`, and, with a secret, `X-Activity-Worker-Signature:
sha256=<hex HMAC of the body>`. Outcomes: 2xx done; a timeout, a connection error, 5xx, 408 or
429 means the endpoint is unavailable (RetryLater): the event waits on the endpoint's circuit
breaker (worker.processing.circuit), honouring `Retry-After` (in seconds, up to 300 s), and is never
dead-lettered for it unless --max-outage is set; any other status means the event is bad: it
is dead-lettered at once with the status and the start of the answer in the reason.

aiohttp is the client: it is asyncio-native like the worker's concurrent effects, keeps
connections alive per host, and costs less CPU per request than httpx (which matters at
thousands of requests per second on a core the consumer shares).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

import aiohttp

from worker import tracing
from worker.errors import ConfigError, NonRetriableError, RetryLater
from worker.events import Event
from worker.processors.api import Context

ENV_URL = "WORKER_FORWARD_URL"
ENV_PATTERNS = "WORKER_FORWARD_PATTERNS"
ENV_SECRET = "WORKER_FORWARD_SECRET"
ENV_TIMEOUT = "WORKER_FORWARD_TIMEOUT"
ENV_MAX_CONCURRENCY = "WORKER_FORWARD_MAX_CONCURRENCY"
ENV_ATTEMPTS = "WORKER_FORWARD_ATTEMPTS"
#: Requests in flight to the endpoint at once, by default: an HTTP client's connection pool
#: (aiohttp's is 100 in all), not the worker's --max-in-flight (256): an endpoint that answers
#: fast needs few, and when it goes down every request in flight fails at once (measured: 244
#: calls in its first 2 s at 256). A slow endpoint that takes more: raise it.
DEFAULT_MAX_CONCURRENCY = 64
SIGNATURE_HEADER = "X-Activity-Worker-Signature"
#: Statuses below 500 that say the endpoint cannot take the request now (Request Timeout, Too
#: Many Requests), not that the event is bad: the event waits, as for a 5xx.
UNAVAILABLE_STATUSES = frozenset({408, 429})
EVENT_TYPE_HEADER = "X-Activity-Worker-Event-Type"


class ForwardSettings:
    def __init__(self, environ: Mapping[str, str]) -> None:
        self.url = environ.get(ENV_URL, "").strip()
        if not self.url.startswith(("http://", "https://")):
            raise ConfigError(f"the HTTP forwarder needs {ENV_URL}=http(s)://host/path (got "
                              f"{self.url!r}); set it, or drop "
                              "worker.processors.builtin.http_forwarder from --processors.")
        self.patterns = tuple(p.strip() for p in environ.get(ENV_PATTERNS, "customer.**")
                              .split(",") if p.strip())
        self.secret = environ.get(ENV_SECRET, "").encode()
        self.timeout = _number(environ, ENV_TIMEOUT, 10.0)
        self.max_concurrency = int(_number(environ, ENV_MAX_CONCURRENCY,
                                           DEFAULT_MAX_CONCURRENCY))
        self.attempts = int(_number(environ, ENV_ATTEMPTS, 5))


def _number(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if value <= 0:
        raise ConfigError(f"{name}={raw!r} must be above 0")
    return value


def signature(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def retry_after(value: str | None) -> float:
    """Seconds from a Retry-After header (delta-seconds; an HTTP date counts as 1 s)."""
    if not value:
        return 0.0
    try:
        return max(0.0, float(value))
    except ValueError:
        return 1.0


class Forwarder:
    """The call; one aiohttp session per event loop, made on first use."""

    def __init__(self, settings: ForwardSettings) -> None:
        self.settings = settings
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.settings.timeout),
                connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300))
        return self._session

    async def aclose(self) -> None:
        """Close the client session (the worker calls it on the effects' loop at shutdown)."""
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    async def __call__(self, event: Event, ctx: Context) -> None:
        s = self.settings
        body = ctx.value
        headers = {"Content-Type": "application/json", "Idempotency-Key": ctx.key,
                   EVENT_TYPE_HEADER: event.type}
        if s.secret:
            headers[SIGNATURE_HEADER] = signature(s.secret, body)
        if tracing.active():
            # the processor's span (or, not sampled, the record's trace) goes on at the receiver
            tracing.inject_http(headers, ctx.headers)
        try:
            async with self._client().post(s.url, data=body, headers=headers) as answer:
                status = answer.status
                if 200 <= status < 300:
                    return
                text = (await answer.text(errors="replace"))[:200]
                if status in UNAVAILABLE_STATUSES or status >= 500:
                    raise RetryLater(f"HTTP {status} from {s.url}: {text}",
                                     retry_after(answer.headers.get("Retry-After")))
                raise NonRetriableError(f"HTTP {status} from {s.url}: {text}")
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise RetryLater(f"POST {s.url} failed: {type(exc).__name__}: {exc}", 0.0) from exc
