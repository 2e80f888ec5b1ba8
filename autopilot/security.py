"""The HTTP surface's guards, as pure logic: API keys, rate limits, redaction.

* **API keys** (``AUTOPILOT_API_KEYS``): sent as ``Authorization: Bearer <key>`` or
  ``X-API-Key: <key>``. :meth:`ApiKeys.match` compares the SHA-256 digests of the
  presented key and *every* configured key with :func:`hmac.compare_digest`, so the
  time taken does not depend on how much of a key was right nor on which key
  matched. A key is identified elsewhere (rate-limit buckets, logs) only by
  :func:`fingerprint`, never by its value.
* **GitHub webhooks** cannot send a bearer token; with
  ``AUTOPILOT_GITHUB_WEBHOOK_SECRET`` set, a valid ``X-Hub-Signature-256`` (HMAC-SHA256
  of the body, docs.github.com/webhooks/using-webhooks/validating-webhook-deliveries)
  authenticates ``POST /ingest/deployment``.
* **Rate limits**: a token bucket per key (``AUTOPILOT_RATE_LIMIT_RPS`` tokens per
  second, at most ``AUTOPILOT_RATE_LIMIT_BURST``); an empty bucket answers 429 with
  ``Retry-After`` = seconds until one token is back (rounded up). Without API keys the
  bucket is per client address. Buckets live in the worker's memory (a limit per
  worker; they are not state worth a table: losing them on restart only refills
  them). Written here rather than taken from a library because the maintained
  Python limiters (``limits``) offer fixed/moving windows but no token bucket, and
  the aiohttp-specific ones are small unmaintained packages.
* **Redaction**: :class:`Redactor` is the project's one redactor,
  :class:`autopilot.redact.Redactor` (re-exported here): the worker's configured
  secrets and the secrets ``detect-secrets`` finds become ``[REDACTED:<kind>]`` in its
  log lines (a logging filter on the worker's handlers), in the LLM prompt and in
  Slack messages.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from autopilot.redact import Redactor

__all__ = [
    "ApiKeys",
    "RateLimiter",
    "Redactor",
    "TokenBucket",
    "credential_from_headers",
    "fingerprint",
    "verify_github_signature",
]


def fingerprint(key: str) -> str:
    """Short non-reversible id of a key (first 12 hex digits of its SHA-256)."""
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def credential_from_headers(headers: Mapping[str, str]) -> str | None:
    """The presented key: ``Authorization: Bearer …`` first, else ``X-API-Key``."""
    auth = headers.get("Authorization") or headers.get("authorization")
    if auth:
        scheme, _, value = auth.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    key = headers.get("X-API-Key") or headers.get("x-api-key")
    return key.strip() if key and key.strip() else None


class ApiKeys:
    """The configured keys, held as SHA-256 digests (the values are not kept)."""

    def __init__(self, keys: Iterable[str]) -> None:
        self._digests = [hashlib.sha256(k.encode()).digest() for k in keys if k]

    @property
    def enabled(self) -> bool:
        """True when at least one key is configured (authentication required)."""
        return bool(self._digests)

    def match(self, presented: str | None) -> str | None:
        """Fingerprint of the matching key, or ``None``; constant time over all keys."""
        if presented is None or not self._digests:
            return None
        digest = hashlib.sha256(presented.encode()).digest()
        found = False
        for known in self._digests:
            found |= hmac.compare_digest(digest, known)
        return fingerprint(presented) if found else None


def verify_github_signature(secret: str, body: bytes, header: str | None) -> bool:
    """True when ``header`` is ``sha256=<hex HMAC-SHA256 of body with secret>``."""
    if not secret or not header or not header.startswith("sha256="):
        return False
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), header.strip().encode())


@dataclass(frozen=True, slots=True)
class TokenBucket:
    """Token bucket state: ``tokens`` available at time ``at`` (monotonic seconds)."""

    tokens: float
    at: float

    def take(self, now: float, rate: float, burst: int) -> tuple[TokenBucket, float]:
        """Take one token. Returns ``(new_bucket, retry_after_s)``; 0.0 means allowed."""
        tokens = min(float(burst), self.tokens + max(0.0, now - self.at) * rate)
        if tokens >= 1.0:
            return TokenBucket(tokens - 1.0, now), 0.0
        return TokenBucket(tokens, now), (1.0 - tokens) / rate


class RateLimiter:
    """Token buckets per client id, at most ``max_clients`` (least recently used go)."""

    def __init__(self, rate: float, burst: int, max_clients: int = 10_000) -> None:
        self.rate = rate
        self.burst = burst
        self.max_clients = max_clients
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    @property
    def enabled(self) -> bool:
        """False when ``rate`` is 0 (no limit)."""
        return self.rate > 0.0

    def check(self, client: str, now: float) -> int:
        """0 when allowed, else the ``Retry-After`` seconds (≥ 1) to answer with 429."""
        if not self.enabled:
            return 0
        bucket = self._buckets.pop(client, None) or TokenBucket(float(self.burst), now)
        bucket, wait = bucket.take(now, self.rate, self.burst)
        self._buckets[client] = bucket
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        return 0 if wait == 0.0 else max(1, math.ceil(wait))
