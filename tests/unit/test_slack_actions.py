"""The pure side of the Slack buttons (issue 14): payload → IncidentAction, the manual
resolve, the notifier's action notes (answered at once, reminders stop) and their
rendering."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from autopilot.blockkit import (
    ACTION_ACKNOWLEDGE,
    ACTION_NOT_AN_INCIDENT,
    ACTION_RESOLVE,
    ACTION_SILENCE,
    action_text,
    render_action_reply,
    render_incident,
)
from autopilot.correlation import resolve_manually
from autopilot.interactions import IncidentAction, InvalidInteraction, from_block_action
from autopilot.notify import (
    ActionReply,
    NotifyConfig,
    NotifyState,
    Reminder,
    UpdateRoot,
    plan,
    plan_acted,
)
from tests.unit.test_blockkit import lifecycle_alert
from tests.unit.test_correlation import WALL0, anomaly
from tests.unit.test_lifecycle import two_signal_incident
from tests.unit.test_notify import WALL, bot, fresh, incident

VALUE = json.dumps({"incident_id": "inc-0123456789ab", "service": "checkout"})


def body(**container: Any) -> dict[str, Any]:
    return {"type": "block_actions",
            "user": {"id": "U0ALICE42", "username": "alice"},
            "container": {"type": "message", "message_ts": "1714564800.000100",
                          "channel_id": "C0ALERTS01", **container}}


def test_a_button_click_becomes_an_action_with_a_stable_identity() -> None:
    action = {"action_id": ACTION_ACKNOWLEDGE, "value": VALUE, "action_ts": "1714564900.1"}
    got = from_block_action(body(), action, 5.0)

    assert (got.kind, got.incident_id, got.service, got.user_id, got.user_name) == (
        "acknowledge", "inc-0123456789ab", "checkout", "U0ALICE42", "alice")
    assert got.identity == f"1714564800.000100:1714564900.1:{ACTION_ACKNOWLEDGE}"
    assert IncidentAction.from_dict(json.loads(json.dumps(got.to_dict()))) == got


def test_a_silence_option_carries_its_choice() -> None:
    value = json.dumps({"incident_id": "inc-1", "service": "checkout", "silence": "4h"})
    action = {"action_id": ACTION_SILENCE, "selected_option": {"value": value},
              "action_ts": "1.2"}
    assert from_block_action(body(), action, 0.0).silence == "4h"


def test_a_not_an_incident_option_carries_how_long_the_feedback_applies() -> None:
    value = json.dumps({"incident_id": "inc-1", "service": "checkout", "feedback": "7d"})
    action = {"action_id": ACTION_NOT_AN_INCIDENT, "selected_option": {"value": value},
              "action_ts": "1.3"}
    got = from_block_action(body(), action, 0.0)
    assert (got.kind, got.feedback, got.silence) == ("not_an_incident", "7d", None)
    assert IncidentAction.from_dict(json.loads(json.dumps(got.to_dict()))) == got


@pytest.mark.parametrize("action", [
    {"action_id": "someone_elses_button", "value": VALUE, "action_ts": "1"},
    {"action_id": ACTION_RESOLVE, "value": "not json", "action_ts": "1"},
    {"action_id": ACTION_RESOLVE, "value": VALUE},
    {"action_id": ACTION_SILENCE, "value": VALUE, "action_ts": "1"},  # no choice
    {"action_id": ACTION_RESOLVE, "action_ts": "1", "value": json.dumps(
        {"incident_id": "i", "service": "s", "silence": "1h"})},
    {"action_id": ACTION_SILENCE, "action_ts": "1", "selected_option": {"value": json.dumps(
        {"incident_id": "i", "service": "s", "feedback": "7d"})}},  # the wrong menu
    {"action_id": ACTION_NOT_AN_INCIDENT, "action_ts": "1", "selected_option": {
        "value": json.dumps({"incident_id": "i", "service": "s", "feedback": "1y"})}},
])
def test_foreign_or_broken_actions_are_refused(action: dict[str, Any]) -> None:
    with pytest.raises(InvalidInteraction):
        from_block_action(body(), action, 0.0)


def test_missing_container_is_refused() -> None:
    action = {"action_id": ACTION_RESOLVE, "value": VALUE, "action_ts": "1"}
    with pytest.raises(InvalidInteraction):
        from_block_action({"user": {"id": "U1"}}, action, 0.0)


# --- manual resolve ------------------------------------------------------------------


def test_manual_resolve_resolves_once_and_new_evidence_reopens() -> None:
    run, opened = two_signal_incident()
    state, (resolved,) = resolve_manually(
        run.state, service="checkout", incident_id=opened.id, by="@alice",
        wall_now=WALL0 + 60, deployments=run.deps, errors=run.errors, config=run.config)

    assert (resolved.status, resolved.state, resolved.resolution) == (
        "resolved", "resolved", "manual")
    assert resolved.timeline[-1].kind == "resolved"
    assert "manually by @alice" in resolved.timeline[-1].text
    assert resolved.closed_at == opened.updated_at
    # a second click, or one on another incident, changes nothing
    again = resolve_manually(state, service="checkout", incident_id=opened.id, by="@bob",
                             wall_now=WALL0 + 70, deployments=run.deps, errors=run.errors,
                             config=run.config)
    assert again == (state, [])
    other = resolve_manually(run.state, service="checkout", incident_id="inc-other", by="@x",
                             wall_now=WALL0, deployments=run.deps, errors=run.errors,
                             config=run.config)
    assert other == (run.state, [])
    # new evidence after it re-opens it (the lifecycle rules)
    run.state = state
    records = run(anomaly(5))
    assert [r.status for r in records] == ["reopened"]
    assert records[0].resolution is None and records[0].reopened == 1


# --- notifier -------------------------------------------------------------------------


def note(kind: str = "acknowledge", identity: str = "m:a:x") -> dict[str, Any]:
    return {"identity": identity, "kind": kind, "user_id": "U0ALICE42", "user_name": "alice",
            "at": WALL + 10, "detail": None}


def posted_notice() -> Any:
    config = bot(group_wait_s=0, repeat_interval_s=3600, charts=False)
    notice, _ = plan(fresh(incident()), WALL, config, "d")
    return replace(notice, root_ts="1.1", channel_id="C1"), config


def test_an_action_is_answered_at_once_and_once() -> None:
    notice, config = posted_notice()
    state = NotifyState({notice.incident_id: notice}).with_action(
        notice.incident_id, note(), WALL + 10)
    assert state.with_action(notice.incident_id, note(), WALL + 11) is state  # replayed
    acted = state.notices[notice.incident_id]
    assert acted.acknowledged_by == "U0ALICE42"

    told, actions = plan_acted(acted, config, "d-acked")
    assert actions == [UpdateRoot(), ActionReply((note(),))]
    assert plan_acted(told, config, "d-acked") == (told, [])
    assert NotifyState().with_action("unknown", note(), WALL).notices == {}


def test_reminders_stop_once_acknowledged() -> None:
    notice, config = posted_notice()
    assert plan(notice, WALL + 3600, config, "d")[1] == [Reminder(1)]
    acked = NotifyState({notice.incident_id: notice}).with_action(
        notice.incident_id, note(), WALL + 10).notices[notice.incident_id]
    told, _ = plan_acted(acked, config, "d")
    assert plan(told, WALL + 3600, config, "d")[1] == []
    assert plan(told, WALL + 36_000, config, "d")[1] == []


def test_no_action_reply_outside_bot_mode_or_before_the_root_message() -> None:
    notice, _ = posted_notice()
    acked = NotifyState({notice.incident_id: notice}).with_action(
        notice.incident_id, note(), WALL).notices[notice.incident_id]
    assert plan_acted(acked, NotifyConfig(mode="console"), "d")[1] == []
    assert plan_acted(replace(acked, root_ts=None), bot(), "d")[1] == []


def test_notice_with_actions_round_trips() -> None:
    notice, _ = posted_notice()
    acked = NotifyState({notice.incident_id: notice}).with_action(
        notice.incident_id, note("silence"), WALL)
    assert NotifyState.from_dict(json.loads(json.dumps(acked.to_dict()))) == acked


# --- rendering -------------------------------------------------------------------------


def test_the_root_message_and_the_reply_say_who_did_what_and_when() -> None:
    notes = [note(), {**note("silence", "i2"), "detail": "for 1 hour (silence abc)"}]
    message = render_incident(lifecycle_alert(), analysis_pending=False, acted=notes)
    joined = json.dumps(message, ensure_ascii=False)
    assert "👀 Acknowledged by <@U0ALICE42> at <!date^1800000010^" in joined
    assert "🔕 Silenced by <@U0ALICE42>" in joined and "for 1 hour (silence abc)" in joined
    reply = json.dumps(render_action_reply(lifecycle_alert().incident, notes[:1]),
                       ensure_ascii=False)
    assert "Acknowledged by <@U0ALICE42>" in reply


def test_a_user_name_is_escaped_when_the_id_is_not_a_slack_id() -> None:
    assert "&lt;!channel&gt;" in action_text({**note(), "user_id": "<!channel>",
                                              "user_name": "<!channel>"})


def test_refusal_reasons_name_what_was_wrong() -> None:
    import hashlib
    import hmac

    from autopilot.web.slack import refusal_reason

    body, now = "payload=%7B%7D", 1_800_000_000
    good = "v0=" + hmac.new(b"sec", f"v0:{now}:{body}".encode(), hashlib.sha256).hexdigest()
    assert refusal_reason({}, body, "sec", now) == "unsigned"
    assert refusal_reason({"X-Slack-Signature": good, "X-Slack-Request-Timestamp": "x"},
                          body, "sec", now) == "stale"
    assert refusal_reason({"X-Slack-Signature": good,
                           "X-Slack-Request-Timestamp": str(now - 301)}, body, "sec",
                          now) == "stale"
    assert refusal_reason({"X-Slack-Signature": good + "0",
                           "X-Slack-Request-Timestamp": str(now)}, body, "sec",
                          now) == "bad_signature"
    assert refusal_reason({"X-Slack-Signature": good,
                           "X-Slack-Request-Timestamp": str(now)}, body, "sec",
                          now) == "unparsable"  # signed well: not a signature problem
