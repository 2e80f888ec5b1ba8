"""LLM and Slack edges against real HTTP stand-ins (issue 12): the Ollama circuit
breaker, the model check at start, one fallback warning per episode, a streamed
(NDJSON) answer, what reaches Ollama from leaky log lines, and Slack's
``invalid_blocks`` answered with a plain-text retry.

Ollama and Slack are the stand-in servers of tests/standins.py (real HTTP, Slack's and
Ollama's own error bodies); the clients are the product's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from autopilot import blockkit
from autopilot.errors import AlertDeliveryError
from autopilot.integrations.ollama import LLMGuard, OllamaClient, analyze_or_fallback
from autopilot.integrations.slack import SlackNotifier
from autopilot.models import Analysis
from autopilot.settings import Settings, load_settings
from tests import factories, standins
from tests.standins import (
    OllamaServer,
    SlackWebApiServer,
    SlackWebhookServer,
    StreamingOllamaServer,
    free_port,
)

pytestmark = [pytest.mark.integration, pytest.mark.no_broker]

OLLAMA_LOGGER = "autopilot.integrations.ollama"


def settings(**env: str) -> Settings:
    return load_settings(env)


class CountingTransport(httpx.AsyncHTTPTransport):
    """The real TCP transport, counting the requests that went out."""

    def __init__(self) -> None:
        super().__init__()
        self.paths: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        return await super().handle_async_request(request)


async def analyse_n(client: OllamaClient, n: int) -> list[tuple[Analysis, Any, float]]:
    out = []
    for i in range(n):
        started = time.monotonic()
        analysis, reason = await analyze_or_fallback(client, factories.incident(id=f"inc-{i}"))
        out.append((analysis, reason, time.monotonic() - started))
    return out


@pytest.fixture
def ollama() -> Iterator[OllamaServer]:
    with OllamaServer() as server:
        yield server


# --- circuit breaker ------------------------------------------------------------------


def test_repeated_model_not_found_opens_the_breaker_and_ollama_is_no_longer_called(
    ollama: OllamaServer,
) -> None:
    config = settings(OLLAMA_URL=ollama.url, OLLAMA_MODEL="mistral:7b",
                      AUTOPILOT_LLM_BREAKER_FAILURES="2",
                      AUTOPILOT_LLM_BREAKER_COOLDOWN_S="300")
    transport = CountingTransport()

    async def run() -> list[tuple[Analysis, Any, float]]:
        async with OllamaClient(config, transport=transport) as client:
            return await analyse_n(client, 6)

    results = asyncio.run(run())
    kinds = [reason.kind for _, reason, _ in results]
    assert kinds == ["model_not_found"] * 2 + ["circuit_open"] * 4
    assert all(a.source == "rules" for a, _, _ in results)
    assert transport.paths == ["/api/chat", "/api/chat"]  # nothing after the breaker opened
    assert "circuit breaker open" in results[-1][1] and "model not found" in results[-1][1]


def test_timeouts_open_the_breaker_then_a_trial_after_the_cooldown_closes_it(
    ollama: OllamaServer,
) -> None:
    ollama.delay_s = 5.0
    config = settings(OLLAMA_URL=ollama.url, OLLAMA_TIMEOUT_S="0.3",
                      AUTOPILOT_LLM_BREAKER_FAILURES="2",
                      AUTOPILOT_LLM_BREAKER_COOLDOWN_S="0.5")

    async def run() -> tuple[list[Any], list[Any], Analysis]:
        async with OllamaClient(config) as client:
            first = await analyse_n(client, 3)
            ollama.delay_s = 0.0  # Ollama recovers
            skipped = await analyse_n(client, 1)  # still inside the cooldown
            deadline = time.monotonic() + 10
            while client.guard.breaker.retry_in(client.guard.clock()) > 0:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            analysis, reason = await analyze_or_fallback(client, factories.incident(id="inc-trial"))
            assert reason is None
            return first, skipped, analysis

    first, skipped, analysis = asyncio.run(run())
    assert [r.kind for _, r, _ in first] == ["timeout", "timeout", "circuit_open"]
    assert first[2][2] < 0.2  # skipped at once, not after another OLLAMA_TIMEOUT_S
    assert skipped[0][1].kind == "circuit_open"
    assert analysis.source == "llm"  # the trial went through and closed the breaker
    assert len(ollama.requests) == 3  # two timeouts and the trial


def test_model_check_at_start_warns_once_and_opens_the_breaker(
    ollama: OllamaServer, caplog: pytest.LogCaptureFixture
) -> None:
    config = settings(OLLAMA_URL=ollama.url, OLLAMA_MODEL="mistral:7b")

    async def run() -> tuple[str | None, str | None, Any]:
        guard = LLMGuard.from_settings(config)
        async with OllamaClient(config, guard=guard) as a, \
                OllamaClient(config, guard=guard) as b:
            first = await a.guard.check_model(a)
            second = await b.guard.check_model(b)  # another actor of the same worker
            _, reason = await analyze_or_fallback(b, factories.incident())
            return first, second, reason

    with caplog.at_level(logging.WARNING, logger=OLLAMA_LOGGER):
        first, second, reason = asyncio.run(run())
    assert first is not None and "ollama pull mistral:7b" in first
    assert "llama3:latest" in first  # what is pulled
    assert second is None
    assert reason.kind == "circuit_open"
    assert ollama.requests == []  # no chat call was wasted on a missing model
    warnings = [r for r in caplog.records if "has no model" in r.getMessage()]
    assert len(warnings) == 1


def test_model_check_passes_for_a_pulled_model_and_survives_an_unreachable_ollama(
    ollama: OllamaServer,
) -> None:
    async def check(url: str, model: str) -> tuple[str | None, str]:
        config = settings(OLLAMA_URL=url, OLLAMA_MODEL=model)
        async with OllamaClient(config) as client:
            return await client.guard.check_model(client), client.guard.breaker.state

    assert asyncio.run(check(ollama.url, "llama3")) == (None, "closed")  # tag :latest implied
    message, state = asyncio.run(check(f"http://127.0.0.1:{free_port()}", "llama3"))
    assert message is not None and "could not check the Ollama model list" in message
    assert state == "closed"  # not known to be missing: analyses still try


# --- one warning per episode ----------------------------------------------------------


def test_the_fallback_warning_is_logged_once_per_reason_until_ollama_answers_again(
    ollama: OllamaServer, caplog: pytest.LogCaptureFixture
) -> None:
    ollama.error = (500, "llama runner process has terminated: signal: killed")
    config = settings(OLLAMA_URL=ollama.url)

    async def run() -> None:
        async with OllamaClient(config) as client:
            await analyse_n(client, 5)
            ollama.error = None
            await analyse_n(client, 1)
            ollama.error = (500, "llama runner process has terminated again")
            await analyse_n(client, 2)

    with caplog.at_level(logging.DEBUG, logger=OLLAMA_LOGGER):
        asyncio.run(run())
    warnings = [r.getMessage() for r in caplog.records
                if r.name == OLLAMA_LOGGER and r.levelno == logging.WARNING]
    assert len(warnings) == 2  # the first of each episode
    assert "llama runner process has terminated: signal: killed" in warnings[0]
    assert "autopilot_llm_fallbacks_total" in warnings[0]
    recovered = [r.getMessage() for r in caplog.records if "works again" in r.getMessage()]
    assert len(recovered) == 1 and "http ×5" in recovered[0]


# --- streamed answers -----------------------------------------------------------------


def test_a_streamed_ndjson_answer_is_joined_not_blamed_on_ollama_url() -> None:
    with StreamingOllamaServer(chunks=5) as server:
        config = settings(OLLAMA_URL=server.url)

        async def run() -> tuple[Analysis, Any]:
            async with OllamaClient(config) as client:
                return await analyze_or_fallback(client, factories.incident())

        analysis, reason = asyncio.run(run())
    assert reason is None
    assert analysis.source == "llm"
    assert "connection pool" in analysis.root_cause.description


def test_a_cut_off_stream_says_so() -> None:
    with StreamingOllamaServer(chunks=5, cut=2) as server:
        config = settings(OLLAMA_URL=server.url)

        async def run() -> tuple[Analysis, Any]:
            async with OllamaClient(config) as client:
                return await analyze_or_fallback(client, factories.incident())

        analysis, reason = asyncio.run(run())
    assert analysis.source == "rules"
    assert reason.kind == "streaming"
    assert "streamed" in reason and "done" in reason
    assert "OLLAMA_URL" not in reason


# --- redaction: what Ollama receives --------------------------------------------------


def test_secrets_in_log_lines_never_reach_ollama(ollama: OllamaServer) -> None:
    secrets = ["AKIAIOSFODNN7EXAMPLE", "Tr0ub4dor3x",
               "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"]
    incident = factories.incident()
    leaky = [factories.log_entry(f"db postgres://orders:{secrets[1]}@db:5432 key={secrets[0]} "
                                 f"slack {secrets[2]}", at=incident.updated_at)]
    incident = incident.model_copy(update={"recent_errors": leaky})

    async def run() -> None:
        async with OllamaClient(settings(OLLAMA_URL=ollama.url)) as client:
            await analyze_or_fallback(client, incident)

    asyncio.run(run())
    sent = str(ollama.requests[0]["messages"])
    for secret in secrets:
        assert secret not in sent
    assert "[REDACTED:basic_auth_credentials]" in sent and "db postgres://orders:" in sent


# --- Slack: invalid_blocks → plain text -----------------------------------------------


@pytest.fixture
def slack_api() -> Iterator[SlackWebApiServer]:
    with SlackWebApiServer(token="xoxb-good-token", channels={"alerts": "C0ALERTS01"}) as server:
        yield server


def bot(slack_api: SlackWebApiServer, hooks: dict[str, list[str]]) -> SlackNotifier:
    config = settings(SLACK_BOT_TOKEN="xoxb-good-token", SLACK_CHANNEL="#alerts",
                      SLACK_API_URL=slack_api.base_url, SLACK_MAX_RETRIES="0")
    return SlackNotifier(config, on_refusal=hooks.setdefault("refusals", []).append,
                         on_plain_text=hooks.setdefault("plain", []).append)


def test_invalid_blocks_on_post_is_retried_once_as_plain_text(
    slack_api: SlackWebApiServer,
) -> None:
    hooks: dict[str, list[str]] = {}
    notifier = bot(slack_api, hooks)
    payload = blockkit.render_incident(factories.alert(), analysis_pending=False)
    slack_api.fail_method("chat.postMessage", "invalid_blocks")

    async def run() -> tuple[str, str]:
        async with notifier:
            return await notifier.post_message(
                payload, metadata={"event_type": "autopilot_incident",
                                   "event_payload": {"incident_id": "inc-checkout-1"}})

    channel, ts = asyncio.run(run())
    stored = slack_api.messages[ts]
    assert channel == "C0ALERTS01"
    assert stored["text"].startswith(blockkit.PLAIN_TEXT_NOTE)
    assert "checkout" in stored["text"] and "inc-checkout-1" in stored["text"]
    assert "blocks" not in stored and "attachments" not in stored
    assert stored["metadata"]["event_payload"]["incident_id"] == "inc-checkout-1"
    assert [m for m, _ in slack_api.calls] == ["chat.postMessage", "chat.postMessage"]
    assert hooks == {"refusals": ["invalid_blocks"], "plain": ["sent"]}
    assert notifier.plain_text_retries == 1


def test_invalid_blocks_format_on_update_replaces_the_old_blocks_with_plain_text(
    slack_api: SlackWebApiServer,
) -> None:
    hooks: dict[str, list[str]] = {}
    notifier = bot(slack_api, hooks)
    payload = blockkit.render_incident(factories.alert(), analysis_pending=False)

    async def run() -> str:
        async with notifier:
            channel, ts = await notifier.post_message(payload)
            slack_api.fail_method("chat.update", "invalid_blocks_format")
            await notifier.update_message(channel, ts, payload)
            return ts

    ts = asyncio.run(run())
    stored = slack_api.messages[ts]
    assert stored.get("edited") is True
    assert stored["text"].startswith(blockkit.PLAIN_TEXT_NOTE)
    assert "blocks" not in stored and "attachments" not in stored  # sent as [] to clear
    assert hooks == {"refusals": ["invalid_blocks_format"], "plain": ["sent"]}


def test_a_plain_text_retry_that_is_refused_too_gives_up_with_slacks_code(
    slack_api: SlackWebApiServer,
) -> None:
    hooks: dict[str, list[str]] = {}
    notifier = bot(slack_api, hooks)
    slack_api.fail_method("chat.postMessage", "invalid_blocks", n=2)

    async def run() -> None:
        async with notifier:
            await notifier.post_message(blockkit.render_incident(factories.alert(),
                                                                 analysis_pending=True))

    with pytest.raises(AlertDeliveryError) as info:
        asyncio.run(run())
    assert info.value.code == "invalid_blocks"
    assert len(slack_api.calls) == 2  # once formatted, once plain: no loop
    assert hooks == {"refusals": ["invalid_blocks"], "plain": ["refused"]}


def test_other_refusals_are_not_retried_as_plain_text(slack_api: SlackWebApiServer) -> None:
    hooks: dict[str, list[str]] = {}
    notifier = bot(slack_api, hooks)
    slack_api.fail_method("chat.postMessage", "channel_not_found")

    async def run() -> None:
        async with notifier:
            await notifier.post_message({"text": "x", "blocks": [
                {"type": "section", "text": {"type": "mrkdwn", "text": "x"}}]})

    with pytest.raises(AlertDeliveryError) as info:
        asyncio.run(run())
    assert info.value.code == "channel_not_found"
    assert len(slack_api.calls) == 1 and hooks == {"refusals": [], "plain": []}


def test_webhook_invalid_blocks_is_retried_once_as_plain_text(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Slack's incoming webhooks answer 400 with the plain-text body "invalid_blocks".
    monkeypatch.setitem(standins.WEBHOOK_FAILURES, "invalid_blocks", (400, "invalid_blocks", {}))
    hooks: dict[str, list[str]] = {}
    with SlackWebhookServer() as webhook:
        webhook.fail_next(1, "invalid_blocks")
        notifier = SlackNotifier(settings(SLACK_WEBHOOK_URL=webhook.url, SLACK_MAX_RETRIES="0"),
                                 on_refusal=hooks.setdefault("refusals", []).append,
                                 on_plain_text=hooks.setdefault("plain", []).append)

        async def run() -> None:
            async with notifier:
                await notifier.send_webhook(blockkit.render_webhook(
                    factories.alert(), "opened", analysis_pending=False))

        asyncio.run(run())
        assert webhook.attempts == 2
        (sent,) = webhook.requests
    assert sent["text"].startswith(blockkit.PLAIN_TEXT_NOTE)
    assert "blocks" not in sent and "attachments" not in sent
    assert hooks == {"refusals": ["invalid_blocks"], "plain": ["sent"]}
