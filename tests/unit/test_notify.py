"""Notification policy (autopilot.notify): group_wait, group_interval, repeat_interval,
send_resolved, the webhook cap and routing, driven by an injected clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from autopilot import notify
from autopilot.models import Incident
from autopilot.notify import (
    Matcher,
    Notice,
    NotifyConfig,
    NotifyState,
    PostRoot,
    Reminder,
    Reply,
    ReplyAnalysis,
    Routes,
    UpdateRoot,
    UploadCharts,
    Webhook,
    plan,
)
from tests import factories

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
WALL = 1_800_000_000.0


def incident(revision: int = 1, *, state: str = "firing", severity: str = "high",
             timeline: list[tuple[str, str]] | None = None, reopened: int = 0) -> Incident:
    """Revision ``revision`` of one incident; ``timeline`` as ``(kind, text)`` pairs, a
    minute apart."""
    entries = [("opened", "o")] if timeline is None else timeline
    return factories.incident(
        id="inc-0123456789ab",
        revision=revision,
        status="resolved" if state == "resolved" else None,
        state=state,
        severity=severity,
        trigger_reason="2 anomalies within 10 min",
        opened_at=T0,
        updated_at=T0 + timedelta(minutes=revision),
        closed_at=T0 + timedelta(minutes=30) if state == "resolved" else None,
        reopened=reopened,
        timeline=[
            {"at": (T0 + timedelta(minutes=i)).isoformat(), "kind": k, "text": t}
            for i, (k, t) in enumerate(entries)
        ],
        anomalies=[],
    )


LLM = {
    "root_cause": {"description": "pool exhausted", "confidence": 80, "reasoning": "r"},
    "recommended_actions": [{"action": "a", "reasoning": "r", "risk": "low", "priority": 1}],
    "severity": "high",
    "estimated_customer_impact": "some",
    "source": "llm",
    "model": "llama3:latest",
}


def bot(**kw: Any) -> NotifyConfig:
    return NotifyConfig(mode="bot", **kw)


def fresh(inc: Incident, now: float = WALL) -> Notice:
    return NotifyState().with_incident(inc, now).notices[inc.id]


def names(actions: list[Any]) -> list[str]:
    return [type(a).__name__ for a in actions]


def test_first_message_waits_for_group_wait_then_posts_once() -> None:
    config = bot(group_wait_s=30, charts=False)
    notice = fresh(incident())
    assert plan(notice, WALL + 29.9, config, "d1") == (notice, [])
    new, actions = plan(notice, WALL + 30, config, "d1")
    assert actions == [PostRoot()]
    assert new.posted_at == WALL + 30 and new.rendered == "d1"
    # Nothing changed since: nothing more, however often it is asked.
    for dt in (31, 60, 600):
        assert plan(new, WALL + dt, config, "d1")[1] == []


def test_charts_are_uploaded_once_with_the_first_message_in_bot_mode() -> None:
    new, actions = plan(fresh(incident()), WALL + 30, bot(), "d1")
    assert actions == [PostRoot(), UploadCharts()]
    assert new.charts_done
    webhook = NotifyConfig(mode="webhook")
    assert plan(fresh(incident()), WALL + 30, webhook, "d1")[1] == [PostRoot()]


def test_an_incident_resolved_during_group_wait_gets_one_message_showing_it() -> None:
    config = bot(group_wait_s=30, charts=False)
    state = NotifyState().with_incident(incident(), WALL)
    resolved = incident(3, state="resolved", timeline=[("opened", "o"), ("resolved", "r")])
    state = state.with_incident(resolved, WALL + 10)
    notice = state.notices[resolved.id]
    assert notice.first_seen == WALL  # group_wait started with the first record
    new, actions = plan(notice, WALL + 30, config, "resolved-digest")
    assert actions == [PostRoot()]
    # The resolution was in the first message: no thread reply for it afterwards.
    assert plan(new, WALL + 100, config, "resolved-digest")[1] == []


def test_changes_wait_for_group_interval_and_go_out_together() -> None:
    config = bot(group_wait_s=0, group_interval_s=30, charts=False)
    posted, _ = plan(fresh(incident()), WALL, config, "d1")
    state = NotifyState({posted.incident_id: posted})
    two = incident(2, timeline=[("opened", "o"), ("signal", "error rate fired")])
    three = incident(3, timeline=[("opened", "o"), ("signal", "error rate fired"),
                                  ("deployment", "v2 deployed")])
    state = state.with_incident(two, WALL + 5).with_incident(three, WALL + 6)
    notice = state.notices[two.id]
    assert plan(notice, WALL + 20, config, "d2") == (notice, [])
    new, actions = plan(notice, WALL + 30, config, "d2")
    assert names(actions) == ["UpdateRoot", "Reply"]
    reply = actions[1]
    assert isinstance(reply, Reply)
    assert [e["text"] for e in reply.entries] == ["error rate fired", "v2 deployed"]
    assert plan(new, WALL + 90, config, "d2")[1] == []  # told: not again


def test_no_edit_when_the_rendering_did_not_change() -> None:
    config = bot(group_wait_s=0, group_interval_s=0, charts=False)
    posted, _ = plan(fresh(incident()), WALL, config, "same")
    assert plan(posted, WALL + 3600, config, "same")[1] == []
    assert plan(posted, WALL + 3600, config, "other")[1] == [UpdateRoot()]


def test_llm_analysis_after_the_first_message_edits_and_replies_once() -> None:
    config = bot(group_wait_s=30, group_interval_s=30, charts=False)
    state = NotifyState().with_incident(incident(), WALL)
    posted, _ = plan(state.notices["inc-0123456789ab"], WALL + 30, config, "rules")
    state = NotifyState({posted.incident_id: posted}).with_analysis(incident(), LLM, WALL + 45)
    notice = state.notices[posted.incident_id]
    new, actions = plan(notice, WALL + 60, config, "llm")
    assert names(actions) == ["UpdateRoot", "ReplyAnalysis"]
    assert plan(new, WALL + 200, config, "llm")[1] == []


def test_llm_analysis_ready_before_group_wait_is_in_the_first_message_only() -> None:
    config = bot(group_wait_s=30, charts=False)
    state = NotifyState().with_incident(incident(), WALL).with_analysis(incident(), LLM, WALL + 5)
    new, actions = plan(state.notices["inc-0123456789ab"], WALL + 30, config, "llm")
    assert actions == [PostRoot()]
    assert plan(new, WALL + 100, config, "llm")[1] == []


def test_reminder_every_repeat_interval_while_firing_and_never_once_resolved() -> None:
    config = bot(group_wait_s=0, repeat_interval_s=3600, charts=False)
    posted, _ = plan(fresh(incident()), WALL, config, "d")
    assert plan(posted, WALL + 3599, config, "d")[1] == []
    first, actions = plan(posted, WALL + 3600, config, "d")
    assert actions == [Reminder(1)]
    second, actions = plan(first, WALL + 7200, config, "d")
    assert actions == [Reminder(2)]
    resolved = NotifyState({posted.incident_id: second}).with_incident(
        incident(5, state="resolved", timeline=[("opened", "o"), ("resolved", "r")]), WALL + 7300
    ).notices[posted.incident_id]
    done, actions = plan(resolved, WALL + 7400, config, "resolved")
    assert names(actions) == ["UpdateRoot", "Reply"]
    assert plan(done, WALL + 20_000, config, "resolved")[1] == []


def test_send_resolved_false_edits_the_root_but_replies_nothing_about_it() -> None:
    config = bot(group_wait_s=0, group_interval_s=0, send_resolved=False, charts=False)
    posted, _ = plan(fresh(incident()), WALL, config, "d")
    notice = NotifyState({posted.incident_id: posted}).with_incident(
        incident(2, state="resolved", timeline=[("opened", "o"), ("resolved", "r")]), WALL + 1
    ).notices[posted.incident_id]
    assert plan(notice, WALL + 2, config, "resolved")[1] == [UpdateRoot()]


def test_one_failure_and_its_recovery_cost_at_most_ten_slack_calls() -> None:
    config = bot(group_wait_s=30, group_interval_s=30, charts=False)
    calls = 0
    state = NotifyState().with_incident(incident(), WALL)
    timeline = [("opened", "o")]
    now = WALL
    digest = 0
    events = [("signal", "error rate"), ("deployment", "v2"), ("escalated", "critical"),
              ("signal_resolved", "latency back"), ("signal_resolved", "error rate back"),
              ("resolved", "resolved")]
    for step in range(0, 600):
        now = WALL + step
        if step == 40:
            state = state.with_analysis(incident(), LLM, now)
        if step % 20 == 5 and events:
            timeline.append(events.pop(0))
            resolved = not events
            state = state.with_incident(
                incident(len(timeline), state="resolved" if resolved else "firing",
                         timeline=list(timeline)), now)
            digest += 1
        (notice,) = state.notices.values()
        new, actions = plan(notice, now, config, f"d{digest}")
        calls += sum(1 for a in actions if not isinstance(a, UploadCharts))
        state = NotifyState({new.incident_id: new})
    assert calls <= 10, calls
    (notice,) = state.notices.values()
    assert notice.resolved_told


def test_webhook_mode_sends_first_escalation_analysis_resolved_within_the_cap() -> None:
    config = NotifyConfig(mode="webhook", group_wait_s=0, group_interval_s=0)
    posted, actions = plan(fresh(incident(severity="medium")), WALL, config, "d")
    assert actions == [PostRoot()] and posted.webhook_sent == 1
    state = NotifyState({posted.incident_id: posted})
    sent = []
    for i, severity in enumerate(("high", "critical"), start=2):
        state = state.with_incident(incident(i, severity=severity), WALL + i)
        new, actions = plan(state.notices[posted.incident_id], WALL + i, config, "d")
        sent += actions
        state = NotifyState({new.incident_id: new})
    state = state.with_analysis(incident(4, severity="critical"), LLM, WALL + 5)
    new, actions = plan(state.notices[posted.incident_id], WALL + 5, config, "d")
    sent += actions
    state = NotifyState({new.incident_id: new}).with_incident(
        incident(6, state="resolved", severity="critical"), WALL + 6)
    new, actions = plan(state.notices[posted.incident_id], WALL + 6, config, "d")
    sent += actions
    assert sent == [Webhook("escalated", 2), Webhook("analysis", 3), Webhook("resolved", 4)]
    assert new.webhook_sent == 4 == config.max_webhook_messages


def test_webhook_cap_keeps_the_resolution_when_the_cap_is_small() -> None:
    config = NotifyConfig(mode="webhook", group_wait_s=0, group_interval_s=0,
                          max_webhook_messages=2)
    posted, _ = plan(fresh(incident(severity="medium")), WALL, config, "d")
    state = NotifyState({posted.incident_id: posted}).with_incident(
        incident(2, severity="critical"), WALL + 1).with_analysis(incident(2), LLM, WALL + 1)
    new, actions = plan(state.notices[posted.incident_id], WALL + 1, config, "d")
    assert actions == []  # no slot for an escalation or the analysis: both kept for nothing
    state = NotifyState({new.incident_id: new}).with_incident(
        incident(3, state="resolved"), WALL + 2)
    new, actions = plan(state.notices[posted.incident_id], WALL + 2, config, "d")
    assert actions == [Webhook("resolved", 2)]


def test_console_mode_prints_timeline_and_analysis_without_edits() -> None:
    config = NotifyConfig(mode="console", group_wait_s=0, group_interval_s=0)
    posted, _ = plan(fresh(incident()), WALL, config, "d")
    state = NotifyState({posted.incident_id: posted}).with_incident(
        incident(2, timeline=[("opened", "o"), ("signal", "s")]), WALL + 1
    ).with_analysis(incident(1), LLM, WALL + 1)
    _, actions = plan(state.notices[posted.incident_id], WALL + 2, config, "changed")
    assert [type(a) for a in actions] == [Reply, ReplyAnalysis]


def test_older_incident_records_do_not_replace_newer_ones_and_state_round_trips() -> None:
    state = NotifyState().with_incident(incident(3), WALL).with_incident(incident(2), WALL + 1)
    assert state.notices["inc-0123456789ab"].revision == 3
    again = NotifyState.from_dict(state.to_dict())
    assert again == state
    assert NotifyState.from_dict(None) == NotifyState()


def test_due_at_names_the_next_time_to_look() -> None:
    config = bot(group_wait_s=30, group_interval_s=30, repeat_interval_s=3600)
    notice = fresh(incident())
    assert notify.due_at(notice, config) == WALL + 30
    posted, _ = plan(notice, WALL + 30, config, "d")
    assert notify.due_at(posted, config) == WALL + 30 + 3600  # only the reminder
    changed = NotifyState({posted.incident_id: posted}).with_incident(
        incident(2, timeline=[("opened", "o"), ("signal", "s")]), WALL + 40
    ).notices[posted.incident_id]
    assert notify.due_at(changed, config) == WALL + 60


def test_forget_drops_resolved_incidents_after_the_window() -> None:
    config = bot(group_wait_s=0, forget_after_s=100)
    posted, _ = plan(fresh(incident(state="resolved")), WALL, config, "d")
    state = NotifyState({posted.incident_id: posted})
    assert notify.forget(state, WALL + 99, config) is state
    assert notify.forget(state, WALL + 100, config).notices == {}


@pytest.mark.parametrize(
    ("service", "severity", "channel"),
    [
        ("payments-api", "critical", "#payments-oncall"),
        ("payments-api", "high", "#payments"),
        ("checkout", "critical", "C0CHECKOUT"),
        ("search", "low", "#alerts"),
    ],
)
def test_routes_first_match_wins_and_default_otherwise(
    service: str, severity: str, channel: str
) -> None:
    routes = Routes.from_document({"routes": [
        {"matchers": ['service=~"payments.*"', 'severity="critical"'],
         "channel": "#payments-oncall"},
        {"matchers": ["service=~payments.*"], "channel": "#payments"},
        {"matchers": ["service=checkout", "severity!=low"], "channel": "C0CHECKOUT"},
    ]}, "#alerts")
    assert routes.channel_for(service, severity) == channel


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"routes": "x"}, "'routes' list"),
        ({"routes": [{"matchers": ["service=a"]}]}, "route 1: 'channel'"),
        ({"routes": [{"matchers": ["team=a"], "channel": "#x"}]}, "service and severity only"),
        ({"routes": [{"matchers": ["service=~("], "channel": "#x"}]}, "invalid regular"),
        ({"routes": [{"matchers": ["nonsense"], "channel": "#x"}]}, "not a matcher"),
    ],
)
def test_bad_routes_are_refused_naming_the_route(document: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Routes.from_document(document, "#alerts")


def test_regex_matchers_are_anchored_like_alertmanager() -> None:
    assert not Matcher.parse("service=~pay").matches({"service": "payments"})
    assert Matcher.parse("service!~pay").matches({"service": "payments"})


def test_a_flapping_signal_is_shown_in_the_message_but_not_replied_in_the_thread() -> None:
    config = bot(group_wait_s=0, group_interval_s=0, charts=False)
    posted, _ = plan(fresh(incident(timeline=[("opened", "o"), ("signal", "error rate")])),
                     WALL, config, "d1")
    flaps = [("opened", "o"), ("signal", "error rate"), ("signal_resolved", "back"),
             ("signal_refired", "again"), ("signal_resolved", "back")]
    notice = NotifyState({posted.incident_id: posted}).with_incident(
        incident(5, timeline=flaps), WALL + 1).notices[posted.incident_id]
    assert plan(notice, WALL + 2, config, "d2")[1] == [UpdateRoot()]
    assert plan(notice, WALL + 2, config, "d1")[1] == []
