"""Integration tests of autopilot.integrations against real servers.

Ollama and Slack are stand-in HTTP servers speaking the real APIs (tests/standins.py);
Redis is a real ``redis-server`` (a missing binary fails the run, it never skips).
Each test runs its coroutine with ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from autopilot.analysis import analysis_json_schema
from autopilot.errors import AlertDeliveryError, DeliveryError
from autopilot.integrations.history import AlertHistory
from autopilot.integrations.ollama import OllamaClient, analyze_or_fallback
from autopilot.integrations.slack import ConsoleNotifier, SlackNotifier, build_notifier
from autopilot.models import (
    Alert,
    Analysis,
    Anomaly,
    DeploymentEvent,
    Incident,
    LogEntry,
    RecommendedAction,
    RootCause,
    Severity,
)
from autopilot.settings import Settings, load_settings
from tests.standins import (
    OllamaServer,
    RedisServer,
    SlackWebApiServer,
    SlackWebhookServer,
    free_port,
)

pytestmark = pytest.mark.integration

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
SERVICE = "checkout"


def make_incident(incident_id: str = "inc-checkout-1", revision: int = 1) -> Incident:
    return Incident(
        id=incident_id,
        service=SERVICE,
        status="opened" if revision == 1 else "updated",
        revision=revision,
        notify=True,
        severity=Severity.CRITICAL,
        trigger_reason="latency anomaly after deployment v2.4.1",
        opened_at=T0,
        updated_at=T0 + timedelta(minutes=1),
        anomalies=[
            Anomaly(
                metric_name="http_latency_p99_ms",
                service=SERVICE,
                current_value=950.0,
                baseline_mean=200.0,
                baseline_std_dev=20.0,
                z_score=37.5,
                deviation_percent=375.0,
                severity=Severity.CRITICAL,
                detected_at=T0,
            )
        ],
        recent_errors=[
            LogEntry(
                timestamp=T0,
                level="ERROR",
                message="timeout acquiring connection from pool",
                service=SERVICE,
            )
        ],
        recent_deployments=[
            DeploymentEvent(timestamp=T0 - timedelta(minutes=5), service=SERVICE, version="v2.4.1")
        ],
    )


def make_alert(incident_id: str = "inc-checkout-1", revision: int = 1) -> Alert:
    analysis = Analysis(
        root_cause=RootCause(
            description="Deployment v2.4.1 exhausted the DB pool", confidence=80, reasoning="timing"
        ),
        recommended_actions=[
            RecommendedAction(
                action="Roll back to v2.4.0", reasoning="regression", risk="low", priority=1
            )
        ],
        severity=Severity.CRITICAL,
        estimated_customer_impact="Checkouts fail",
        source="llm",
        model="llama3:latest",
    )
    return Alert(incident=make_incident(incident_id, revision), analysis=analysis)


def settings(**env: str) -> Settings:
    return load_settings(env)


def all_text(value: Any) -> str:
    """Every string inside a JSON-like value, joined (to search Block Kit payloads)."""
    return json.dumps(value)


# --- fixtures -------------------------------------------------------------------------


@pytest.fixture
def ollama() -> Iterator[OllamaServer]:
    with OllamaServer() as server:
        yield server


@pytest.fixture
def webhook() -> Iterator[SlackWebhookServer]:
    with SlackWebhookServer() as server:
        yield server


@pytest.fixture
def slack_api() -> Iterator[SlackWebApiServer]:
    with SlackWebApiServer(token="xoxb-good-token", channels={"alerts": "C0ALERTS01"}) as server:
        yield server




# --- Ollama ---------------------------------------------------------------------------


def test_ollama_analysis_sends_schema_request_and_parses_answer(ollama: OllamaServer) -> None:
    config = settings(OLLAMA_URL=ollama.url, OLLAMA_MODEL="llama3:latest", OLLAMA_TIMEOUT_S="10")

    async def run() -> tuple[Analysis, str | None]:
        async with OllamaClient(config) as client:
            return await analyze_or_fallback(client, make_incident())

    analysis, reason = asyncio.run(run())

    assert reason is None
    assert analysis.source == "llm"
    assert analysis.model == "llama3:latest"
    assert "connection pool" in analysis.root_cause.description
    assert len(ollama.requests) == 1
    sent = ollama.requests[0]
    assert sent["model"] == "llama3:latest"
    assert sent["stream"] is False
    assert sent["format"] == analysis_json_schema()
    assert sent["options"] == {"temperature": 0}
    assert any(SERVICE in m["content"] for m in sent["messages"])
    assert {m["role"] for m in sent["messages"]} <= {"system", "user"}


def test_ollama_unknown_model_falls_back_with_not_found_reason(ollama: OllamaServer) -> None:
    config = settings(OLLAMA_URL=ollama.url, OLLAMA_MODEL="mistral:7b")

    async def run() -> tuple[Analysis, str | None]:
        async with OllamaClient(config) as client:
            return await analyze_or_fallback(client, make_incident())

    analysis, reason = asyncio.run(run())

    assert analysis.source == "rules"
    assert reason is not None
    assert "404" in reason and 'model "mistral:7b" not found' in reason
    assert "ollama pull mistral:7b" in reason


def test_ollama_timeout_falls_back_within_budget(ollama: OllamaServer) -> None:
    ollama.delay_s = 10.0
    config = settings(OLLAMA_URL=ollama.url, OLLAMA_TIMEOUT_S="0.5")

    async def run() -> tuple[Analysis, str | None, float]:
        async with OllamaClient(config) as client:
            started = time.monotonic()
            analysis, reason = await analyze_or_fallback(client, make_incident())
            return analysis, reason, time.monotonic() - started

    analysis, reason, elapsed = asyncio.run(run())

    assert analysis.source == "rules"
    assert reason is not None and "0.5 s" in reason and "OLLAMA_TIMEOUT_S" in reason
    assert elapsed < 0.5 + 2.0  # bounded by the budget, not by the server's 10 s


def test_ollama_invalid_json_content_falls_back(ollama: OllamaServer) -> None:
    ollama.content = "The root cause is probably the database {not json"
    config = settings(OLLAMA_URL=ollama.url)

    async def run() -> tuple[Analysis, str | None]:
        async with OllamaClient(config) as client:
            return await analyze_or_fallback(client, make_incident())

    analysis, reason = asyncio.run(run())

    assert analysis.source == "rules"
    assert reason is not None and "invalid JSON" in reason


def test_ollama_server_error_quotes_ollama_error_text(ollama: OllamaServer) -> None:
    ollama.error = (500, "llama runner process has terminated: signal: killed")
    config = settings(OLLAMA_URL=ollama.url)

    async def run() -> tuple[Analysis, str | None]:
        async with OllamaClient(config) as client:
            return await analyze_or_fallback(client, make_incident())

    analysis, reason = asyncio.run(run())

    assert analysis.source == "rules"
    assert reason is not None and "HTTP 500" in reason and "llama runner process" in reason


def test_ollama_connection_refused_falls_back() -> None:
    config = settings(OLLAMA_URL=f"http://127.0.0.1:{free_port()}", OLLAMA_TIMEOUT_S="5")

    async def run() -> tuple[Analysis, str | None]:
        async with OllamaClient(config) as client:
            return await analyze_or_fallback(client, make_incident())

    analysis, reason = asyncio.run(run())

    assert analysis.source == "rules"
    assert reason is not None and "cannot connect to Ollama" in reason


def test_ollama_list_models_reads_tags(ollama: OllamaServer) -> None:
    async def run() -> list[str]:
        async with OllamaClient(settings(OLLAMA_URL=ollama.url)) as client:
            return await client.list_models()

    assert asyncio.run(run()) == ["llama3:latest"]


# --- Slack webhook --------------------------------------------------------------------


def test_webhook_posts_block_kit_naming_service_and_severity(webhook: SlackWebhookServer) -> None:
    notifier = SlackNotifier(settings(SLACK_WEBHOOK_URL=webhook.url))

    async def run() -> str | None:
        async with notifier:
            return await notifier.post(make_alert())

    assert asyncio.run(run()) is None
    assert len(webhook.requests) == 1
    body = webhook.requests[0]
    assert body["text"] and body["blocks"] and body["attachments"]
    assert SERVICE in all_text(body["blocks"])
    assert "critical" in all_text(body).lower()


def test_webhook_rate_limit_honours_retry_after_and_retries(webhook: SlackWebhookServer) -> None:
    reasons: list[str] = []
    notifier = SlackNotifier(
        settings(SLACK_WEBHOOK_URL=webhook.url, SLACK_MAX_RETRIES="3"), on_retry=reasons.append
    )
    webhook.fail_next(1, "rate_limited")

    async def run() -> float:
        async with notifier:
            started = time.monotonic()
            await notifier.post(make_alert())
            return time.monotonic() - started

    elapsed = asyncio.run(run())

    assert reasons == ["rate_limited"]
    assert notifier.retries == 1
    assert webhook.attempts == 2 and len(webhook.requests) == 1
    assert elapsed >= 1.0  # waited for Retry-After: 1


def test_webhook_server_error_then_success_retries(webhook: SlackWebhookServer) -> None:
    reasons: list[str] = []
    notifier = SlackNotifier(
        settings(SLACK_WEBHOOK_URL=webhook.url, SLACK_MAX_RETRIES="3"), on_retry=reasons.append
    )
    webhook.fail_next(1, "internal_error")

    async def run() -> None:
        async with notifier:
            await notifier.post(make_alert())

    asyncio.run(run())

    assert reasons == ["server_error"]
    assert webhook.attempts == 2 and len(webhook.requests) == 1


def test_webhook_persistent_server_error_raises_without_leaking_url(
    webhook: SlackWebhookServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    reasons: list[str] = []
    notifier = SlackNotifier(
        settings(SLACK_WEBHOOK_URL=webhook.url, SLACK_MAX_RETRIES="2"), on_retry=reasons.append
    )
    webhook.fail_next(10, "internal_error")

    async def run() -> None:
        async with notifier:
            await notifier.post(make_alert())

    with pytest.raises(AlertDeliveryError) as info:
        asyncio.run(run())

    error = info.value
    assert error.status == 500
    assert "internal_error" in str(error)
    assert webhook.attempts == 3 and reasons == ["server_error", "server_error"]
    secret_path = "/services/T000/B000/XXXX"
    assert webhook.url not in str(error) and secret_path not in str(error)
    assert error.__cause__ is None
    assert error.__context__ is None or error.__suppress_context__
    assert secret_path not in caplog.text


def test_webhook_revoked_raises_no_service_without_retry(webhook: SlackWebhookServer) -> None:
    reasons: list[str] = []
    notifier = SlackNotifier(settings(SLACK_WEBHOOK_URL=webhook.url), on_retry=reasons.append)
    webhook.fail_next(1, "no_service")

    async def run() -> None:
        async with notifier:
            await notifier.post(make_alert())

    with pytest.raises(AlertDeliveryError) as info:
        asyncio.run(run())

    assert info.value.status == 404 and "no_service" in str(info.value)
    assert "SLACK_WEBHOOK_URL" in str(info.value)
    assert reasons == [] and webhook.attempts == 1


def test_webhook_rate_limit_exhausted_reports_retry_after(webhook: SlackWebhookServer) -> None:
    notifier = SlackNotifier(settings(SLACK_WEBHOOK_URL=webhook.url, SLACK_MAX_RETRIES="0"))
    webhook.fail_next(1, "rate_limited")

    async def run() -> None:
        async with notifier:
            await notifier.post(make_alert())

    with pytest.raises(AlertDeliveryError) as info:
        asyncio.run(run())

    assert info.value.status == 429 and info.value.retry_after == 1.0


def test_webhook_unreachable_raises_without_leaking_url() -> None:
    url = f"http://127.0.0.1:{free_port()}/services/T000/B000/SECRET"
    notifier = SlackNotifier(settings(SLACK_WEBHOOK_URL=url, SLACK_MAX_RETRIES="1"))

    async def run() -> None:
        async with notifier:
            await notifier.post(make_alert())

    with pytest.raises(AlertDeliveryError) as info:
        asyncio.run(run())

    assert info.value.status is None
    assert "SECRET" not in str(info.value) and url not in str(info.value)
    assert notifier.retries == 1  # the connection error was retried once


# --- Slack bot ------------------------------------------------------------------------


def test_bot_posts_then_updates_the_message(slack_api: SlackWebApiServer) -> None:
    config = settings(
        SLACK_BOT_TOKEN="xoxb-good-token", SLACK_CHANNEL="#alerts", SLACK_API_URL=slack_api.base_url
    )
    notifier = SlackNotifier(config)

    async def run() -> str | None:
        async with notifier:
            ts = await notifier.post(make_alert(revision=1))
            assert ts is not None
            await notifier.update(ts, make_alert(revision=2))
            return ts

    ts = asyncio.run(run())

    assert ts == "1700000000.000100"
    assert notifier.channel_id == "C0ALERTS01"
    assert [method for method, _ in slack_api.calls] == ["chat.postMessage", "chat.update"]
    post_body, update_body = slack_api.calls[0][1], slack_api.calls[1][1]
    assert post_body["channel"] == "#alerts"
    assert SERVICE in all_text(post_body["blocks"])
    assert update_body["channel"] == "C0ALERTS01" and update_body["ts"] == ts
    assert slack_api.messages[ts]["edited"] is True


def test_bot_invalid_auth_raises_with_slack_error_code(slack_api: SlackWebApiServer) -> None:
    token = "xoxb-wrong-token"
    config = settings(
        SLACK_BOT_TOKEN=token, SLACK_CHANNEL="#alerts", SLACK_API_URL=slack_api.base_url
    )

    async def run() -> None:
        async with SlackNotifier(config) as notifier:
            await notifier.post(make_alert())

    with pytest.raises(AlertDeliveryError) as info:
        asyncio.run(run())

    assert "invalid_auth" in str(info.value) and "SLACK_BOT_TOKEN" in str(info.value)
    assert token not in str(info.value)


def test_bot_unknown_channel_raises_channel_not_found(slack_api: SlackWebApiServer) -> None:
    config = settings(
        SLACK_BOT_TOKEN="xoxb-good-token", SLACK_CHANNEL="#nope", SLACK_API_URL=slack_api.base_url
    )

    async def run() -> None:
        async with SlackNotifier(config) as notifier:
            await notifier.post(make_alert())

    with pytest.raises(AlertDeliveryError, match="channel_not_found"):
        asyncio.run(run())


def test_bot_rate_limit_then_success_retries(slack_api: SlackWebApiServer) -> None:
    reasons: list[str] = []
    config = settings(
        SLACK_BOT_TOKEN="xoxb-good-token", SLACK_CHANNEL="alerts", SLACK_API_URL=slack_api.base_url
    )
    slack_api.rate_limit_next(1)

    async def run() -> str | None:
        async with SlackNotifier(config, on_retry=reasons.append) as notifier:
            return await notifier.post(make_alert())

    assert asyncio.run(run()) is not None
    assert reasons == ["rate_limited"] and slack_api.attempts == 2


# --- notifier choice and console ------------------------------------------------------


def test_build_notifier_chooses_by_settings(webhook: SlackWebhookServer) -> None:
    assert isinstance(build_notifier(settings()), ConsoleNotifier)
    assert build_notifier(settings(SLACK_WEBHOOK_URL=webhook.url)).mode == "webhook"
    bot = build_notifier(settings(SLACK_BOT_TOKEN="xoxb-x", SLACK_CHANNEL="#alerts"))
    assert bot.mode == "bot"
    assert "xoxb-x" not in repr(bot)


def test_console_notifier_prints_the_alert() -> None:
    out = io.StringIO()

    async def run() -> str | None:
        async with ConsoleNotifier(stream=out) as notifier:
            return await notifier.post(make_alert())

    assert asyncio.run(run()) is None
    assert SERVICE in out.getvalue()


# --- Redis history --------------------------------------------------------------------


def test_claim_send_is_exclusive_and_release_allows_reclaim(redis_server: RedisServer) -> None:
    config = settings(REDIS_URL=redis_server.url)

    async def run() -> list[bool]:
        async with AlertHistory(config) as history:
            first = await history.claim_send("inc-1", "r1")
            await history.mark_sent("inc-1", "r1")
            second = await history.claim_send("inc-1", "r1")
            other_revision = await history.claim_send("inc-1", "r2")
            await history.release_send("inc-1", "r1")
            again = await history.claim_send("inc-1", "r1")
            return [first, second, other_revision, again]

    assert asyncio.run(run()) == [True, False, True, True]


def test_a_pending_claim_of_a_dead_sender_is_taken_over_after_its_lease(
    redis_server: RedisServer,
) -> None:
    # A worker claimed the send and died before Slack answered: the alert must not
    # be lost, so the replay takes the claim over once the lease has run out.
    async def run() -> tuple[bool, bool, float, bool]:
        async with AlertHistory(settings(REDIS_URL=redis_server.url)) as history:
            dead = await history.claim_send("inc-7", "r1", lease_s=1.0)
            started = time.monotonic()
            replay = await history.claim_send("inc-7", "r1", lease_s=1.0)
            waited = time.monotonic() - started
            await history.mark_sent("inc-7", "r1")
            after_sent = await history.claim_send("inc-7", "r1", lease_s=1.0)
            return dead, replay, waited, after_sent

    dead, replay, waited, after_sent = asyncio.run(run())
    assert dead and replay and not after_sent
    assert 0.2 < waited < 8.0


def test_claim_key_expires_after_seven_days(redis_server: RedisServer) -> None:
    async def run() -> int:
        async with AlertHistory(settings(REDIS_URL=redis_server.url)) as history:
            await history.claim_send("inc-9", "r1")
            await history.mark_sent("inc-9", "r1")
            return int(await history._client().ttl("autopilot:sent:inc-9:r1"))

    ttl = asyncio.run(run())
    assert 7 * 24 * 3600 - 60 < ttl <= 7 * 24 * 3600


def test_record_keeps_capped_history_and_incident_meta(redis_server: RedisServer) -> None:
    config = settings(
        REDIS_URL=redis_server.url,
        AUTOPILOT_ALERT_HISTORY="3",
        SLACK_CHANNEL="#alerts",
        SLACK_BOT_TOKEN="xoxb-x",
    )

    async def run() -> tuple[list[dict[str, Any]], dict[str, str], list[dict[str, Any]]]:
        async with AlertHistory(config) as history:
            for n in range(1, 6):
                await history.record(make_alert(f"inc-{n}"), f"1700000000.00{n}00", "C0ALERTS01")
            return (
                await history.history(SERVICE, limit=10),
                await history.get_incident_meta("inc-5"),
                await history.history("unknown-service", limit=10),
            )

    entries, meta, empty = asyncio.run(run())

    assert [e["incident_id"] for e in entries] == ["inc-5", "inc-4", "inc-3"]
    assert entries[0]["severity"] == "critical" and entries[0]["service"] == SERVICE
    assert meta["severity"] == "critical"
    assert meta["ts"] == "1700000000.00500" and meta["channel"] == "C0ALERTS01"
    assert empty == []


def test_redis_down_raises_delivery_error() -> None:
    config = settings(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")

    async def run() -> None:
        history = AlertHistory(config, socket_timeout_s=1.0)
        try:
            await history.claim_send("inc-1", "r1")
        finally:
            await history.aclose()

    with pytest.raises(DeliveryError, match="Redis claim of incident inc-1"):
        asyncio.run(run())


def test_disabled_history_claims_everything_and_warns_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="autopilot.integrations.history")
    history = AlertHistory.from_settings(settings())

    async def run() -> list[bool]:
        claims = [await history.claim_send("inc-1", "r1") for _ in range(3)]
        await history.record(make_alert(), None)
        await history.record(make_alert(), None)
        assert await history.history(SERVICE, 10) == []
        assert await history.get_incident_meta("inc-1") == {}
        return claims

    assert asyncio.run(run()) == [True, True, True]
    assert not history.enabled
    warnings = [r for r in caplog.records if "REDIS_URL is not set" in r.getMessage()]
    assert len(warnings) == 1
