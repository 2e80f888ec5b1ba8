"""Approved actions against a real worker (issue 15, docs/actions.md): an incident with
a deployment among its evidence gets a "Roll back to <previous version>" button; a
click signed as Slack signs it from someone who is not an approver is refused
ephemerally (``chat.postEphemeral``) and runs nothing; an approver's click — clicked
twice, and once more by a member of the approvers' user group — calls the webhook
exactly once, and its result and the "already requested" notes go to the thread."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from tests.hook_standins import WebhookReceiver
from tests.integration.conftest import (
    BrokerUnderTest,
    Worker,
    as_bytes,
    assert_quiet_for,
    free_port,
    metric_series,
    produce,
    wait_for,
)
from tests.integration.test_slack_interactions import SECRET, root_of, sign, text
from tests.standins import RedisServer, SlackWebApiServer

pytestmark = pytest.mark.integration

SERVICE = "act-roll"
ALICE = {"id": "U0ALICE42", "username": "alice", "name": "alice", "team_id": "T0STANDIN"}
MALLORY = {"id": "U0MALLORY", "username": "mallory", "name": "mallory",
           "team_id": "T0STANDIN"}
CAROL = {"id": "U0CAROL77", "username": "carol", "name": "carol", "team_id": "T0STANDIN"}


def hook_click(root: dict[str, Any], action_id: str, action_ts: str,
               user: dict[str, str]) -> str:
    """The form body Slack POSTs when ``user`` confirms the button ``action_id``."""
    (actions,) = [b for b in root["blocks"] if b["type"] == "actions"]
    (element,) = [e for e in actions["elements"] if e["action_id"] == action_id]
    payload: dict[str, Any] = {
        "type": "block_actions", "user": user, "api_app_id": SlackWebApiServer.APP_ID,
        "token": "legacy-verification-token",
        "container": {"type": "message", "message_ts": root["ts"],
                      "channel_id": root["channel"], "is_ephemeral": False},
        "trigger_id": "13345224609.738474920.8088930838d88f008e0",
        "team": {"id": "T0STANDIN", "domain": "standin"}, "enterprise": None,
        "is_enterprise_install": False, "channel": {"id": root["channel"], "name": "alerts"},
        "message": {k: root[k] for k in ("type", "ts", "text", "blocks") if k in root},
        "state": {"values": {}},
        "response_url": "https://hooks.slack.com/actions/T0STANDIN/1/abc",
        "actions": [{"action_id": action_id, "block_id": actions["block_id"],
                     "type": "button", "value": element["value"], "text": element["text"],
                     "confirm": element["confirm"], "action_ts": action_ts}],
    }
    return urlencode({"payload": json.dumps(payload)})


def post(worker: Worker, body: str) -> httpx.Response:
    return httpx.post(f"{worker.url}/slack/interactions", content=body.encode(),
                      headers=sign(body, int(time.time())), timeout=10)


def test_rollback_button_runs_the_webhook_once_for_approvers_only(
    broker: BrokerUnderTest, start_worker: Callable[..., Worker], redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    with SlackWebApiServer() as slack, WebhookReceiver() as hook:
        slack.usergroups["S0SRE"] = ["U0CAROL77"]
        token = tmp_path / "hook-token"
        token.write_text("hook-bearer-s3cret\n")
        actions = tmp_path / "actions.yaml"
        actions.write_text(
            "actions:\n"
            "  - name: rollback\n"
            "    services: [\"act-*\"]\n"
            "    approvers: {users: [U0ALICE42], usergroup: S0SRE}\n"
            f"    hook:\n      webhook: {{url: \"{hook.url}\", token_file: \"{token}\"}}\n")
        worker = start_worker({
            "SLACK_BOT_TOKEN": slack.token, "SLACK_CHANNEL": "alerts",
            "SLACK_API_URL": slack.base_url, "SLACK_SIGNING_SECRET": SECRET,
            "REDIS_URL": redis_server.url, "AUTOPILOT_SLACK_CHARTS": "false",
            "AUTOPILOT_ACTIONS_FILE": str(actions),
            "OLLAMA_URL": f"http://127.0.0.1:{free_port()}", "OLLAMA_TIMEOUT_S": "2",
        })
        points = metric_series(SERVICE, normal=12, spikes=1)
        start = points[0]["timestamp"]
        for version, at in (("v1.4.0", start - 7200), ("v1.5.0", start + 100)):
            r = worker.post("/ingest/deployment", json={
                "timestamp": at, "service": SERVICE, "version": version})
            assert r.status_code in (200, 202), r.text
        wait_for(lambda: len(worker.get(f"/deployments/{SERVICE}").json()["deployments"])
                 == 2, 30, "both deployments applied")
        produce(broker.bootstrap, broker.topic("autopilot.metrics"),
                [(SERVICE.encode(), as_bytes(points[:-1]))])
        wait_for(lambda: worker.get(f"/baselines/{SERVICE}").json()["series"]
                 .get(f"{SERVICE}|latency_ms|", {}).get("samples_seen") == 12, 60,
                 "the normal samples applied")
        produce(broker.bootstrap, broker.topic("autopilot.metrics"),
                [(SERVICE.encode(), as_bytes(points[-1:]))])
        root = wait_for(lambda: (m := root_of(slack, SERVICE)) and "incident_hook_rollback"
                        in text(m) and m, 90, "a root message with the rollback button")
        (actions_block,) = [b for b in root["blocks"] if b["type"] == "actions"]
        (button,) = [e for e in actions_block["elements"]
                     if e["action_id"] == "incident_hook_rollback"]
        assert button["text"]["text"] == "Roll back to v1.4.0"
        assert button["confirm"]["confirm"]["text"] == "Run it"

        # --- not an approver: refused ephemerally, nothing runs -----------------------
        r = post(worker, hook_click(root, "incident_hook_rollback", "1796000000.000100",
                                    MALLORY))
        assert r.status_code == 200, r.text
        refusal = wait_for(lambda: slack.ephemerals, 15, "the ephemeral refusal")
        assert refusal[0]["user"] == "U0MALLORY" and refusal[0]["channel"] == root["channel"]
        assert "Only the approvers of rollback" in refusal[0]["text"]
        assert ("usergroups.users.list", {"usergroup": "S0SRE"}) in [
            (m, {k: v for k, v in a.items() if k == "usergroup"}) for m, a in slack.calls]

        # --- an approver double-clicks; a user group member clicks too ----------------
        for ts, user in (("1796000000.000200", ALICE), ("1796000000.000300", ALICE),
                         ("1796000000.000400", CAROL)):
            assert post(worker, hook_click(root, "incident_hook_rollback", ts, user)
                        ).status_code == 200
        wait_for(lambda: hook.calls, 30, "the webhook called")
        wait_for(lambda: len([m for m in slack.thread(root["ts"])
                              if "already requested by alice" in text(m)]) == 2, 30,
                 "both later clicks told it was already requested")
        assert_quiet_for(3, lambda: len(hook.calls), "more webhook calls")
        ((headers, body),) = hook.calls
        assert headers["Authorization"] == "Bearer hook-bearer-s3cret"
        assert body["action"] == "rollback" and body["service"] == SERVICE
        assert (body["from_version"], body["to_version"]) == ("v1.5.0", "v1.4.0")
        assert body["approver"] == "alice" and body["incident_id"]
        done = [m for m in slack.thread(root["ts"]) if "done: HTTP 200: ok" in text(m)]
        assert len(done) == 1, [text(m) for m in slack.thread(root["ts"])]
        assert len(slack.ephemerals) == 1
        assert "hook-bearer-s3cret" not in worker.log_text()
