"""The one redactor (autopilot.redact): secrets and, optionally, personal data.

Every secret below is shaped like the real thing (the formats detect-secrets and the
RFCs describe) but is a published example or made up.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest

from autopilot import blockkit, redact
from autopilot.analysis import build_messages, fallback_analysis
from autopilot.models import Alert, Analysis, Incident, RootCause
from autopilot.redact import KINDS, Redactor
from tests.factories import T0, incident, log_entry

AWS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"  # AWS documentation's example
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"  # AWS documentation's example
SLACK_BOT = "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"
SLACK_HOOK = "https://hooks.slack.com/services/T01ABCDEF/B01ABCDEF/abcdefghijklmnopqrstuvwx"
JWT = (  # jwt.io's example token
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4g"
    "RG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
GITHUB = "ghp_" + "A1b2C3d4E5f6G7h8I9j0" + "K1l2M3n4O5p6Q7r8"
PRIVATE_KEY = (
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6"
    "ffAt0gun\nVTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK\n"
    "-----END RSA PRIVATE KEY-----"
)

# (text, what must be gone, kind counted)
SECRETS = [
    (f"boto: using key {AWS_KEY_ID} for s3", AWS_KEY_ID, "aws_access_key"),
    (f'aws_secret_access_key = "{AWS_SECRET}"', AWS_SECRET, "aws_access_key"),
    (f"slack api call with {SLACK_BOT} failed", SLACK_BOT, "slack_token"),
    (f"notify {SLACK_HOOK} -> 500", "abcdefghijklmnopqrstuvwx", "slack_token"),
    (f"token={JWT} expired", "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c", "json_web_token"),
    ("GET /api Authorization: Bearer 9f86d081884c7d659a2feaa0c55ad015 401",
     "9f86d081884c7d659a2feaa0c55ad015", "authorization"),
    ("upstream sent Authorization: Basic YWxhZGRpbjpvcGVuc2VzYW1l", "YWxhZGRpbjpvcGVuc2VzYW1l",
     "authorization"),
    ("connect postgres://orders:Tr0ub4dor&3@db.internal:5432/orders refused",
     "Tr0ub4dor&3", "basic_auth_credentials"),
    ("login failed password=hunter2 user=bob", "hunter2", "secret_keyword"),
    ('{"user": "bob", "password": "correct horse battery staple"}',
     "correct horse battery staple", "secret_keyword"),
    ("config: api_key: 7c4a8d09ca3762af61e59520943dc26494f8941b", "7c4a8d09ca3762af",
     "secret_keyword"),
    (f"loaded key {PRIVATE_KEY} from env", "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0t",
     "private_key"),
    ("key -----BEGIN OPENSSH PRIVATE KEY----- b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAE (cut off",
     "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAE", "private_key"),
    (f"git clone failed: {GITHUB}", GITHUB, "github_token"),
]

# Ordinary log text that must come through unchanged.
NOT_SECRETS = [
    "timeout acquiring connection from pool after 30000 ms",
    "password reset requested for user 42",
    "Bearer authentication failed for user alice",
    "basic auth disabled in this environment",
    "trace 4bf92f3577b34da6a3ce929d0e0e4736 span 00f067aa0ba902b7",
    "deployed checkout v2.4.1 at 12:34:56 (build 8a3f2c1)",
    "std::vector<int> out of range in Foo::bar",
    "GET /api/v1/orders?page=2&limit=50 200 12ms",
    "user bob@example.com from 203.0.113.7",  # PII is off by default
]


@pytest.mark.parametrize(("text", "secret", "kind"), SECRETS)
def test_each_kind_of_secret_is_redacted_and_counted(text: str, secret: str, kind: str) -> None:
    clean, counts = Redactor().scan(text)
    assert secret not in clean
    assert f"[REDACTED:{kind}]" in clean
    assert counts[kind] >= 1
    assert kind in KINDS


@pytest.mark.parametrize("text", NOT_SECRETS)
def test_ordinary_log_text_is_left_alone(text: str) -> None:
    assert Redactor().scan(text) == (text, Counter())


def test_only_the_secret_part_goes_so_the_line_stays_readable() -> None:
    clean = Redactor()("connect postgres://orders:s3cr3t-pw@db.internal:5432/orders refused")
    assert clean == ("connect postgres://orders:[REDACTED:basic_auth_credentials]"
                     "@db.internal:5432/orders refused")
    assert Redactor()("login failed password=hunter2 user=bob") == (
        "login failed password=[REDACTED:secret_keyword] user=bob"
    )
    assert Redactor()(f"Authorization: Bearer {JWT}") == (
        "Authorization: Bearer [REDACTED:json_web_token]"  # one finding, not two
    )


def test_pii_setting_redacts_emails_and_ip_addresses() -> None:
    text = "user bob@example.com from 203.0.113.7 and fe80::1, proxy 10.0.0.1:8080"
    clean, counts = Redactor(pii=True).scan(text)
    assert clean == ("user [REDACTED:email] from [REDACTED:ip_address] and "
                     "[REDACTED:ip_address], proxy [REDACTED:ip_address]:8080")
    assert counts == Counter({"ip_address": 3, "email": 1})
    # a password before an @ is a secret, not an e-mail; the host stays
    assert Redactor(pii=True)("redis://:p4ssw0rd-x@cache.internal:6379") == (
        "redis://:[REDACTED:basic_auth_credentials]@cache.internal:6379"
    )
    assert Redactor(pii=True)("db postgres://app:pw123456@10.1.2.3/db") == (
        "db postgres://app:[REDACTED:basic_auth_credentials]@[REDACTED:ip_address]/db"
    )
    # the worker's own log lines keep addresses
    assert Redactor(pii=True).redact("listening on 10.0.0.1", pii=False) == (
        "listening on 10.0.0.1"
    )


def test_configured_secrets_of_any_shape_are_redacted() -> None:
    r = Redactor(["my-very-own-api-key", "abc"])  # 3 characters: too short to redact
    assert r("client sent my-very-own-api-key, abc") == (
        "client sent [REDACTED:configured], abc"
    )


def test_each_distinct_text_is_counted_once() -> None:
    seen: list[tuple[str, int]] = []
    r = Redactor(on_redact=lambda kind, n: seen.append((kind, n)))
    line = f"key {AWS_KEY_ID} and password=hunter2"
    for _ in range(5):  # the notifier renders the same message again and again
        assert AWS_KEY_ID not in r(line)
    assert sorted(seen) == [("aws_access_key", 1), ("secret_keyword", 1)]
    r("another password=hunter3")
    assert seen[-1] == ("secret_keyword", 1)


def test_a_broken_counter_hook_does_not_leak_the_text() -> None:
    def broken(kind: str, n: int) -> None:
        raise RuntimeError("metrics down")

    assert AWS_KEY_ID not in Redactor(on_redact=broken)(f"key {AWS_KEY_ID}")


# --- where it is applied ------------------------------------------------------------------

def _incident(messages: list[str]) -> Incident:
    """An incident whose only evidence is ``messages``, logged a second apart."""
    return incident(
        trigger_reason="error rate spike", anomalies=[],
        errors=[log_entry(m, at=T0 + timedelta(seconds=i)) for i, m in enumerate(messages)],
    )


LEAKY = [
    f"db connect failed: postgres://orders:Tr0ub4dor3x@db:5432 key={AWS_KEY_ID}",
    f"slack notify failed with {SLACK_BOT}",
    f"loaded {PRIVATE_KEY}",
]
LEAKED = [AWS_KEY_ID, "Tr0ub4dor3x", SLACK_BOT, "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0t"]


def test_the_llm_prompt_carries_no_secret_from_log_lines() -> None:
    messages = build_messages(_incident(LEAKY))
    prompt = "\n".join(m["content"] for m in messages)
    for secret in LEAKED:
        assert secret not in prompt
    assert "[REDACTED:basic_auth_credentials]" in prompt
    assert "db connect failed" in prompt  # the evidence itself stays


def test_slack_and_console_renderings_carry_no_secret_from_log_lines() -> None:
    incident = _incident(LEAKY)
    analysis = fallback_analysis(incident)
    alert = Alert(incident=incident, analysis=analysis)
    rendered = [
        str(blockkit.render_incident(alert, analysis_pending=True)),
        str(blockkit.render_alert(alert)),
        blockkit.render_console(alert),
    ]
    for text in rendered:
        for secret in LEAKED:
            assert secret not in text
    assert "[REDACTED:" in rendered[0]


def test_the_rule_based_analysis_quotes_log_lines_redacted() -> None:
    incident = _incident([f"connection pool exhausted for postgres://app:Pa55w0rd9@db/x "
                          f"token {SLACK_BOT}"] * 3)
    analysis: Analysis = fallback_analysis(incident)
    text = analysis.model_dump_json()
    assert "Pa55w0rd9" not in text and SLACK_BOT not in text
    assert isinstance(analysis.root_cause, RootCause)


def test_configure_sets_the_process_wide_redactor() -> None:
    before = redact.redactor()
    try:
        counted: list[str] = []
        redact.configure(["s3cret-value-123"], pii=True,
                         on_redact=lambda kind, n: counted.append(kind))
        assert redact.redact("x s3cret-value-123 bob@example.com") == (
            "x [REDACTED:configured] [REDACTED:email]"
        )
        assert sorted(counted) == ["configured", "email"]
    finally:
        redact._current[0] = before


@pytest.mark.parametrize("module", ["autopilot.redact", "autopilot.breaker"])
def test_new_core_modules_import_no_stream_or_network_library(module: str) -> None:
    from tests.unit.test_purity import FORBIDDEN, imported_roots, source_path

    assert not imported_roots(source_path(module)) & FORBIDDEN
