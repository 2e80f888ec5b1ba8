"""The audit trail's pure core (autopilot.audit): events, redaction, stories."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from autopilot import redact
from autopilot.audit import (
    AuditEvent,
    analysis_event,
    feedback_event,
    format_story,
    human_action_event,
    incident_event,
    prompt_sha256,
    silence_event,
    slack_event,
)
from autopilot.models import TimelineEntry
from autopilot.silences import Silence, SilenceMatcher
from tests.factories import T0, analysis, deployment, incident

SLACK_BOT = "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"
SLACK_HOOK = "https://hooks.slack.com/services/T01ABCDEF/B01ABCDEF/abcdefghijklmnopqrstuvwx"
BEARER = "Bearer 4f9c2b7e1d8a6c3b5e0f"
API_KEY = "ap-key-7c1e9b2d4f6a8c0e"


def event(kind: str = "analysis", at: float = 1_700_000_000.0, **kw: Any) -> AuditEvent:
    fields: dict[str, Any] = {"incident_id": "inc-1", "service": "checkout", "kind": kind,
                              "actor": "autopilot", "summary": f"{kind} happened", "at": at}
    fields.update(kw)
    return AuditEvent(**fields)


def test_round_trip_through_json() -> None:
    e = event(detail={"channel": "C1", "ts": "1700000000.000100", "n": 3, "ok": True,
                      "nested": {"list": [1, 2.5, None]}})

    back = AuditEvent.from_json(e.to_json())

    assert back == e
    assert back.to_dict() == e.to_dict()


@pytest.mark.parametrize("data, field", [
    ({}, "incident_id"),
    ({"incident_id": "i", "service": "s", "kind": "k", "actor": "a", "summary": "x"}, "at"),
    ({"incident_id": "i", "service": "s", "kind": "k", "actor": "a", "summary": "x",
      "at": 1.0, "detail": [1]}, "detail"),
    ({"incident_id": 5, "service": "s", "kind": "k", "actor": "a", "summary": "x",
      "at": 1.0}, "incident_id"),
])
def test_from_dict_names_the_bad_field(data: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        AuditEvent.from_dict(data)


def test_from_json_refuses_what_is_not_json() -> None:
    with pytest.raises(ValueError, match="not JSON"):
        AuditEvent.from_json(b"\xff{")


def test_to_dict_redacts_secrets_in_summary_actor_and_nested_detail() -> None:
    before = redact.redactor()
    try:
        redact.configure([API_KEY])
        e = event(
            summary=f"log line: auth failed token={SLACK_BOT} with {API_KEY}",
            actor=f"user {API_KEY}",
            detail={
                "log": f"GET /api Authorization: {BEARER}",
                "hook": {"url": SLACK_HOOK, "headers": [f"Authorization: {BEARER}"]},
                API_KEY: "key as a key",
            },
        )

        text = json.dumps(e.to_dict())
        raw = e.to_json().decode()
    finally:
        redact._current[0] = before

    for secret in (SLACK_BOT, SLACK_HOOK, "4f9c2b7e1d8a6c3b5e0f", API_KEY):
        assert secret not in text
        assert secret not in raw
    assert "[REDACTED:slack_token]" in text
    assert "[REDACTED:authorization]" in text
    assert "[REDACTED:configured]" in text


def test_format_story_orders_by_time_and_names_incident_and_messages() -> None:
    events = [
        event("slack.edited", at=30.0, summary="edited", detail={"channel": "C9", "ts": "1.5"}),
        event("incident.opened", at=10.0, summary="opened: critical anomaly"),
        event("analysis", at=20.0, incident_id="other", summary="not mine"),
        event("slack.posted", at=20.0, summary="posted", detail={"channel": "C9", "ts": "1.5"}),
        event("analysis", at=20.0, summary="llm analysis"),  # same time: topic order kept
        event("action.human", at=40.0, actor="alice", summary="acknowledged by alice"),
    ]

    lines = format_story("inc-1", events)

    assert lines[0].startswith("incident inc-1 (service checkout): 5 decisions")
    kinds = [line.split()[1] for line in lines[1:6]]
    assert kinds == ["incident.opened", "slack.posted", "analysis", "slack.edited",
                     "action.human"]
    assert lines[1].startswith("1970-01-01T00:00:10.000Z")
    assert "[C9 1.5]" in lines[2]
    assert "alice" in lines[5]
    assert lines[-1] == "slack messages: C9 1.5"
    assert not any("not mine" in line for line in lines)


def test_format_story_of_an_unknown_incident_is_empty() -> None:
    assert format_story("nope", [event()]) == []


def test_incident_event_is_derived_from_the_new_timeline_entries() -> None:
    opened = TimelineEntry(at=T0, kind="opened", text="opened: critical anomaly on latency")
    escalated = TimelineEntry(at=T0 + timedelta(minutes=1), kind="escalated",
                              text="escalated to critical")
    inc = incident(revision=2, timeline=[opened, escalated],
                   deployments=[deployment("v2.4.0")])

    e = incident_event(inc, (opened,), at=5.0)

    assert e.kind == "incident.updated"
    assert e.summary == "escalated to critical"
    assert e.detail["rule"] == inc.trigger_reason
    assert [c["kind"] for c in e.detail["changes"]] == ["escalated"]
    assert e.detail["deployments"][0]["version"] == "v2.4.0"
    first = incident_event(incident(timeline=[opened]), (), at=1.0)
    assert (first.kind, first.summary) == ("incident.opened", opened.text)
    resolved = incident_event(incident(revision=3, status="resolved", timeline=[opened]),
                              (opened,), at=9.0, actor="@alice")
    assert (resolved.kind, resolved.actor) == ("incident.resolved", "@alice")


def test_analysis_event_records_source_model_latency_hash_and_grounding_unchecked() -> None:
    messages = [{"role": "user", "content": "why?"}]
    e = analysis_event(incident(), analysis(), latency_s=1.234, prompt_hash=prompt_sha256(
        messages), model="llama3", fallback_reason=None, used=True, at=1.0)

    assert e.detail["source"] == "llm"
    assert e.detail["latency_ms"] == 1234.0
    assert len(e.detail["prompt_sha256"]) == 64
    assert e.detail["grounded"] is None
    assert e.detail["used"] is True
    assert prompt_sha256(messages) != prompt_sha256([{"role": "user", "content": "why"}])
    rules = analysis_event(incident(), analysis(source="rules"), latency_s=0.5,
                           prompt_hash=None, model="llama3", fallback_reason="timeout",
                           used=True, at=1.0)
    assert "rules analysis (LLM llama3: timeout)" in rules.summary


def test_slack_human_and_silence_events_carry_channel_ts_and_user() -> None:
    inc = incident()
    posted = slack_event(inc, "slack.posted", "posted", channel="C1", ts="17.1", at=1.0)
    click = human_action_event(incident_id=inc.id, service=inc.service, kind="acknowledge",
                               user_id="U1", user_name="alice", note=None, channel="C1",
                               ts="17.1", at=2.0)
    silence = Silence(id="s-1", matchers=(SilenceMatcher("service", "checkout"),),
                      starts_at=0.0, ends_at=3600.0, created_by="slack:alice", comment="c",
                      updated_at=0.0)
    held = silence_event(silence, incident_id=inc.id, service=inc.service, change="created",
                         actor="alice", at=3.0)

    assert posted.detail == {"channel": "C1", "ts": "17.1"}
    assert (click.actor, click.summary) == ("alice", "acknowledged by alice")
    assert 'service="checkout"' in held.summary
    assert format_story(inc.id, [posted, click, held])[-1] == "slack messages: C1 17.1"


def test_feedback_event_names_incident_series_and_user() -> None:
    from autopilot.feedback import Feedback

    fb = Feedback(series="checkout|latency_ms|", service="checkout", direction="up",
                  z_score=7.25, user="U0ALICE42", recorded_at=1.0, incident="inc-1")

    e = feedback_event(fb, at=2.0)

    assert (e.incident_id, e.kind, e.actor) == ("inc-1", "feedback", "U0ALICE42")
    assert "checkout|latency_ms| (up, |z| 7.2), for good" in e.summary


class _FailingTopic:
    """A topic whose broker never acknowledges (what a send to a dead broker does)."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.sent: list[tuple[bytes, bytes]] = []

    async def maybe_declare(self) -> None:
        return None

    async def send(self, *, key: bytes, value: bytes) -> Any:
        self.sent.append((key, value))
        raise self.error


def test_emit_never_raises_into_the_decision_and_counts_the_failure(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    import asyncio

    from autopilot.agents import audit as agent

    topic = _FailingTopic(ConnectionError("broker gone"))
    monkeypatch.setattr(agent, "audit_topic", topic)
    monkeypatch.setattr(agent, "_declared", [False])
    failed = agent.AUDIT_EVENTS.labels(kind="analysis", outcome="failed")
    before = failed._value.get()

    asyncio.run(agent.emit(event(summary=f"token {SLACK_BOT}")))

    assert failed._value.get() == before + 1
    ((key, value),) = topic.sent
    assert key == b"inc-1" and SLACK_BOT.encode() not in value
    assert "analysis of incident inc-1 not recorded (ConnectionError)" in caplog.text
    assert SLACK_BOT not in caplog.text


def test_cli_says_in_one_line_when_the_broker_cannot_be_reached() -> None:
    import os
    import subprocess
    import sys

    from tests.standins import free_port

    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOPILOT_")}
    env["AUTOPILOT_BROKER"] = f"kafka://127.0.0.1:{free_port()}"  # nothing listens there
    done = subprocess.run([sys.executable, "-m", "autopilot", "audit", "inc-1",
                           "--timeout", "10"], env=env, capture_output=True, text=True,
                          timeout=60)

    assert done.returncode == 1
    assert done.stdout == ""
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"audit: cannot reach the broker ({env['AUTOPILOT_BROKER']})")
