"""Pure guards: API keys, token bucket, redaction, GitHub signatures (OpenAPI: test_web)."""

from __future__ import annotations

import hashlib
import hmac

from autopilot.security import (
    ApiKeys,
    RateLimiter,
    Redactor,
    TokenBucket,
    credential_from_headers,
    fingerprint,
    verify_github_signature,
)

# --- keys, limits, redaction --------------------------------------------------------


def test_api_keys_match_in_constant_time_and_are_identified_by_fingerprint() -> None:
    keys = ApiKeys(["alpha-key-1", "beta-key-2"])
    assert keys.enabled
    assert keys.match("beta-key-2") == fingerprint("beta-key-2")
    assert "beta-key-2" not in fingerprint("beta-key-2")
    assert keys.match("beta-key-3") is None
    assert keys.match(None) is None
    assert not ApiKeys([]).enabled


def test_credentials_come_from_bearer_or_x_api_key() -> None:
    assert credential_from_headers({"Authorization": "Bearer abc"}) == "abc"
    assert credential_from_headers({"authorization": "bearer  abc "}) == "abc"
    assert credential_from_headers({"X-API-Key": "k"}) == "k"
    assert credential_from_headers({"Authorization": "Basic abc"}) is None
    assert credential_from_headers({}) is None


def test_token_bucket_allows_a_burst_then_asks_to_wait() -> None:
    limiter = RateLimiter(rate=1.0, burst=3)
    assert [limiter.check("k", 0.0) for _ in range(4)] == [0, 0, 0, 1]
    assert limiter.check("other", 0.0) == 0  # its own bucket
    assert limiter.check("k", 1.0) == 0  # one token back after a second
    assert RateLimiter(rate=0.0, burst=1).check("k", 0.0) == 0  # 0 = off


def test_retry_after_rounds_up_the_wait_for_one_token() -> None:
    bucket, wait = TokenBucket(0.0, 0.0).take(0.0, rate=0.2, burst=5)
    assert wait == 5.0
    assert RateLimiter(rate=0.2, burst=1).check("k", 0.0) == 0
    limiter = RateLimiter(rate=0.4, burst=1)
    limiter.check("k", 0.0)
    assert limiter.check("k", 0.0) == 3  # 2.5 s, rounded up


def test_least_recently_used_buckets_are_dropped_beyond_the_cap() -> None:
    limiter = RateLimiter(rate=1.0, burst=1, max_clients=2)
    for client in ("a", "b", "c"):
        limiter.check(client, 0.0)
    assert limiter.check("a", 0.0) == 0  # "a" was forgotten: a full bucket again


def test_redactor_replaces_every_configured_secret() -> None:
    redact = Redactor(["https://hooks.slack.com/services/T/B/xyz", "sk-123456", "ab"])
    text = "posting to https://hooks.slack.com/services/T/B/xyz with sk-123456 ab"
    assert redact(text) == (
        "posting to [REDACTED:configured] with [REDACTED:configured] ab"
    )


def test_security_redactor_is_the_projects_one_redactor() -> None:
    from autopilot import redact

    assert Redactor is redact.Redactor


def test_github_signatures_are_verified() -> None:
    body = b'{"action": "created"}'
    good = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert verify_github_signature("s3cret", body, good)
    assert not verify_github_signature("s3cret", body + b" ", good)
    assert not verify_github_signature("other", body, good)
    assert not verify_github_signature("s3cret", body, None)
