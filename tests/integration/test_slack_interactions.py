"""Slack buttons against a real worker (issue 14): interaction payloads built the way
Slack builds them (form-encoded ``payload`` JSON of ``type: block_actions``, signed
with HMAC-SHA256 of ``v0:{timestamp}:{body}``) are POSTed to ``/slack/interactions``;
each action edits the root message and replies in the thread of the Slack Web API
stand-in, and has its effect (silence, manual resolve, feedback); a bad signature, a
stale timestamp, no signature or a replayed request is a 401 and changes nothing; the
same click signed anew is applied once. ``AUTOPILOT_API_KEYS`` is set: the path needs no key."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from autopilot.blockkit import (
    ACTION_ACKNOWLEDGE,
    ACTION_NOT_AN_INCIDENT,
    ACTION_RESOLVE,
    ACTION_SILENCE,
)
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
from tests.standins import RedisServer, SlackWebApiServer

pytestmark = pytest.mark.integration

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
KEY = "interactions-test-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
USER = {"id": "U0ALICE42", "username": "alice", "name": "alice", "team_id": "T0STANDIN"}


def sign(body: str, timestamp: int, secret: str = SECRET) -> dict[str, str]:
    base = f"v0:{timestamp}:{body}".encode()
    digest = hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {"X-Slack-Signature": f"v0={digest}", "X-Slack-Request-Timestamp": str(timestamp),
            "Content-Type": "application/x-www-form-urlencoded"}


def block_actions(root: dict[str, Any], action_id: str, action_ts: str,
                  option: str | None = None) -> str:
    """The form body Slack POSTs for a click on ``action_id`` of the root message."""
    (actions,) = [b for b in root["blocks"] if b["type"] == "actions"]
    (element,) = [e for e in actions["elements"] if e["action_id"] == action_id]
    action: dict[str, Any] = {"action_id": action_id, "block_id": actions["block_id"],
                              "type": element["type"], "action_ts": action_ts}
    if element["type"] == "button":
        action |= {"value": element["value"], "text": element["text"]}
    else:
        (chosen,) = [o for o in element["options"]
                     if option in (json.loads(o["value"]).get("silence"),
                                   json.loads(o["value"]).get("feedback"))]
        action |= {"selected_option": chosen, "placeholder": element["placeholder"]}
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": USER,
        "api_app_id": SlackWebApiServer.APP_ID,
        "token": "legacy-verification-token",
        "container": {"type": "message", "message_ts": root["ts"],
                      "channel_id": root["channel"], "is_ephemeral": False},
        "trigger_id": "13345224609.738474920.8088930838d88f008e0",
        "team": {"id": "T0STANDIN", "domain": "standin"},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": root["channel"], "name": "alerts"},
        "message": {k: root[k] for k in ("type", "ts", "text", "blocks") if k in root},
        "state": {"values": {}},
        "response_url": "https://hooks.slack.com/actions/T0STANDIN/1/abc",
        "actions": [action],
    }
    return urlencode({"payload": json.dumps(payload)})


def click(worker: Worker, body: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(f"{worker.url}/slack/interactions", content=body.encode(),
                      headers=headers if headers is not None else sign(body, int(time.time())),
                      timeout=10)


def root_of(slack: SlackWebApiServer, service: str) -> dict[str, Any] | None:
    for m in slack.top_level():
        if (m.get("metadata") or {}).get("event_payload", {}).get("service") == service:
            return m
    return None


def text(payload: Any) -> str:
    return json.dumps(payload, ensure_ascii=False)


def replies_saying(slack: SlackWebApiServer, ts: str, words: str) -> list[dict[str, Any]]:
    return [m for m in slack.thread(ts) if words in text(m)]


def test_each_button_edits_the_message_replies_and_acts_once(
    broker: BrokerUnderTest, start_worker: Callable[..., Worker], redis_server: RedisServer
) -> None:
    services = ["btn-ack", "btn-silence", "btn-resolve", "btn-dismiss"]
    with SlackWebApiServer() as slack:
        worker = start_worker({
            "SLACK_BOT_TOKEN": slack.token, "SLACK_CHANNEL": "alerts",
            "SLACK_API_URL": slack.base_url, "SLACK_SIGNING_SECRET": SECRET,
            "REDIS_URL": redis_server.url, "AUTOPILOT_API_KEYS": KEY,
            "AUTOPILOT_SLACK_CHARTS": "false", "AUTOPILOT_REPEAT_INTERVAL_S": "3",
            "OLLAMA_URL": f"http://127.0.0.1:{free_port()}", "OLLAMA_TIMEOUT_S": "2",
        })
        series = {s: metric_series(s, normal=12, spikes=1) for s in services}
        produce(broker.bootstrap, broker.topic("autopilot.metrics"),
                [(s.encode(), as_bytes(points[:-1])) for s, points in series.items()])
        wait_for(lambda: all(httpx.get(f"{worker.url}/baselines/{s}", headers=AUTH, timeout=10)
                             .json()["series"].get(f"{s}|latency_ms|", {})
                             .get("samples_seen") == 12 for s in services), 60,
                 "the normal samples applied")
        produce(broker.bootstrap, broker.topic("autopilot.metrics"),
                [(s.encode(), as_bytes(points[-1:])) for s, points in series.items()])
        roots = wait_for(lambda: all(root_of(slack, s) for s in services)
                         and {s: root_of(slack, s) for s in services}, 90,
                         "a root message per service")
        for root in roots.values():
            (actions,) = [b for b in root["blocks"] if b["type"] == "actions"]
            assert [e["action_id"] for e in actions["elements"]] == [
                ACTION_ACKNOWLEDGE, ACTION_SILENCE, ACTION_RESOLVE, ACTION_NOT_AN_INCIDENT]

        # --- refused: nothing changes ----------------------------------------------
        ack = roots["btn-ack"]
        body = block_actions(ack, ACTION_ACKNOWLEDGE, "1796000000.000100")
        now = int(time.time())
        calls_before = len(slack.calls)
        assert click(worker, body, sign(body, now, "not-the-secret")).status_code == 401
        assert click(worker, body, sign(body, now - 400)).status_code == 401  # stale
        assert click(worker, body, {"Content-Type": "application/x-www-form-urlencoded"}
                     ).status_code == 401
        tampered = body.replace("alice", "mallory")
        assert click(worker, tampered, {**sign(body, now)}).status_code == 401
        metrics = httpx.get(f"{worker.url}/metrics", headers=AUTH, timeout=10).text
        for reason, n in (("bad_signature", 2), ("stale", 1), ("unsigned", 1)):
            line = f'autopilot_slack_interactions_refused_total{{reason="{reason}"}} {n:.1f}'
            assert line in metrics, [x for x in metrics.splitlines() if "refused" in x]

        # --- Acknowledge, and the same request replayed ------------------------------
        signed = sign(body, int(time.time()))
        first = click(worker, body, signed)
        assert first.status_code == 200, first.text
        wait_for(lambda: "Acknowledged by <@U0ALICE42>" in text(slack.messages[ack["ts"]]),
                 30, "the root message acknowledged")
        wait_for(lambda: replies_saying(slack, ack["ts"], "Acknowledged by"), 30,
                 "the acknowledgement in the thread")
        replayed = click(worker, body, signed)  # the same signed request again
        assert replayed.status_code == 401 and "replayed" in replayed.text, replayed.text
        assert 'autopilot_slack_interactions_refused_total{reason="replayed"} 1.0' in httpx.get(
            f"{worker.url}/metrics", headers=AUTH, timeout=10).text
        # Signed anew (as a retry would be), the same click is taken and applied once.
        assert click(worker, body, sign(body, int(time.time()) + 1)).status_code == 200
        wait_for(lambda: 'autopilot_incident_actions_total{action="acknowledge",'
                 'outcome="duplicate"} 1.0' in httpx.get(
                     f"{worker.url}/metrics", headers=AUTH, timeout=10).text,
                 30, "the replay seen as a duplicate")
        assert len(replies_saying(slack, ack["ts"], "Acknowledged by")) == 1
        assert not any(m == "chat.postMessage" and "Acknowledged" in text(b)
                       for m, b in slack.calls[:calls_before])
        # reminders (every 3 s) stop once acknowledged
        assert_quiet_for(7, lambda: len(replies_saying(slack, ack["ts"], "Still firing")),
                         "reminders after the acknowledgement")

        # --- Silence until resolved, then Resolve -------------------------------------
        res = roots["btn-resolve"]
        r = click(worker, block_actions(res, ACTION_SILENCE, "1796000000.000200", "resolved"))
        assert r.status_code == 200, r.text
        wait_for(lambda: replies_saying(slack, res["ts"], "Silenced by"), 30,
                 "the silence in the thread")
        silences = httpx.get(f"{worker.url}/api/v2/silences", headers=AUTH, timeout=10).json()
        (until_resolved,) = [s for s in silences if s["matchers"][0]["value"] == "btn-resolve"]
        assert until_resolved["status"]["state"] == "active"
        assert until_resolved["createdBy"] == "slack:alice"
        assert click(worker, block_actions(res, ACTION_RESOLVE, "1796000000.000300")
                     ).status_code == 200
        wait_for(lambda: "RESOLVED" in text(slack.messages[res["ts"]]), 30,
                 "the root message resolved")
        wait_for(lambda: replies_saying(slack, res["ts"], "Resolved by"), 30,
                 "the resolve in the thread")
        view = httpx.get(f"{worker.url}/incidents/btn-resolve", headers=AUTH, timeout=10).json()
        assert view["open_incident"]["state"] == "resolved"
        assert view["open_incident"]["resolution"] == "manual"
        wait_for(lambda: httpx.get(f"{worker.url}/api/v2/silence/{until_resolved['id']}",
                                   headers=AUTH, timeout=10).json()["status"]["state"]
                 == "expired", 30, "the until-resolved silence expired at the resolve")

        # --- Silence 1 h -----------------------------------------------------------------
        sil = roots["btn-silence"]
        assert click(worker, block_actions(sil, ACTION_SILENCE, "1796000000.000400", "1h")
                     ).status_code == 200
        wait_for(lambda: "Silenced by <@U0ALICE42>" in text(slack.messages[sil["ts"]]), 30,
                 "the root message silenced")
        silences = httpx.get(f"{worker.url}/api/v2/silences", headers=AUTH, timeout=10).json()
        (hour,) = [s for s in silences if s["matchers"][0]["value"] == "btn-silence"]
        assert hour["status"]["state"] == "active"
        assert 3500 < (time.mktime(time.strptime(hour["endsAt"][:19], "%Y-%m-%dT%H:%M:%S"))
                       - time.mktime(time.strptime(hour["startsAt"][:19],
                                                   "%Y-%m-%dT%H:%M:%S"))) <= 3600

        # --- Not an incident ----------------------------------------------------------------
        dis = roots["btn-dismiss"]
        clicked = time.time()
        assert click(worker, block_actions(dis, ACTION_NOT_AN_INCIDENT, "1796000000.000500",
                                           "30d")).status_code == 200
        wait_for(lambda: replies_saying(slack, dis["ts"], "not an incident"), 30,
                 "the feedback in the thread")
        records = wait_for(lambda: httpx.get(f"{worker.url}/feedback/btn-dismiss",
                                             headers=AUTH, timeout=10).json()["feedback"],
                           30, "the feedback recorded")
        assert [(f["series"], f["user"], f["direction"]) for f in records] == [
            ("btn-dismiss|latency_ms|", "U0ALICE42", "up")]
        # "For 30 days": the feedback stops applying 30 days after the click.
        assert abs(records[0]["until"] - (clicked + 30 * 86400)) < 120, records[0]
        assert "Marked *not an incident* by <@U0ALICE42>" in text(slack.messages[dis["ts"]])
