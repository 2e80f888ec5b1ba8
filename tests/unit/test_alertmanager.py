"""Unit tests of autopilot.alertmanager: Alertmanager's webhook payload and API v2
postableAlerts → Anomalies of kind ``alert``, and what correlation, the Slack message
and the analysis make of them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from autopilot.alertmanager import (
    alert_anomaly,
    decode_postable,
    decode_webhook,
    fingerprint,
    severity_of,
)
from autopilot.analysis import build_messages, fallback_analysis
from autopilot.blockkit import plain_text, render_incident
from autopilot.correlation import CorrelationConfig, close_if_quiet, is_quiet
from autopilot.models import Alert, Anomaly, Incident, Severity
from tests.factories import analysis
from tests.unit.test_correlation import WALL0, Run, anomaly

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
LABELS = ("service", "app", "app_kubernetes_io_name", "job")


def am_alert(status: str = "firing", **labels: str) -> dict[str, Any]:
    labels = {"alertname": "HighLatency", "service": "checkout", "severity": "critical",
              **labels}
    return {
        "status": status,
        "labels": labels,
        "annotations": {"summary": "p99 latency above 2 s", "description": "for 5 minutes",
                        "runbook_url": "https://runbooks.example/latency"},
        "startsAt": "2024-05-01T11:55:00Z",
        "endsAt": "2024-05-01T12:00:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph?g0.expr=x",
        "fingerprint": "c0ffee0000000001",
    }


def payload(*alerts: dict[str, Any], **fields: Any) -> bytes:
    body = {"version": "4", "groupKey": '{}:{alertname="HighLatency"}', "status": "firing",
            "receiver": "autopilot", "groupLabels": {}, "commonLabels": {},
            "commonAnnotations": {}, "externalURL": "http://am:9093", "truncatedAlerts": 0,
            "alerts": list(alerts), **fields}
    return json.dumps(body).encode()


def webhook(*alerts: dict[str, Any], at: datetime = NOW, **fields: Any) -> Any:
    return decode_webhook(payload(*alerts, **fields), received_at=at, service_labels=LABELS)


# --------------------------------------------------------------------------- mapping


def test_webhook_alert_maps_every_field() -> None:
    (a,) = webhook(am_alert()).records
    assert a.kind == "alert" and a.state == "firing"
    assert a.service == "checkout" and a.metric_name == "HighLatency"
    assert a.series == "checkout|alert|c0ffee0000000001"
    assert a.severity is Severity.CRITICAL
    assert a.detected_at == NOW  # time of receipt
    assert a.current_value == 1.0 and a.z_score == 0.0
    assert a.labels["alertname"] == "HighLatency"
    d = a.alert
    assert d is not None
    assert (d.alertname, d.severity, d.summary, d.description, d.fingerprint) == (
        "HighLatency", "critical", "p99 latency above 2 s", "for 5 minutes",
        "c0ffee0000000001")
    assert d.annotations["runbook_url"] == "https://runbooks.example/latency"
    assert d.starts_at == datetime(2024, 5, 1, 11, 55, tzinfo=UTC)
    assert d.ends_at is None  # Go's zero time means unset
    assert d.generator_url.startswith("http://prometheus:9090/")


def test_resolved_alert_is_a_recovery_with_its_end_time() -> None:
    (a,) = webhook(am_alert("resolved"), status="resolved").records
    assert a.state == "resolved" and a.current_value == 0.0
    assert a.alert is not None and a.alert.ends_at == NOW


def test_alert_json_round_trips_and_other_anomalies_keep_their_shape() -> None:
    (a,) = webhook(am_alert()).records
    assert Anomaly.model_validate_json(a.model_dump_json()) == a
    assert "alert" not in anomaly().model_dump(mode="json")


@pytest.mark.parametrize(("label", "severity"), [
    ("critical", Severity.CRITICAL), ("page", Severity.CRITICAL), ("error", Severity.HIGH),
    ("High", Severity.HIGH), ("warning", Severity.MEDIUM), ("info", Severity.MEDIUM),
    ("", Severity.MEDIUM), ("whatever", Severity.MEDIUM),
])
def test_severity_label(label: str, severity: Severity) -> None:
    assert severity_of({"severity": label}) is severity


def test_service_comes_from_the_first_service_label_present() -> None:
    labels = {"alertname": "Down", "job": "node", "app": "cart"}
    (a,) = decode_webhook(payload({"status": "firing", "labels": labels}),
                          received_at=NOW, service_labels=LABELS).records
    assert a.service == "cart"  # app comes before job
    (b,) = decode_webhook(payload({"status": "firing", "labels": labels}),
                          received_at=NOW, service_labels=("job", "app")).records
    assert b.service == "node"


def test_alert_without_a_service_is_refused_and_the_rest_is_kept() -> None:
    bad = am_alert()
    del bad["labels"]["service"]
    decoded = webhook(am_alert(), bad, {"status": "firing", "labels": {"service": "x"}})
    assert [a.service for a in decoded.records] == ["checkout"]
    rejected = decoded.rejected()
    assert [(r["item"], r["code"]) for r in rejected] == [(1, "no_service"), (2, "invalid")]
    assert "labels name no service: none of service, app, app_kubernetes_io_name, job" in (
        rejected[0]["reason"])
    assert "AUTOPILOT_SERVICE_LABELS" in rejected[0]["reason"]
    assert "no alertname" in rejected[1]["reason"]


@pytest.mark.parametrize(("alert", "where"), [
    ({"status": "pending", "labels": {"alertname": "A", "service": "s"}}, "status"),
    ({"status": "firing", "labels": {}}, "labels"),
    ({"status": "firing", "labels": {"alertname": "A", "service": "s"},
      "startsAt": "yesterday"}, "startsAt"),
    ("not an object", "alert"),
])
def test_bad_alert_names_the_field(alert: Any, where: str) -> None:
    decoded = webhook(am_alert(), alert)
    assert len(decoded.records) == 1
    (err,) = decoded.errors
    assert err["item"] == 1 and err["loc"].startswith(where)


@pytest.mark.parametrize(("body", "message"), [
    (b"not json", "not valid JSON"),
    (b"[]", "not an Alertmanager webhook payload"),
    (payload(am_alert(), version="3"), "version"),
    (payload(am_alert(), alerts={"a": 1}), "alerts"),
    (json.dumps({"version": "4", "status": "firing", "alerts": []}).encode(), "groupKey"),
])
def test_unreadable_payload_raises_naming_what_is_wrong(body: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decode_webhook(body, received_at=NOW, service_labels=LABELS)


def test_empty_alerts_is_an_error_not_a_success() -> None:
    decoded = webhook()
    assert not decoded.records and decoded.errors


def test_fingerprint_is_alertmanagers() -> None:
    # prometheus/common model/signature_test.go (LabelsToSignature, same FNV-1a 64).
    assert int(fingerprint({"name": "garland, briggs", "fear": "love is not enough"}),
               16) == 5799056148416392346
    assert int(fingerprint({}), 16) == 14695981039346656037


def test_webhook_alert_without_fingerprint_gets_alertmanagers() -> None:
    alert = am_alert()
    alert["fingerprint"] = ""
    (a,) = webhook(alert).records
    assert a.alert is not None and a.alert.fingerprint == fingerprint(alert["labels"])


# --------------------------------------------------------------------------- API v2


def postable(ends: datetime | None = None, **labels: str) -> dict[str, Any]:
    item: dict[str, Any] = {
        "labels": {"alertname": "Down", "service": "cart", "severity": "warning", **labels},
        "annotations": {"summary": "cart is down"},
        "startsAt": "2024-05-01T11:50:00Z", "generatorURL": "http://prom/graph"}
    if ends is not None:
        item["endsAt"] = ends.isoformat()
    return item


def test_postable_alert_fires_until_its_end_and_has_alertmanagers_fingerprint() -> None:
    body = json.dumps([postable(), postable(NOW + timedelta(minutes=4), x="1"),
                       postable(NOW - timedelta(seconds=1), x="2")]).encode()
    a, b, c = decode_postable(body, received_at=NOW, service_labels=LABELS).records
    assert [a.state, b.state, c.state] == ["firing", "firing", "resolved"]
    assert a.alert is not None and a.alert.fingerprint == fingerprint(postable()["labels"])
    assert a.series == f"cart|alert|{a.alert.fingerprint}"
    assert a.severity is Severity.MEDIUM and a.alert.summary == "cart is down"


def test_postable_partial_and_unreadable() -> None:
    no_service = postable()
    del no_service["labels"]["service"]
    decoded = decode_postable(json.dumps([postable(), no_service]).encode(),
                              received_at=NOW, service_labels=LABELS)
    assert len(decoded.records) == 1 and decoded.rejected()[0]["code"] == "no_service"
    with pytest.raises(ValueError, match="expected a JSON list"):
        decode_postable(b'{"labels": {}}', received_at=NOW, service_labels=LABELS)


# --------------------------------------------------------------------------- correlation


def alert_at(minutes: float, status: str = "firing", severity: str = "critical",
             **labels: str) -> Anomaly:
    (a,) = webhook(am_alert(status, severity=severity, **labels),
                   at=NOW + timedelta(minutes=minutes)).records
    return a


def test_critical_alert_opens_an_incident_on_its_own() -> None:
    run = Run()
    (opened,) = run(alert_at(0))
    assert opened.status == "opened" and opened.severity is Severity.CRITICAL
    assert opened.trigger_reason.startswith("critical alert HighLatency")
    (sig,) = opened.signals
    assert sig.kind == "alert" and sig.metric_name == "HighLatency"
    assert sig.summary == "p99 latency above 2 s"


def test_warning_alert_alone_opens_nothing_but_with_an_anomaly_it_does() -> None:
    run = Run()
    assert run(alert_at(0, severity="warning")) == []
    (opened,) = run(anomaly(1).model_copy(update={"detected_at": NOW + timedelta(minutes=1)}))
    assert opened.status == "opened"
    assert {s.kind for s in opened.signals} == {"alert", "metric"}


def test_two_warning_alerts_open_an_incident_that_says_alerts_not_anomalies() -> None:
    run = Run()
    assert run(alert_at(0, severity="warning")) == []
    other = am_alert(severity="warning", instance="b")
    other["fingerprint"] = ""  # Alertmanager's own, from the other labels
    (a,) = webhook(other, at=NOW + timedelta(minutes=1)).records
    (opened,) = run(a)
    assert "2 alerts within 10 min" in opened.trigger_reason, opened.trigger_reason
    assert "anomalies" not in opened.trigger_reason


def test_repeated_notifications_of_one_alert_are_one_signal() -> None:
    run = Run()
    (opened,) = run(alert_at(0))
    for minute in (4, 8, 12):  # Alertmanager's repeat_interval re-sends
        assert run(alert_at(minute)) == []
    inc = run.state.incident
    assert inc is not None and len(inc.signals) == 1
    assert inc.signals[0].last_at == NOW + timedelta(minutes=12)  # kept firing
    assert inc.state == "firing"
    assert opened.id == inc.id


def test_resolved_notification_resolves_the_signal_at_once() -> None:
    run = Run()
    run(alert_at(0))
    (resolved,) = run(alert_at(3, "resolved"))
    assert resolved.status == "resolved" and resolved.resolution == "recovered"
    assert resolved.signals[0].state == "resolved"
    assert resolved.closed_at == NOW + timedelta(minutes=3)
    assert resolved.timeline[-2].text == "alert HighLatency resolved"
    assert run(alert_at(3.5, "resolved")) == []  # Prometheus re-sends resolved alerts


def test_another_fingerprint_is_another_signal() -> None:
    run = Run()
    run(alert_at(0))
    other = am_alert(instance="b")
    other["fingerprint"] = ""  # Alertmanager's own, from the other labels
    (a,) = webhook(other, at=NOW + timedelta(minutes=1)).records
    (updated,) = run(a)
    assert updated.status == "updated" and len(updated.signals) == 2
    assert updated.timeline[-1].kind == "signal"


# --------------------------------------------------------------------------- Slack, LLM


def opened_incident() -> Incident:
    run = Run()
    (opened,) = run(alert_at(0))
    return opened


def test_slack_message_shows_alertname_and_summary() -> None:
    msg = render_incident(Alert(incident=opened_incident(), analysis=analysis()),
                          analysis_pending=False)
    text = json.dumps(msg)
    assert "alert HighLatency" in text and "p99 latency above 2 s" in text
    assert "vs baseline" not in plain_text(msg).split("Signals")[-1].split("\n")[1]


def test_prompt_and_rules_use_the_alerts_name_and_annotations() -> None:
    inc = opened_incident()
    prompt = "\n".join(m["content"] for m in build_messages(inc))
    assert "alert HighLatency (alert, firing)" in prompt
    assert "summary: p99 latency above 2 s" in prompt
    assert "description: for 5 minutes" in prompt
    assert "runbook_url: https://runbooks.example/latency" in prompt
    rules = fallback_analysis(inc)
    assert "Alert HighLatency fired for checkout: p99 latency above 2 s" in (
        rules.root_cause.description)
    assert any("https://runbooks.example/latency" in a.action
               for a in rules.recommended_actions)


def test_a_service_name_over_256_characters_is_refused_as_for_every_other_input() -> None:
    fields: dict[str, Any] = dict(
        firing=True, annotations={}, received_at=datetime(2026, 1, 1, tzinfo=UTC))
    assert alert_anomaly(labels={"alertname": "A", "service": "s" * 256}, **fields)
    with pytest.raises(ValueError, match="at most 256"):
        alert_anomaly(labels={"alertname": "A", "service": "s" * 257}, **fields)


def test_a_firing_alert_keeps_its_incident_open_between_alertmanagers_re_sends() -> None:
    """Alertmanager re-sends a firing alert every repeat_interval (4 h by default):
    the incident is stale only after alert_close_after_s without one."""
    config = CorrelationConfig(close_after_s=900, alert_close_after_s=18000)
    run = Run(config=config)
    run(alert_at(0), wall=WALL0)
    kwargs: dict[str, Any] = {
        "service": "checkout", "deployments": run.deps, "errors": [], "config": config}
    assert not is_quiet(run.state, WALL0 + 3600, config)
    assert close_if_quiet(run.state, wall_now=WALL0 + 3600, **kwargs)[1] == []
    # A re-send 4 h later (event time): still the same firing incident, nothing closed.
    assert run(alert_at(240), wall=WALL0 + 14400) == []
    assert run.state.incident is not None and run.state.incident.state == "firing"
    # 5 h without a re-send: stale.
    assert is_quiet(run.state, WALL0 + 14400 + 18000, config)
    _, (stale,) = close_if_quiet(run.state, wall_now=WALL0 + 14400 + 18000, **kwargs)
    assert stale.resolution == "stale"


def test_once_the_alert_resolved_the_incident_closes_on_the_usual_quiet_time() -> None:
    """Control: a metric anomaly's incident, and one whose alert has resolved, use
    close_after_s."""
    config = CorrelationConfig(close_after_s=900, alert_close_after_s=18000)
    run = Run(config=config)
    run(anomaly(0).model_copy(update={"detected_at": NOW, "severity": Severity.CRITICAL}),
        wall=WALL0)
    assert is_quiet(run.state, WALL0 + 900, config)
    run = Run(config=config)
    run(alert_at(0, severity="warning"), wall=WALL0)
    run(anomaly(1).model_copy(update={"detected_at": NOW + timedelta(minutes=1)}), wall=WALL0)
    assert not is_quiet(run.state, WALL0 + 3600, config)
    run(alert_at(2, "resolved", severity="warning"), wall=WALL0 + 120)
    assert run.state.incident is not None and run.state.incident.state == "firing"
    assert is_quiet(run.state, WALL0 + 120 + 900, config)
