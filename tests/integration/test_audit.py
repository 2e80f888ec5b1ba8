"""The audit trail against a real worker (issue 15): a full incident (open → LLM
analysis → Acknowledge → Silence until resolved → Resolve, the clicks signed the way
Slack signs them) leaves its story on ``autopilot.audit``; ``autopilot audit <id>`` (a
subprocess reading the topic from the broker) prints it complete and in time order,
naming each Slack message it posted or edited, and neither the story nor the raw topic
holds a secret (the worker's Slack token, signing secret and API key; tokens the LLM
echoed from a log line). The worker created the topic with the configured retention.
An unknown incident exits non-zero with one line on stderr. The second test runs
open → LLM → Acknowledge → an approved rollback (a deployer's webhook stand-in, bearer
token from a file, an API key in the hook URL) → Resolve, and reads that story."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from autopilot.blockkit import (
    ACTION_ACKNOWLEDGE,
    ACTION_HOOK_PREFIX,
    ACTION_RESOLVE,
    ACTION_SILENCE,
)
from tests.integration.conftest import (
    REPO,
    BrokerUnderTest,
    Worker,
    as_bytes,
    consume_all,
    metric_series,
    produce,
    wait_for,
)
from tests.integration.test_slack_interactions import (
    SECRET,
    USER,
    block_actions,
    click,
    replies_saying,
    root_of,
    text,
)
from tests.standins import (
    OllamaServer,
    RedisServer,
    SlackWebApiServer,
    _ThreadedServer,
    default_analysis_content,
)

pytestmark = pytest.mark.integration

KEY = "audit-test-api-key-0123456789abcdef"
LEAKED_SLACK = "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"
LEAKED_BEARER = "4f9c2b7e1d8a6c3b5e0f7a9d"
SERVICE = "audit-checkout"


def audit_cli(broker: BrokerUnderTest, incident_id: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AUTOPILOT_", "SLACK_", "OLLAMA_", "REDIS_"))}
    env |= broker.worker_env()
    return subprocess.run([sys.executable, "-m", "autopilot", "audit", incident_id,
                           "--timeout", "20"], env=env, capture_output=True, text=True,
                          timeout=60, cwd=REPO)


def story_kinds(stdout: str) -> list[tuple[str, str]]:
    """(kind, line) of each decision line of a story."""
    out = []
    for line in stdout.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 3 and parts[0][:4].isdigit():
            out.append((parts[1], line))
    return out


def test_story_of_a_full_incident_is_complete_ordered_and_secret_free(
    broker: BrokerUnderTest, start_worker: Callable[..., Worker], redis_server: RedisServer
) -> None:
    content: dict[str, Any] = json.loads(default_analysis_content())
    content["root_cause"]["description"] = (
        f"Clients send a revoked token: the log says 'Authorization: Bearer {LEAKED_BEARER}' "
        f"and the bot token {LEAKED_SLACK} was rejected")
    with SlackWebApiServer() as slack, OllamaServer(content=json.dumps(content)) as ollama:
        worker = start_worker({
            "SLACK_BOT_TOKEN": slack.token, "SLACK_CHANNEL": "alerts",
            "SLACK_API_URL": slack.base_url, "SLACK_SIGNING_SECRET": SECRET,
            "REDIS_URL": redis_server.url, "AUTOPILOT_API_KEYS": KEY,
            "AUTOPILOT_SLACK_CHARTS": "false", "OLLAMA_URL": ollama.url,
            "OLLAMA_TIMEOUT_S": "20", "AUTOPILOT_AUDIT_RETENTION_DAYS": "3",
        })
        points = metric_series(SERVICE, normal=12, spikes=1)
        produce(broker.bootstrap, broker.topic("autopilot.metrics"),
                [(SERVICE.encode(), as_bytes(points[:-1]))])
        wait_for(lambda: samples_applied(worker), 60, "the normal samples applied")
        produce(broker.bootstrap, broker.topic("autopilot.metrics"),
                [(SERVICE.encode(), as_bytes(points[-1:]))])
        root = wait_for(lambda: root_of(slack, SERVICE), 90, "the incident's root message")
        incident_id = root["metadata"]["event_payload"]["incident_id"]
        wait_for(lambda: ollama.answered >= 1 and not any(
            words in text(slack.messages[root["ts"]])
            for words in ("analysis pending", "LLM unavailable")), 60,
            "the LLM's analysis in the message")

        assert click(worker, block_actions(root, ACTION_ACKNOWLEDGE, "1796000000.000100")
                     ).status_code == 200
        wait_for(lambda: replies_saying(slack, root["ts"], "Acknowledged by"), 30,
                 "the acknowledgement in the thread")
        assert click(worker, block_actions(root, ACTION_SILENCE, "1796000000.000150",
                                           "resolved")).status_code == 200
        wait_for(lambda: replies_saying(slack, root["ts"], "Silenced by"), 30,
                 "the silence in the thread")
        assert click(worker, block_actions(root, ACTION_RESOLVE, "1796000000.000200")
                     ).status_code == 200
        wait_for(lambda: "RESOLVED" in text(slack.messages[root["ts"]]), 30,
                 "the root message resolved")

        def complete() -> subprocess.CompletedProcess[str] | None:
            done = audit_cli(broker, incident_id)
            kinds = [k for k, _ in story_kinds(done.stdout)]
            return done if done.returncode == 0 and "incident.resolved" in kinds and (
                kinds.count("action.human") == 3) and kinds.count("silence") == 2 and (
                "analysis" in kinds) else None

        done = wait_for(complete, 60, "the whole story on the audit topic", interval_s=1.0)
        token = slack.token

    print(done.stdout)  # shown with -s or on failure
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"incident {incident_id} (service {SERVICE})")
    story = story_kinds(done.stdout)
    kinds = [k for k, _ in story]
    assert all(kind in kinds for kind in (
        "incident.opened", "analysis", "slack.posted", "slack.edited", "slack.replied",
        "action.human", "incident.resolved"))

    def first(kind: str, words: str = "") -> int:
        return next(i for i, (k, line) in enumerate(story) if k == kind and words in line)

    assert first("incident.opened") < first("slack.posted") < first("action.human",
                                                                      "acknowledged")
    assert first("incident.opened") < first("analysis") < first("action.human")
    assert first("action.human", "acknowledged") < first("silence", "created") < first(
        "action.human", "silenced") < first("action.human", "resolved by")
    assert first("incident.resolved") < first("silence", "expired")
    assert first("action.human", "resolved by") < first("incident.resolved")
    times = [line.split()[0] for _, line in story]
    assert times == sorted(times)
    analysis_line = story[first("analysis")][1]
    assert "llm analysis by llama3" in analysis_line
    assert "alice" in story[first("action.human", "acknowledged")][1]
    assert "@alice" in story[first("incident.resolved")][1]
    assert f"[{root['channel']} {root['ts']}]" in story[first("slack.posted")][1]
    assert f"[{root['channel']} {root['ts']}]" in story[first("slack.edited")][1]
    assert lines[-1] == f"slack messages: {root['channel']} {root['ts']}"

    raw = b"".join((r.value or b"") for r in consume_all(
        broker.bootstrap, broker.topic("autopilot.audit")))
    for secret in (token, SECRET, KEY, LEAKED_SLACK, LEAKED_BEARER):
        assert secret not in done.stdout
        assert secret.encode() not in raw
    assert b"[REDACTED:slack_token]" in raw

    # the worker created the topic with AUTOPILOT_AUDIT_RETENTION_DAYS as retention.ms
    assert topic_config(broker, broker.topic("autopilot.audit"))["retention.ms"] == str(
        3 * 86_400_000)  # the broker default is 7 days

    unknown = audit_cli(broker, "no-such-incident")
    assert unknown.returncode != 0
    assert unknown.stdout == ""
    assert unknown.stderr.strip().splitlines() == [
        "audit: unknown incident 'no-such-incident': no audit events name it"]


def samples_applied(worker: Worker, service: str = SERVICE) -> bool:
    """True once the worker applied the 12 normal samples of ``service``."""
    r = httpx.get(f"{worker.url}/baselines/{service}",
                  headers={"Authorization": f"Bearer {KEY}"}, timeout=10)
    return bool(r.status_code == 200 and r.json()["series"].get(
        f"{service}|latency_ms|", {}).get("samples_seen") == 12)


def topic_config(broker: BrokerUnderTest, topic: str) -> dict[str, str]:
    """The topic's configuration as the broker describes it (DescribeConfigs)."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    async def run() -> dict[str, str]:
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
        await admin.start()
        try:
            (response,) = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, topic)])
            (resource,) = response.resources
            return {entry[0]: entry[1] for entry in resource[4]}
        finally:
            await admin.close()

    return asyncio.run(run())


class Deployer(_ThreadedServer):
    """A deployer's rollback webhook: ``POST /rollback`` with the action's JSON and a
    bearer token; answers 200 ``{"message": "rolled back to <to_version>"}``, 401
    ``{"error": "bad token"}`` without the right token. ``requests``: (headers, body)."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token
        self.requests: list[tuple[dict[str, str], dict[str, Any]]] = []

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/rollback", self._rollback)
        return app

    async def _rollback(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append((dict(request.headers), body))
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.json_response({"error": "bad token"}, status=401)
        return web.json_response({"message": f"rolled back to {body['to_version']}"})


DEPLOYER_TOKEN = "dpl-5b1f0c9e7a3d4b2c8e6f1a0d"
HOOK_API_KEY = "hk-91c3e5a7b9d1f3e5a7c9"
ROLLBACK_SERVICE = "audit-rollback"


def test_story_with_an_approved_rollback_is_complete_ordered_and_secret_free(
    broker: BrokerUnderTest, start_worker: Callable[..., Worker], redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    service = ROLLBACK_SERVICE
    token_file = tmp_path / "deployer_token"
    token_file.write_text(DEPLOYER_TOKEN + "\n")
    with SlackWebApiServer() as slack, OllamaServer() as ollama, \
            Deployer(DEPLOYER_TOKEN) as deployer:
        actions_file = tmp_path / "actions.yaml"
        actions_file.write_text(
            "actions:\n"
            "  - name: rollback\n"
            f"    services: [{service}]\n"
            f"    approvers: {{users: [{USER['id']}]}}\n"
            "    hook:\n"
            "      webhook:\n"
            f"        url: {deployer.base}/rollback?api_key={HOOK_API_KEY}\n"
            f"        token_file: {token_file}\n")
        worker = start_worker({
            "SLACK_BOT_TOKEN": slack.token, "SLACK_CHANNEL": "alerts",
            "SLACK_API_URL": slack.base_url, "SLACK_SIGNING_SECRET": SECRET,
            "REDIS_URL": redis_server.url, "AUTOPILOT_API_KEYS": KEY,
            "AUTOPILOT_SLACK_CHARTS": "false", "OLLAMA_URL": ollama.url,
            "OLLAMA_TIMEOUT_S": "20", "AUTOPILOT_ACTIONS_FILE": str(actions_file),
        })
        points = metric_series(service, normal=12, spikes=1)
        deployments = [
            {"timestamp": points[0]["timestamp"] - 3600, "service": service,
             "version": "v1.4.0"},
            {"timestamp": points[-1]["timestamp"] - 60, "service": service,
             "version": "v1.5.0", "metadata": {"previous_version": "v1.4.0"}},
        ]
        produce(broker.bootstrap, broker.topic("autopilot.deployments"),
                [(service.encode(), as_bytes(deployments))])
        produce(broker.bootstrap, broker.topic("autopilot.metrics"),
                [(service.encode(), as_bytes(points[:-1]))])
        wait_for(lambda: samples_applied(worker, service) and "v1.5.0" in httpx.get(
            f"{worker.url}/deployments/{service}", headers={"Authorization": f"Bearer {KEY}"},
            timeout=10).text, 60, "the normal samples and the deployments applied")
        produce(broker.bootstrap, broker.topic("autopilot.metrics"),
                [(service.encode(), as_bytes(points[-1:]))])
        root = wait_for(lambda: root_of(slack, service), 90, "the incident's root message")
        incident_id = root["metadata"]["event_payload"]["incident_id"]
        wait_for(lambda: ollama.answered >= 1 and not any(
            words in text(slack.messages[root["ts"]])
            for words in ("analysis pending", "LLM unavailable")), 60,
            "the LLM's analysis in the message")
        root = slack.messages[root["ts"]]
        assert "Roll back to v1.4.0" in text(root)

        assert click(worker, block_actions(root, ACTION_ACKNOWLEDGE, "1796000000.000100")
                     ).status_code == 200
        wait_for(lambda: replies_saying(slack, root["ts"], "Acknowledged by"), 30,
                 "the acknowledgement in the thread")
        root = slack.messages[root["ts"]]
        assert click(worker, block_actions(root, ACTION_HOOK_PREFIX + "rollback",
                                           "1796000000.000150")).status_code == 200
        wait_for(lambda: deployer.requests and replies_saying(slack, root["ts"], "rolled back"),
                 30, "the rollback's result in the thread")
        assert click(worker, block_actions(root, ACTION_RESOLVE, "1796000000.000200")
                     ).status_code == 200
        wait_for(lambda: "RESOLVED" in text(slack.messages[root["ts"]]), 30,
                 "the root message resolved")

        def complete() -> subprocess.CompletedProcess[str] | None:
            done = audit_cli(broker, incident_id)
            kinds = [k for k, _ in story_kinds(done.stdout)]
            return done if done.returncode == 0 and "incident.resolved" in kinds and (
                "action.result" in kinds) else None

        done = wait_for(complete, 60, "the whole story on the audit topic", interval_s=1.0)
        token = slack.token

    print(done.stdout)  # shown with -s or on failure
    (headers, body), = deployer.requests
    assert body["to_version"] == "v1.4.0" and body["incident_id"] == incident_id
    story = story_kinds(done.stdout)

    def first(kind: str, words: str = "") -> int:
        return next(i for i, (k, line) in enumerate(story) if k == kind and words in line)

    assert first("incident.opened") < first("analysis") < first("action.human",
                                                                 "acknowledged")
    assert first("incident.opened") < first("slack.posted") < first("action.human",
                                                                     "acknowledged")
    assert first("action.human", "acknowledged") < first("action.requested") < first(
        "action.result") < first("action.human", "resolved by") < first("incident.resolved")
    assert "v1.4.0" in story[first("action.requested")][1]
    raw = b"".join((r.value or b"") for r in consume_all(
        broker.bootstrap, broker.topic("autopilot.audit")))
    for secret in (token, SECRET, KEY, DEPLOYER_TOKEN, HOOK_API_KEY):
        assert secret not in done.stdout
        assert secret.encode() not in raw
