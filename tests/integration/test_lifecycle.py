"""The incident lifecycle end to end: one failure is one Slack conversation.

A real worker on a real broker, a real redis-server, an Ollama stand-in that answers
after ``group_wait`` and a Slack stand-in speaking the Web API (``chat.postMessage``
with and without ``thread_ts``, ``chat.update``, ``conversations.history``, file
uploads) or an incoming webhook. The failure's logs lag its metrics by a few seconds,
as a log shipper's do.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.factories import log, metric
from tests.integration.conftest import (
    WARM,
    BrokerUnderTest,
    Worker,
    as_bytes,
    assert_quiet_for,
    produce,
    wait_for,
)
from tests.standins import OllamaServer, RedisServer, SlackWebApiServer, SlackWebhookServer

pytestmark = pytest.mark.integration

START = 1_700_000_000.0
STEP = 15.0
PATTERN = [100.0, 104.0, 96.0, 102.0, 98.0, 105.0, 95.0, 101.0, 99.0, 100.0]
FAILURE_SAMPLES = 8
ERROR_LINE = "checkout failed: database connection pool exhausted after 3000 ms"
VERSION = "v9.9.9"
LLM_ROOT_CAUSE = "exhausted the database connection pool"  # the stand-in's analysis


class Outage:
    """Warm-up, a failure (latency and errors), then a recovery, for one service."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.fail_at = START + WARM * STEP
        self.recover_at = self.fail_at + FAILURE_SAMPLES * STEP

    def warmup(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        metrics = [metric(self.service, PATTERN[i % 10], START + i * STEP) for i in range(WARM)]
        logs = [log(self.service, START + i * STEP + 1, "INFO", "GET /cart 200")
                for i in range(WARM)]
        return metrics, logs

    def deployment(self) -> dict[str, Any]:
        return {"timestamp": self.fail_at - 300, "service": self.service, "version": VERSION}

    def failure(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        metrics = [metric(self.service, 1500.0, self.fail_at + j * STEP)
                   for j in range(FAILURE_SAMPLES)]
        logs = [log(self.service, self.fail_at + j * STEP + k, "ERROR", ERROR_LINE)
                for j in range(FAILURE_SAMPLES) for k in range(4)]
        return metrics, logs

    def recovery(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        n = 40
        metrics = [metric(self.service, PATTERN[i % 10], self.recover_at + i * STEP)
                   for i in range(n)]
        logs = [log(self.service, self.recover_at + i * STEP + 1, "INFO", "GET /cart 200")
                for i in range(n)]
        return metrics, logs


def _send(broker: BrokerUnderTest, topic: str, service: str, items: list[dict[str, Any]]) -> None:
    produce(broker.bootstrap, broker.topic(topic),
            [(service.encode(), as_bytes(item)) for item in items])


def _top_level(slack: SlackWebApiServer) -> list[dict[str, Any]]:
    return [body for method, body in slack.calls
            if method == "chat.postMessage" and not body.get("thread_ts")]


def _replies(slack: SlackWebApiServer) -> list[dict[str, Any]]:
    return [body for method, body in slack.calls
            if method == "chat.postMessage" and body.get("thread_ts")]


def _text(payload: Any) -> str:
    return json.dumps(payload, ensure_ascii=False)


def _bot_env(slack: SlackWebApiServer, ollama: OllamaServer, redis_server: RedisServer,
             **extra: str) -> dict[str, str]:
    return {
        "SLACK_BOT_TOKEN": slack.token,
        "SLACK_CHANNEL": "alerts",
        "SLACK_API_URL": slack.base_url,
        "REDIS_URL": redis_server.url,
        "OLLAMA_URL": ollama.url,
        "AUTOPILOT_GROUP_WAIT_S": "8",
        "AUTOPILOT_GROUP_INTERVAL_S": "2",
        **extra,
    }


def _fail(broker: BrokerUnderTest, outage: Outage, lag_s: float = 3.0) -> None:
    metrics, logs = outage.failure()
    _send(broker, "autopilot.metrics", outage.service, metrics)
    time.sleep(lag_s)  # the log shipper's lag: the test's input, not a wait
    _send(broker, "autopilot.logs", outage.service, logs)


def _recover(broker: BrokerUnderTest, outage: Outage, lag_s: float = 3.0) -> None:
    metrics, logs = outage.recovery()
    _send(broker, "autopilot.metrics", outage.service, metrics)
    time.sleep(lag_s)
    _send(broker, "autopilot.logs", outage.service, logs)


def _warm(broker: BrokerUnderTest, worker: Worker, outage: Outage) -> None:
    metrics, logs = outage.warmup()
    _send(broker, "autopilot.metrics", outage.service, metrics)
    _send(broker, "autopilot.logs", outage.service, logs)
    r = worker.post("/ingest/deployment", json=outage.deployment())
    assert r.status_code == 202, r.text
    wait_for(lambda: worker.get(f"/baselines/{outage.service}").json()["series"]
             .get(f"{outage.service}|latency_ms|", {}).get("samples_seen") == WARM,
             60, "the warm-up applied")


def test_one_failure_is_one_conversation_posted_before_the_llm_and_ending_resolved(
    broker: BrokerUnderTest, start_worker: Callable[..., Worker], redis_server: RedisServer
) -> None:
    outage = Outage("cart")
    with SlackWebApiServer() as slack, OllamaServer(delay_s=20.0) as ollama:
        worker = start_worker(_bot_env(slack, ollama, redis_server))
        _warm(broker, worker, outage)
        _fail(broker, outage)
        (first,) = wait_for(lambda: _top_level(slack), 60, "the first message")
        # Posted at group_wait, before the LLM answered (it takes 20 s): the rule-based
        # analysis, marked pending, and the error lines that came 3 s after the metrics.
        assert not ollama.answered, "the first message waited for the LLM"
        first_text = _text(first)
        assert "LLM analysis pending" in first_text
        assert "connection pool exhausted" in first_text
        assert VERSION in first_text
        assert "FIRING" in first_text
        assert first["metadata"]["event_payload"]["service"] == "cart"

        _recover(broker, outage)
        ts = slack.top_level()[0]["ts"]

        def final_state() -> str | None:
            text = _text(slack.messages[ts])
            return text if "RESOLVED" in text and LLM_ROOT_CAUSE in text else None

        final = wait_for(final_state, 90, "the root message resolved with the LLM analysis")
        assert "connection pool exhausted" in final
        assert VERSION in final
        assert "pending" not in final

        # A wrongly re-posting notifier gets the chance to.
        assert_quiet_for(3, lambda: len(_top_level(slack)), "the number of root messages")
        assert len(_top_level(slack)) == 1, [_text(m)[:200] for m in _top_level(slack)]
        thread = slack.thread(ts)
        thread_text = _text(thread)
        assert LLM_ROOT_CAUSE in thread_text  # the analysis replied in the thread
        assert "resolved" in thread_text.lower()
        # A chart of the anomalous series, uploaded into the thread.
        charts = [u for u in slack.uploads if u.get("thread_ts") == ts]
        assert charts and charts[0]["content"][:8] == b"\x89PNG\r\n\x1a\n", slack.uploads
        posts_and_edits = [m for m, _ in slack.calls if m in ("chat.postMessage", "chat.update")]
        assert len(posts_and_edits) <= 10, posts_and_edits

        view = worker.get("/incidents/cart").json()
        incident = view["open_incident"]
        assert incident["state"] == "resolved"
        (notice,) = view["notifications"].values()
        assert notice["slack"] == {"channel": "C0ALERTS01", "ts": ts}
        assert notice["analysis"] == "llm"


def test_a_crash_between_the_post_and_its_record_posts_no_second_message(
    broker: BrokerUnderTest, start_worker: Callable[..., Worker], redis_server: RedisServer
) -> None:
    outage = Outage("basket")
    with SlackWebApiServer() as slack, OllamaServer() as ollama:
        env = _bot_env(slack, ollama, redis_server, AUTOPILOT_GROUP_WAIT_S="2")
        worker = start_worker(env, name="first")
        _warm(broker, worker, outage)
        # Slack stores the root message but answers only after the worker is gone:
        # the worker never learns the ts, and neither Redis nor the table records it.
        slack.delay_method("chat.postMessage", 30.0)
        _fail(broker, outage, lag_s=0.5)
        wait_for(lambda: slack.top_level(), 60, "the root message stored by Slack")
        worker.stop(signal.SIGKILL)
        slack.delay_method("chat.postMessage", 0.0)

        again = start_worker(env, name="second")
        wait_for(lambda: any(m == "conversations.history" for m, _ in slack.calls), 120,
                 "the restarted worker to search the channel history")
        _recover(broker, outage, lag_s=0.5)
        ts = slack.top_level()[0]["ts"]
        wait_for(lambda: "RESOLVED" in _text(slack.messages[ts]), 120,
                 "the adopted root message edited to resolved")
        assert len(slack.top_level()) == 1
        assert again.get("/incidents/basket").json()["open_incident"]["state"] == "resolved"


def test_webhook_mode_stays_within_the_message_cap(
    broker: BrokerUnderTest, start_worker: Callable[..., Worker], redis_server: RedisServer
) -> None:
    outage = Outage("wishlist")
    with SlackWebhookServer() as slack, OllamaServer(delay_s=6.0) as ollama:
        worker = start_worker({
            "SLACK_WEBHOOK_URL": slack.url,
            "REDIS_URL": redis_server.url,
            "OLLAMA_URL": ollama.url,
            "AUTOPILOT_GROUP_WAIT_S": "3",
            "AUTOPILOT_GROUP_INTERVAL_S": "1",
            "AUTOPILOT_MAX_WEBHOOK_MESSAGES": "3",
        })
        _warm(broker, worker, outage)
        _fail(broker, outage)
        wait_for(lambda: slack.requests, 60, "the first webhook message")
        _recover(broker, outage)
        wait_for(lambda: any("RESOLVED" in _text(r) for r in slack.requests), 90,
                 "the resolved message")
        wait_for(lambda: worker.get("/incidents/wishlist").json()["notifications"], 10,
                 "the notification state")
        # A notifier over its cap gets the chance to send more.
        assert_quiet_for(3, lambda: len(slack.requests) <= 3,
                         "whether the webhook messages stay within the cap of 3")
        assert len(slack.requests) <= 3, [_text(r)[:200] for r in slack.requests]
        incident_ids = {
            json.loads(_text(r)).get("text", "") for r in slack.requests
        }
        assert all("wishlist" in t for t in incident_ids)
