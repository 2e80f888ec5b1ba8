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
from typing import Any

import pytest

from autopilot.analysis import analysis_json_schema
from autopilot.errors import AlertDeliveryError, DeliveryError
from autopilot.integrations.history import SENT_TTL_S, AlertHistory
from autopilot.integrations.ollama import OllamaClient, analyze_or_fallback
from autopilot.integrations.slack import ConsoleNotifier, SlackNotifier, build_notifier
from autopilot.models import Analysis
from autopilot.settings import Settings, load_settings
from tests import factories
from tests.standins import (
    OllamaServer,
    RedisServer,
    SlackWebApiServer,
    SlackWebhookServer,
    free_port,
)

pytestmark = [pytest.mark.integration, pytest.mark.no_broker]

SERVICE = "checkout"


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
            return await analyze_or_fallback(client, factories.incident())

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
    assert sent["options"] == {"temperature": 0, "num_ctx": 8192, "num_predict": 1024}
    assert sent["keep_alive"] == "30m"
    assert "think" not in sent  # only for a model whose capabilities include "thinking"
    assert any(SERVICE in m["content"] for m in sent["messages"])
    assert {m["role"] for m in sent["messages"]} <= {"system", "user"}


def test_ollama_unknown_model_falls_back_with_not_found_reason(ollama: OllamaServer) -> None:
    config = settings(OLLAMA_URL=ollama.url, OLLAMA_MODEL="mistral:7b")

    async def run() -> tuple[Analysis, str | None]:
        async with OllamaClient(config) as client:
            return await analyze_or_fallback(client, factories.incident())

    analysis, reason = asyncio.run(run())

    assert analysis.source == "rules"
    assert reason is not None
    assert "HTTP 404: model 'mistral:7b' not found" in reason, reason
    assert "ollama pull mistral:7b" in reason


def test_ollama_timeout_falls_back_within_budget(ollama: OllamaServer) -> None:
    ollama.delay_s = 10.0
    config = settings(OLLAMA_URL=ollama.url, OLLAMA_TIMEOUT_S="0.5")

    async def run() -> tuple[Analysis, str | None, float]:
        async with OllamaClient(config) as client:
            started = time.monotonic()
            analysis, reason = await analyze_or_fallback(client, factories.incident())
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
            return await analyze_or_fallback(client, factories.incident())

    analysis, reason = asyncio.run(run())

    assert analysis.source == "rules"
    assert reason is not None and "invalid JSON" in reason


def test_ollama_server_error_quotes_ollama_error_text(ollama: OllamaServer) -> None:
    ollama.error = (500, "llama runner process has terminated: signal: killed")
    config = settings(OLLAMA_URL=ollama.url)

    async def run() -> tuple[Analysis, str | None]:
        async with OllamaClient(config) as client:
            return await analyze_or_fallback(client, factories.incident())

    analysis, reason = asyncio.run(run())

    assert analysis.source == "rules"
    assert reason is not None and "HTTP 500" in reason and "llama runner process" in reason


def test_ollama_connection_refused_falls_back() -> None:
    config = settings(OLLAMA_URL=f"http://127.0.0.1:{free_port()}", OLLAMA_TIMEOUT_S="5")

    async def run() -> tuple[Analysis, str | None]:
        async with OllamaClient(config) as client:
            return await analyze_or_fallback(client, factories.incident())

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
            return await notifier.post(factories.alert())

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
            await notifier.post(factories.alert())
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
            await notifier.post(factories.alert())

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
            await notifier.post(factories.alert())

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
            await notifier.post(factories.alert())

    with pytest.raises(AlertDeliveryError) as info:
        asyncio.run(run())

    assert info.value.status == 404 and "no_service" in str(info.value)
    assert info.value.code == "no_service"
    assert "SLACK_WEBHOOK_URL" in str(info.value)
    assert reasons == [] and webhook.attempts == 1


def test_webhook_rate_limit_exhausted_reports_retry_after(webhook: SlackWebhookServer) -> None:
    notifier = SlackNotifier(settings(SLACK_WEBHOOK_URL=webhook.url, SLACK_MAX_RETRIES="0"))
    webhook.fail_next(1, "rate_limited")

    async def run() -> None:
        async with notifier:
            await notifier.post(factories.alert())

    with pytest.raises(AlertDeliveryError) as info:
        asyncio.run(run())

    assert info.value.status == 429 and info.value.retry_after == 1.0


def test_webhook_unreachable_raises_without_leaking_url() -> None:
    url = f"http://127.0.0.1:{free_port()}/services/T000/B000/SECRET"
    notifier = SlackNotifier(settings(SLACK_WEBHOOK_URL=url, SLACK_MAX_RETRIES="1"))

    async def run() -> None:
        async with notifier:
            await notifier.post(factories.alert())

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
            ts = await notifier.post(factories.alert(revision=1))
            assert ts is not None
            await notifier.update(ts, factories.alert(revision=2))
            return ts

    ts = asyncio.run(run())

    assert ts is not None and ts in slack_api.messages
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
            await notifier.post(factories.alert())

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
            await notifier.post(factories.alert())

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
            return await notifier.post(factories.alert())

    assert asyncio.run(run()) is not None
    assert reasons == ["rate_limited"] and slack_api.attempts == 2


# --- Slack bot: one incident = one conversation ---------------------------------------

EVENT = "autopilot_incident"


def bot_settings(slack_api: SlackWebApiServer, **env: str) -> Settings:
    return settings(
        SLACK_BOT_TOKEN="xoxb-good-token",
        SLACK_CHANNEL="#alerts",
        SLACK_API_URL=slack_api.base_url,
        **env,
    )


def incident_metadata(incident_id: str) -> dict[str, Any]:
    return {"event_type": EVENT, "event_payload": {"incident_id": incident_id, "revision": 1}}


ROOT = {"text": "checkout is firing", "blocks": [
    {"type": "section", "text": {"type": "mrkdwn", "text": "*checkout* is firing"}}]}


def test_post_message_returns_channel_id_and_ts_and_sends_metadata_as_json(
    slack_api: SlackWebApiServer,
) -> None:
    notifier = SlackNotifier(bot_settings(slack_api))

    async def run() -> tuple[str, str]:
        async with notifier:
            return await notifier.post_message(ROOT, metadata=incident_metadata("inc-1"))

    channel_id, ts = asyncio.run(run())

    assert channel_id == "C0ALERTS01"
    (root,) = slack_api.top_level()
    assert root["ts"] == ts and root["bot_id"] == SlackWebApiServer.BOT_ID
    assert root["metadata"] == incident_metadata("inc-1")
    method, body = slack_api.calls[0]
    assert method == "chat.postMessage" and body["channel"] == "#alerts"
    assert body["metadata"] == incident_metadata("inc-1")  # a JSON object, not a string
    assert "thread_ts" not in body


def test_thread_reply_lands_in_the_root_messages_thread(slack_api: SlackWebApiServer) -> None:
    notifier = SlackNotifier(bot_settings(slack_api))

    async def run() -> tuple[tuple[str, str], tuple[str, str]]:
        async with notifier:
            root = await notifier.post_message(ROOT, metadata=incident_metadata("inc-1"))
            reply = await notifier.post_message(
                {"text": "LLM analysis: the DB pool"}, channel=root[0], thread_ts=root[1]
            )
            return root, reply

    (channel_id, root_ts), (reply_channel, reply_ts) = asyncio.run(run())

    assert reply_channel == channel_id and reply_ts != root_ts
    assert [m["ts"] for m in slack_api.top_level()] == [root_ts]
    (reply,) = slack_api.thread(root_ts)
    assert reply["ts"] == reply_ts and reply["text"] == "LLM analysis: the DB pool"
    assert slack_api.calls[1][1]["thread_ts"] == root_ts


def test_thread_reply_to_an_unknown_ts_raises_thread_not_found(
    slack_api: SlackWebApiServer,
) -> None:
    notifier = SlackNotifier(bot_settings(slack_api))

    async def run() -> None:
        async with notifier:
            await notifier.post_message(
                {"text": "reply"}, thread_ts="1234567890.000001",
                metadata=incident_metadata("inc-2"),
            )

    with pytest.raises(AlertDeliveryError) as info:
        asyncio.run(run())

    assert info.value.code == "thread_not_found" and info.value.status == 200
    assert "incident inc-2" in str(info.value)
    assert slack_api.messages == {}


def test_update_message_edits_in_place_and_unknown_ts_raises_message_not_found(
    slack_api: SlackWebApiServer,
) -> None:
    notifier = SlackNotifier(bot_settings(slack_api))
    resolved = {"text": "checkout resolved", "attachments": [{"color": "#2EB67D", "blocks": [
        {"type": "section", "text": {"type": "mrkdwn", "text": "resolved after 12 min"}}]}]}

    async def run() -> str:
        async with notifier:
            channel_id, ts = await notifier.post_message(ROOT)
            await notifier.update_message(channel_id, ts, resolved)
            await notifier.update_message(channel_id, "1234567890.000001", resolved)
            return ts

    with pytest.raises(AlertDeliveryError) as info:
        asyncio.run(run())

    assert info.value.code == "message_not_found"
    (message,) = slack_api.messages.values()
    assert message["edited"] is True and message["text"] == "checkout resolved"
    assert "resolved after 12 min" in all_text(message["attachments"])
    assert "*checkout* is firing" in all_text(message["blocks"])  # blocks left out: kept
    assert [m for m, _ in slack_api.calls] == ["chat.postMessage", "chat.update", "chat.update"]


def test_find_message_finds_its_root_message_across_history_pages(
    slack_api: SlackWebApiServer,
) -> None:
    # A crash between the post and its record in Redis: the root message must be
    # found in the channel's history, among hundreds of newer messages, and not be
    # confused with a reply, another app's message or a user's message.
    notifier = SlackNotifier(bot_settings(slack_api))
    since = time.time() - 60

    async def post_root() -> tuple[str, str]:
        async with notifier:
            root = await notifier.post_message(ROOT, metadata=incident_metadata("inc-7"))
            await notifier.post_message({"text": "reply"}, channel=root[0], thread_ts=root[1],
                                        metadata=incident_metadata("inc-7"))
            return root

    root = asyncio.run(post_root())
    for n in range(450):  # newer roots of other incidents, by the same app
        slack_api.add_message("alerts", f"other {n}", bot_id=SlackWebApiServer.BOT_ID,
                              metadata=incident_metadata(f"inc-other-{n}"))
    slack_api.add_message("alerts", "forged by another app", bot_id="B0OTHERAPP",
                          metadata=incident_metadata("inc-7"))
    slack_api.add_message("alerts", "a human", metadata=incident_metadata("inc-7"))
    slack_api.calls.clear()
    notifier = SlackNotifier(bot_settings(slack_api))

    async def find() -> tuple[tuple[str, str] | None, tuple[str, str] | None]:
        async with notifier:
            found = await notifier.find_message("#alerts", EVENT, "incident_id", "inc-7",
                                                oldest=since)
            after = await notifier.find_message("#alerts", EVENT, "incident_id", "inc-7",
                                                oldest=float(root[1]))
            return found, after

    found, after = asyncio.run(find())

    assert found == root
    assert after is None  # oldest is exclusive
    methods = [m for m, _ in slack_api.calls]
    assert methods.count("conversations.list") == 1  # the name is resolved once
    assert methods.count("auth.test") == 1
    history = [body for m, body in slack_api.calls if m == "conversations.history"]
    # 452 newer top-level messages: the root is on the third page of 200; the second
    # lookup reads the same three pages (the last one short) and stops without a cursor
    assert len(history) == 3 + 3
    assert "cursor" not in history[3]
    first = history[0]
    assert first["channel"] == "C0ALERTS01" and first["limit"] == "200"
    assert first["include_all_metadata"] in ("1", "true") and "cursor" not in first
    assert history[1]["cursor"] and history[2]["cursor"] != history[1]["cursor"]


def test_find_message_reads_at_most_five_pages(slack_api: SlackWebApiServer) -> None:
    for n in range(1100):
        slack_api.add_message("alerts", f"other {n}", bot_id=SlackWebApiServer.BOT_ID,
                              metadata=incident_metadata(f"inc-other-{n}"))
    notifier = SlackNotifier(bot_settings(slack_api))

    async def run() -> tuple[str, str] | None:
        async with notifier:
            return await notifier.find_message("C0ALERTS01", EVENT, "incident_id", "inc-9",
                                               oldest=0.0)

    assert asyncio.run(run()) is None
    methods = [m for m, _ in slack_api.calls]
    assert methods.count("conversations.history") == 5
    assert "conversations.list" not in methods  # an ID needs no lookup


def test_find_message_in_an_unknown_channel_raises_channel_not_found(
    slack_api: SlackWebApiServer,
) -> None:
    notifier = SlackNotifier(bot_settings(slack_api))

    async def run() -> None:
        async with notifier:
            await notifier.find_message("#nope", EVENT, "incident_id", "inc-1", oldest=0.0)

    with pytest.raises(AlertDeliveryError) as info:
        asyncio.run(run())

    assert info.value.code == "channel_not_found"


def test_find_message_missing_scope_names_the_scope(slack_api: SlackWebApiServer) -> None:
    slack_api.fail_method("conversations.history", "missing_scope")
    notifier = SlackNotifier(bot_settings(slack_api))

    async def run() -> None:
        async with notifier:
            await notifier.find_message("C0ALERTS01", EVENT, "incident_id", "inc-1", oldest=0.0)

    with pytest.raises(AlertDeliveryError) as info:
        asyncio.run(run())

    assert info.value.code == "missing_scope"
    assert "channels:history" in str(info.value)
    assert "xoxb-good-token" not in str(info.value)


def test_rate_limited_history_is_retried_after_retry_after(slack_api: SlackWebApiServer) -> None:
    reasons: list[str] = []
    slack_api.fail_method("conversations.history", "ratelimited")
    notifier = SlackNotifier(bot_settings(slack_api, SLACK_MAX_RETRIES="2"),
                             on_retry=reasons.append)

    async def run() -> tuple[str, str] | None:
        async with notifier:
            return await notifier.find_message("C0ALERTS01", EVENT, "incident_id", "inc-1",
                                               oldest=0.0)

    assert asyncio.run(run()) is None
    assert reasons == ["rate_limited"]


PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8


def test_upload_file_lands_in_the_incident_thread(slack_api: SlackWebApiServer) -> None:
    notifier = SlackNotifier(bot_settings(slack_api))

    async def run() -> tuple[str, str]:
        async with notifier:
            channel_id, ts = await notifier.post_message(ROOT)
            await notifier.upload_file(channel_id, ts, PNG, "checkout-latency.png",
                                       "checkout latency_ms")
            return channel_id, ts

    channel_id, ts = asyncio.run(run())

    (upload,) = slack_api.uploads
    assert upload["channel"] == channel_id and upload["thread_ts"] == ts
    assert upload["content"] == PNG
    assert upload["filename"] == "checkout-latency.png"
    assert upload["title"] == "checkout latency_ms"
    (share,) = slack_api.thread(ts)
    assert share["files"][0]["id"] == upload["file_id"]
    assert len(slack_api.top_level()) == 1
    methods = [m for m, _ in slack_api.calls]
    assert methods == ["chat.postMessage", "files.getUploadURLExternal",
                       "files.completeUploadExternal"]
    get_url = slack_api.calls[1][1]
    assert get_url["filename"] == "checkout-latency.png" and get_url["length"] == str(len(PNG))


@pytest.mark.parametrize(
    ("method", "error", "code"),
    [
        ("upload", "internal_error", "upload_failed"),
        ("files.completeUploadExternal", "file_not_found", "file_not_found"),
        ("files.getUploadURLExternal", "missing_scope", "missing_scope"),
    ],
)
def test_a_failed_upload_raises_with_a_code_and_shares_nothing(
    slack_api: SlackWebApiServer, method: str, error: str, code: str
) -> None:
    notifier = SlackNotifier(bot_settings(slack_api, SLACK_MAX_RETRIES="0"))

    async def run() -> None:
        async with notifier:
            channel_id, ts = await notifier.post_message(ROOT)
            slack_api.fail_method(method, error)
            await notifier.upload_file(channel_id, ts, PNG, "chart.png", "chart")

    with pytest.raises(AlertDeliveryError) as info:
        asyncio.run(run())

    assert info.value.code == code
    assert slack_api.uploads == []
    assert "xoxb-good-token" not in str(info.value)
    if method != "upload":
        assert method in str(info.value)  # names the step that failed


def test_upload_into_an_unknown_thread_raises_thread_not_found(
    slack_api: SlackWebApiServer,
) -> None:
    notifier = SlackNotifier(bot_settings(slack_api))

    async def run() -> None:
        async with notifier:
            await notifier.upload_file("C0ALERTS01", "1234567890.000001", PNG, "c.png", "c")

    with pytest.raises(AlertDeliveryError) as info:
        asyncio.run(run())

    assert info.value.code == "thread_not_found"
    assert slack_api.uploads == []


def test_send_webhook_posts_the_payload_and_bot_methods_refuse_webhook_mode(
    webhook: SlackWebhookServer,
) -> None:
    notifier = SlackNotifier(settings(SLACK_WEBHOOK_URL=webhook.url))

    async def run() -> None:
        async with notifier:
            await notifier.send_webhook(ROOT)
            with pytest.raises(RuntimeError, match="bot mode"):
                await notifier.post_message(ROOT)
            with pytest.raises(RuntimeError, match="bot mode"):
                await notifier.find_message("#alerts", EVENT, "incident_id", "x", oldest=0.0)

    asyncio.run(run())

    assert webhook.requests == [ROOT]


def test_send_webhook_failure_carries_slacks_code(webhook: SlackWebhookServer) -> None:
    webhook.fail_next(1, "invalid_payload")
    notifier = SlackNotifier(settings(SLACK_WEBHOOK_URL=webhook.url))

    async def run() -> None:
        async with notifier:
            await notifier.send_webhook(ROOT)

    with pytest.raises(AlertDeliveryError) as info:
        asyncio.run(run())

    assert info.value.code == "invalid_payload" and info.value.status == 400
    assert "/services/T000/B000/XXXX" not in str(info.value)


def test_console_notifier_speaks_the_conversation_methods() -> None:
    out = io.StringIO()

    async def run() -> tuple[tuple[str, str], tuple[str, str], tuple[str, str] | None]:
        async with ConsoleNotifier(stream=out) as notifier:
            root = await notifier.post_message(ROOT, metadata=incident_metadata("inc-1"))
            reply = await notifier.post_message({"text": "resolved"}, thread_ts=root[1])
            await notifier.update_message(*root, {"text": "checkout resolved"})
            await notifier.upload_file(*root, PNG, "c.png", "c")
            found = await notifier.find_message("#alerts", EVENT, "incident_id", "inc-1",
                                                oldest=0.0)
            return root, reply, found

    root, reply, found = asyncio.run(run())

    assert root == ("console", "1.000000") and reply == ("console", "2.000000")
    assert found is None
    printed = out.getvalue()
    assert "*checkout* is firing" in printed
    assert "  ↳ resolved" in printed
    assert "[update of 1.000000]" in printed and "checkout resolved" in printed


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
            return await notifier.post(factories.alert())

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
                await history.record(factories.alert(id=f"inc-{n}"), f"1700000000.00{n}00",
                                     "C0ALERTS01")
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
        await history.record(factories.alert(), None)
        await history.record(factories.alert(), None)
        assert await history.history(SERVICE, 10) == []
        assert await history.get_incident_meta("inc-1") == {}
        return claims

    assert asyncio.run(run()) == [True, True, True]
    assert not history.enabled
    warnings = [r for r in caplog.records if "REDIS_URL is not set" in r.getMessage()]
    assert len(warnings) == 1


def test_generic_claim_uses_the_revision_scheme_and_releases(redis_server: RedisServer) -> None:
    async def run() -> dict[str, Any]:
        async with AlertHistory(settings(REDIS_URL=redis_server.url)) as history:
            key = "inc-3:reply:analysis"
            out: dict[str, Any] = {"first": await history.claim(key, lease_s=5.0)}
            await history.renew(key, lease_s=5.0)
            out["pending_ttl_ms"] = int(await history._client().pttl(f"autopilot:sent:{key}"))
            await history.mark_done(key)
            await history.renew(key)  # a done send stays done
            out["value"] = await history._client().get(f"autopilot:sent:{key}")
            out["ttl"] = int(await history._client().ttl(f"autopilot:sent:{key}"))
            out["again"] = await history.claim(key)
            await history.release(key)
            out["after_release"] = await history.claim(key)
            # claim_send is the generic claim of "{incident}:{revision}"
            await history.claim_send("inc-3", "r1")
            await history.mark_sent("inc-3", "r1")
            out["generic_sees_revision"] = await history.claim("inc-3:r1")
            await history.mark_done("inc-3:r2")
            out["revision_sees_generic"] = await history.claim_send("inc-3", "r2")
            return out

    out = asyncio.run(run())

    assert out["first"] is True and 0 < out["pending_ttl_ms"] <= 5000
    assert out["value"] == "sent" and SENT_TTL_S - 60 < out["ttl"] <= SENT_TTL_S
    assert out["again"] is False and out["after_release"] is True
    assert out["generic_sees_revision"] is False and out["revision_sees_generic"] is False


def test_a_pending_generic_claim_of_a_dead_sender_is_taken_over(
    redis_server: RedisServer,
) -> None:
    async def run() -> tuple[bool, bool, float]:
        async with AlertHistory(settings(REDIS_URL=redis_server.url)) as history:
            dead = await history.claim("inc-8:upload:latency", lease_s=1.0)
            started = time.monotonic()
            replay = await history.claim("inc-8:upload:latency", lease_s=1.0)
            return dead, replay, time.monotonic() - started

    dead, replay, waited = asyncio.run(run())
    assert dead and replay and 0.2 < waited < 8.0


def test_incident_message_is_stored_for_seven_days_with_a_legacy_fallback(
    redis_server: RedisServer,
) -> None:
    config = settings(REDIS_URL=redis_server.url, SLACK_CHANNEL="#alerts",
                      SLACK_BOT_TOKEN="xoxb-x")

    async def run() -> dict[str, Any]:
        async with AlertHistory(config) as history:
            out: dict[str, Any] = {"unknown": await history.get_incident_message("inc-1")}
            await history.set_incident_message("inc-1", "C0ALERTS01", "1714564800.000100")
            await history.set_incident_message("inc-1", "C0ALERTS01", "1714564800.000200")
            out["stored"] = await history.get_incident_message("inc-1")
            out["ttl"] = int(await history._client().ttl("autopilot:message:inc-1"))
            # written by the previous version's record(): ts + channel ID in the meta hash
            await history.record(factories.alert(id="inc-old"), "1714564700.000100", "C0ALERTS01")
            out["legacy"] = await history.get_incident_message("inc-old")
            await history.record(factories.alert(id="inc-hook"), None, None)  # webhook: no ts
            out["legacy_webhook"] = await history.get_incident_message("inc-hook")
            return out

    out = asyncio.run(run())

    assert out["unknown"] is None
    assert out["stored"] == ("C0ALERTS01", "1714564800.000200")
    assert SENT_TTL_S - 60 < out["ttl"] <= SENT_TTL_S
    assert out["legacy"] == ("C0ALERTS01", "1714564700.000100")
    assert out["legacy_webhook"] is None


def test_disabled_history_claims_generic_keys_and_stores_no_message() -> None:
    history = AlertHistory.from_settings(settings())

    async def run() -> tuple[list[bool], tuple[str, str] | None]:
        claims = [await history.claim("inc-1:reply:x") for _ in range(2)]
        await history.mark_done("inc-1:reply:x")
        await history.set_incident_message("inc-1", "C0ALERTS01", "1.000100")
        return claims, await history.get_incident_message("inc-1")

    assert asyncio.run(run()) == ([True, True], None)
