"""Unit tests of the incident lifecycle in autopilot.correlation (signals, resolve,
re-open, late evidence, stale close, deployments, replay, persisted-state load).

Times are event time, in minutes after T0 (see the builders in test_correlation).
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from autopilot.correlation import (
    CorrelationConfig,
    CorrelationState,
    close_if_quiet,
    incident_id,
    is_quiet,
    on_deployment,
    series_of,
    step,
)
from autopilot.models import DeploymentEvent, Incident, Severity
from tests.unit.test_correlation import (
    CONFIG,
    T0,
    WALL0,
    Run,
    anomaly,
    at,
    deployments,
    error,
    recovery,
)


def statuses(records: list[Incident]) -> list[str]:
    return [r.status for r in records]


def deploy(run: Run, minutes: float, version: str, offset: int) -> list[Incident]:
    """A deployment announced to correlation (it is in the history first)."""
    dep = DeploymentEvent(timestamp=at(minutes), service="checkout", version=version)
    run.deps = run.deps.apply([dep], offset=1000 + offset)
    run.state, out = on_deployment(
        run.state, dep, source=("autopilot.correlation.control", offset),
        deployments=run.deps, errors=run.errors, wall_now=WALL0, config=run.config,
    )
    return out


def two_signal_incident() -> tuple[Run, Incident]:
    """Latency (metric) and error rate firing together: rule 3 opens an incident."""
    run = Run()
    assert run(anomaly(0, Severity.MEDIUM)) == []
    (opened,) = run(anomaly(1, Severity.HIGH, kind="error_rate"))
    return run, opened


# --------------------------------------------------------------------------- signals


def test_an_opened_incident_carries_its_signals_and_an_opened_timeline_entry() -> None:
    _, opened = two_signal_incident()

    assert opened.status == "opened" and opened.state == "firing" and opened.notify
    assert [(s.series, s.kind, s.state) for s in opened.signals] == [
        ("checkout|api_latency_ms|", "metric", "firing"),
        ("checkout|error_rate|", "error_rate", "firing"),
    ]
    assert opened.signals[0].first_at == at(0)
    assert opened.signals[1].severity is Severity.HIGH
    assert [e.kind for e in opened.timeline] == ["opened"]
    assert "metric anomaly and error-rate spike" in opened.timeline[0].text
    assert opened.timeline[0].at == at(1)
    assert opened.resolution is None and opened.closed_at is None and opened.reopened == 0


def test_series_of_falls_back_to_service_and_metric_for_old_records() -> None:
    assert series_of(anomaly(0)) == "checkout|api_latency_ms|"
    assert series_of(anomaly(0, series="checkout|api_latency_ms|env=prod")) == (
        "checkout|api_latency_ms|env=prod"
    )
    assert series_of(anomaly(0, kind="error_rate")) == "checkout|error_rate|"


def test_same_metric_with_other_labels_is_another_signal() -> None:
    run = Run()
    run(anomaly(0, Severity.CRITICAL, series="checkout|api_latency_ms|env=a"))

    out = run(anomaly(1, Severity.MEDIUM, series="checkout|api_latency_ms|env=b"))

    assert statuses(out) == ["updated"] and out[0].timeline[-1].kind == "signal"
    assert len(out[0].signals) == 2


def test_a_refresh_updates_the_signal_but_is_no_anomaly_for_the_rules() -> None:
    # Two records of one firing series within 10 min are not "two anomalies" (rule 4).
    run = Run()
    assert run(anomaly(0, Severity.MEDIUM)) == []

    assert run(anomaly(5, Severity.MEDIUM, value=650.0)) == []

    assert run.state.incident is None
    (sig,) = run.state.signals
    assert sig.state == "firing" and sig.first_at == at(0) and sig.last_at == at(5)
    assert sig.last_value == 650.0
    assert len(run.state.recent) == 1


def test_a_refresh_keeps_a_long_outage_one_incident() -> None:
    # 2 hours of re-sends every 300 s (the detector's AUTOPILOT_SIGNAL_RESEND_S):
    # one incident, never closed as stale, resolved by the recovery.
    run = Run()
    opened = run(anomaly(0, Severity.CRITICAL), wall=WALL0)
    published = list(opened)
    for k in range(1, 25):
        wall = WALL0 + 300 * k
        published += run(anomaly(5 * k, Severity.CRITICAL), wall=wall)
        assert not is_quiet(run.state, wall + 60, CONFIG)

    assert statuses(published) == ["opened"]
    assert run.state.incident is not None and run.state.incident.updated_at == at(120)

    resolved = run(recovery(123))

    assert statuses(resolved) == ["resolved"]
    assert resolved[0].id == opened[0].id
    assert resolved[0].revision == 2
    assert resolved[0].closed_at == at(123)
    assert resolved[0].resolution == "recovered"


def test_an_escalation_that_does_not_raise_the_incident_notifies_without_escalated_entry() -> None:
    run = Run()
    run(anomaly(0, Severity.CRITICAL))
    run(anomaly(1, Severity.MEDIUM, metric="cpu_percent"))

    out = run(anomaly(2, Severity.HIGH, metric="cpu_percent"))

    assert statuses(out) == ["updated"] and out[0].notify
    assert out[0].severity is Severity.CRITICAL
    assert [e.kind for e in out[0].timeline] == ["opened", "signal"]
    cpu = next(s for s in out[0].signals if s.metric_name == "cpu_percent")
    assert cpu.severity is Severity.HIGH


# --------------------------------------------------------------------------- resolve


def test_resolved_when_all_signals_recovered_and_not_before() -> None:
    run, opened = two_signal_incident()

    first = run(recovery(6))  # latency recovers; the error rate still fires

    assert statuses(first) == ["updated"] and first[0].notify
    assert first[0].state == "firing" and first[0].closed_at is None
    assert [s.state for s in first[0].signals] == ["resolved", "firing"]
    assert first[0].signals[0].resolved_at == at(6)
    assert first[0].timeline[-1].kind == "signal_resolved"
    assert "api_latency_ms recovered" in first[0].timeline[-1].text

    last = run(recovery(9, kind="error_rate"))

    assert statuses(last) == ["resolved"]
    inc = last[0]
    assert inc.id == opened.id and inc.revision == 3 and inc.notify
    assert inc.state == "resolved" and inc.is_resolved
    assert inc.resolution == "recovered"
    assert inc.closed_at == at(9)
    assert [s.state for s in inc.signals] == ["resolved", "resolved"]
    assert [e.kind for e in inc.timeline] == ["opened", "signal_resolved", "signal_resolved",
                                             "resolved"]
    assert "after 9 min" in inc.timeline[-1].text
    # It stays in the state, for a re-open; it is not forgotten yet.
    assert run.state.incident is not None and run.state.incident.state == "resolved"
    assert run.state.closed == 0


def test_a_repeated_recovery_changes_nothing() -> None:
    run, _ = two_signal_incident()
    run(recovery(6))
    before = run.state

    assert run(recovery(6)) == []
    assert run(recovery(7)) == []
    assert run.state.incident == before.incident


def test_a_recovery_of_a_series_outside_the_incident_publishes_nothing() -> None:
    run = Run()
    run(anomaly(0, Severity.CRITICAL))

    assert run(recovery(2, metric="cpu_percent")) == []
    assert run.state.incident is not None and run.state.incident.state == "firing"


def test_a_recovered_signal_outside_an_incident_shows_recovered_when_the_rules_open_one() -> None:
    run = Run()
    run(anomaly(0, Severity.MEDIUM))
    assert run(recovery(3)) == []
    assert run.state.signals[0].state == "resolved"

    (opened,) = run(anomaly(5, Severity.MEDIUM, metric="cpu_percent"))  # rule 4

    assert [(s.metric_name, s.state) for s in opened.signals] == [
        ("api_latency_ms", "resolved"),
        ("cpu_percent", "firing"),
    ]
    assert run.state.signals == ()  # both moved into the incident
    closed = run(recovery(7, metric="cpu_percent"))
    assert statuses(closed) == ["resolved"]


def test_signals_outside_an_incident_are_forgotten_when_done() -> None:
    run = Run()
    run(anomaly(0, Severity.MEDIUM))  # fires, then sends nothing more
    run(anomaly(1, Severity.MEDIUM, kind="error_rate"))  # rule 3: an incident opens
    run(anomaly(3, Severity.MEDIUM, metric="cpu_percent", service="checkout"))
    assert run.state.signals == ()

    other = Run()
    other(anomaly(0, Severity.MEDIUM))
    other(recovery(2, metric="api_latency_ms"))
    other(anomaly(20, Severity.MEDIUM, metric="cpu_percent"))  # 18 min later
    assert [s.metric_name for s in other.state.signals] == ["cpu_percent"]
    other(anomaly(40, Severity.MEDIUM, metric="disk_percent"))  # cpu silent 20 min
    assert [s.metric_name for s in other.state.signals] == ["disk_percent"]


# --------------------------------------------------------------------------- re-open


def test_re_open_inside_the_window_keeps_the_id_and_the_revision_sequence() -> None:
    run = Run()
    (opened,) = run(anomaly(0, Severity.CRITICAL))
    (resolved,) = run(recovery(10))

    out = run(anomaly(30, Severity.HIGH))  # the same series fires again, 20 min later

    assert statuses(out) == ["reopened"]
    inc = out[0]
    assert inc.id == opened.id
    assert [opened.revision, resolved.revision, inc.revision] == [1, 2, 3]
    assert inc.state == "firing" and inc.notify and inc.reopened == 1
    assert inc.closed_at is None and inc.resolution is None
    assert inc.opened_at == at(0)
    assert inc.timeline[-1].kind == "reopened"
    assert "re-opened 20 min after resolution" in inc.timeline[-1].text
    assert [s.state for s in inc.signals] == ["firing"]
    assert inc.signals[0].resolved_at is None
    # It can resolve again, and re-open again.
    assert statuses(run(recovery(35))) == ["resolved"]
    again = run(anomaly(40, Severity.MEDIUM, metric="cpu_percent"))
    assert statuses(again) == ["reopened"] and again[0].reopened == 2
    assert again[0].id == opened.id and again[0].revision == 5
    assert [s.metric_name for s in again[0].signals] == ["api_latency_ms", "cpu_percent"]


def test_a_re_open_needs_no_rule() -> None:
    run = Run()
    run(anomaly(0, Severity.CRITICAL))
    run(recovery(10))

    out = run(anomaly(69.9, Severity.MEDIUM, metric="cpu_percent"))  # alone: no rule

    assert statuses(out) == ["reopened"]


def test_a_new_incident_after_the_re_open_window() -> None:
    run = Run()
    (first,) = run(anomaly(0, Severity.CRITICAL))
    run(recovery(10))

    out = run(anomaly(70, Severity.CRITICAL))  # exactly closed_at + 1 h

    assert statuses(out) == ["opened"]
    assert out[0].id == incident_id("checkout", at(70)) != first.id
    assert out[0].revision == 1 and out[0].reopened == 0
    assert run.state.closed == 1


def test_weak_evidence_after_the_re_open_window_drops_the_old_incident() -> None:
    run = Run()
    run(anomaly(0, Severity.CRITICAL))
    run(recovery(10))

    assert run(anomaly(75, Severity.MEDIUM, metric="cpu_percent")) == []
    assert run.state.incident is None and run.state.closed == 1


def test_a_shorter_re_open_window_from_config() -> None:
    run = Run(config=CorrelationConfig(reopen_window_s=300))
    run(anomaly(0, Severity.CRITICAL))
    run(recovery(10))

    assert statuses(run(anomaly(16, Severity.CRITICAL))) == ["opened"]


def test_a_refresh_of_a_signal_outside_the_incident_does_not_re_open_it() -> None:
    run = Run()
    run(anomaly(0, Severity.MEDIUM, metric="disk_percent"))  # fires on, alone
    run(anomaly(10, Severity.MEDIUM, metric="disk_percent"))  # a re-send
    run(anomaly(20, Severity.CRITICAL))  # its own incident (disk's alert is 20 min older)
    assert run.state.incident is not None
    assert [s.metric_name for s in run.state.incident.signals] == ["api_latency_ms"]
    assert run(anomaly(24, Severity.MEDIUM, metric="disk_percent")) == []
    run(recovery(25))

    assert run(anomaly(29, Severity.MEDIUM, metric="disk_percent")) == []
    assert run.state.incident is not None and run.state.incident.state == "resolved"


def test_a_stale_closed_incident_re_opens_when_its_signal_reports_again() -> None:
    run = Run()
    run(anomaly(0, Severity.CRITICAL), wall=WALL0)
    kwargs: dict[str, Any] = {
        "service": "checkout", "deployments": run.deps, "errors": [], "config": CONFIG}
    run.state, (stale,) = close_if_quiet(run.state, wall_now=WALL0 + 900, **kwargs)
    assert stale.closed_at == at(15)

    out = run(anomaly(20, Severity.CRITICAL))  # a refresh of the still-firing signal

    assert statuses(out) == ["reopened"] and out[0].notify


# --------------------------------------------------------------------------- late evidence


def test_late_evidence_before_the_resolution_joins_and_re_opens_nothing() -> None:
    run = Run()
    (opened,) = run(anomaly(0, Severity.CRITICAL))
    run(recovery(10))

    late = run(anomaly(8, Severity.HIGH, kind="error_rate"))  # logs lag metrics

    assert statuses(late) == ["updated"]
    inc = late[0]
    assert inc.id == opened.id and inc.state == "resolved" and inc.notify
    assert inc.closed_at == at(10) and inc.resolution == "recovered"
    assert inc.timeline[-1].kind == "signal" and inc.timeline[-1].at == at(8)
    assert [s.kind for s in inc.signals] == ["metric", "error_rate"]
    assert any(a.kind == "error_rate" for a in inc.anomalies)

    refresh = run(anomaly(9.5, Severity.HIGH, kind="error_rate"))
    assert statuses(refresh) == ["updated"] and not refresh[0].notify
    assert refresh[0].state == "resolved" and refresh[0].timeline == inc.timeline

    # Evidence exactly at the resolution is still late.
    assert statuses(run(anomaly(10, Severity.MEDIUM, metric="cpu_percent"))) == ["updated"]
    assert run.state.incident is not None and run.state.incident.state == "resolved"

    # The late signal still fires after the resolution: that re-opens it.
    after = run(anomaly(13, Severity.HIGH, kind="error_rate"))
    assert statuses(after) == ["reopened"] and after[0].id == opened.id


def test_a_late_recovery_after_the_resolution_re_opens_nothing() -> None:
    run = Run()
    run(anomaly(0, Severity.CRITICAL))
    run(recovery(10))
    run(anomaly(8, Severity.HIGH, kind="error_rate"))

    out = run(recovery(12, kind="error_rate"))

    assert statuses(out) == ["updated"]
    assert out[0].state == "resolved" and [s.state for s in out[0].signals] == [
        "resolved", "resolved"
    ]


# --------------------------------------------------------------------------- deployments


def test_a_deployment_joins_the_timeline_of_a_firing_incident() -> None:
    run = Run()
    (opened,) = run(anomaly(0, Severity.CRITICAL))

    out = deploy(run, 3, "v2.0.1", offset=1)

    assert statuses(out) == ["updated"]
    inc = out[0]
    assert inc.id == opened.id and inc.notify and inc.revision == 2
    assert inc.timeline[-1].kind == "deployment"
    assert inc.timeline[-1].at == at(3)
    assert "v2.0.1" in inc.timeline[-1].text
    assert [d.version for d in inc.recent_deployments] == ["v2.0.1"]  # after updated_at
    assert inc.updated_at == at(0)  # a deployment is no evidence of failure


def test_a_deployment_re_announced_under_a_new_offset_changes_nothing() -> None:
    run = Run()
    run(anomaly(0, Severity.CRITICAL))
    deploy(run, 3, "v2.0.1", offset=1)
    before = run.state.incident

    assert deploy(run, 3, "v2.0.1", offset=2) == []
    assert run.state.incident == before
    assert deploy(run, 3, "v2.0.1", offset=2) == []  # and a replay


def test_a_deployment_after_the_resolution_re_opens_nothing_a_late_one_joins() -> None:
    run = Run()
    run(anomaly(0, Severity.CRITICAL))
    run(recovery(10))

    assert deploy(run, 12, "v2.0.2", offset=1) == []
    late = deploy(run, 9, "v2.0.1", offset=2)  # the rollback, announced late

    assert statuses(late) == ["updated"] and late[0].state == "resolved"
    assert late[0].timeline[-1].kind == "deployment"


def test_a_deployment_with_no_incident_uses_rule_2() -> None:
    run = Run()
    run(anomaly(10, Severity.HIGH))

    out = deploy(run, 2, "v7.0.0", offset=1)

    assert statuses(out) == ["opened"]
    assert [s.metric_name for s in out[0].signals] == ["api_latency_ms"]
    assert run.state.signals == ()


# --------------------------------------------------------------------------- records


def test_timeline_is_bounded_keeping_the_first_entry_and_texts_are_short() -> None:
    run = Run()
    run(anomaly(0, Severity.CRITICAL, metric="m" * 300))
    for k in range(1, 80):
        run(anomaly(k * 0.1, Severity.MEDIUM, metric=f"metric_{k}_" + "x" * 250))
    (last,) = deploy(run, 9, "v" * 256, offset=1)

    assert len(last.timeline) == CONFIG.max_timeline == 50
    assert last.timeline[0].kind == "opened"
    assert last.timeline[-1].kind == "deployment"
    assert last.timeline[1].text.startswith("metric_32_")  # 1 + 79 signals + 1 deployment
    assert all(len(e.text) < 200 for e in last.timeline)
    assert all("\n" not in e.text for e in last.timeline)


def test_every_record_carries_lifecycle_fields_and_json_round_trips() -> None:
    run = Run(deps=deployments(-5), errors=[error(-1)])
    records = run(anomaly(0, Severity.CRITICAL))
    records += run(anomaly(1, Severity.MEDIUM, kind="error_rate"))
    records += run(recovery(4))
    records += run(recovery(5, kind="error_rate"))
    records += run(anomaly(8, Severity.HIGH))

    assert statuses(records) == ["opened", "updated", "updated", "resolved", "reopened"]
    for record in records:
        again = Incident.model_validate_json(record.model_dump_json())
        assert again == record
        assert record.signals and record.timeline
        assert [e.message for e in record.recent_errors] == ["boom"]
        assert [d.version for d in record.recent_deployments] == ["v1.0.0"]
    data = json.loads(json.dumps(run.state.to_dict(), allow_nan=False))
    assert CorrelationState.from_dict(data) == run.state


# --------------------------------------------------------------------------- replay


def test_a_replayed_recovery_changes_nothing() -> None:
    run = Run()
    run(anomaly(0, Severity.CRITICAL), source=("autopilot.anomalies", 1))
    assert statuses(run(recovery(5), source=("autopilot.anomalies", 2))) == ["resolved"]
    snapshot = run.state

    assert run(recovery(5), source=("autopilot.anomalies", 2)) == []  # replay
    assert run.state is snapshot
    assert run(recovery(5), source=("autopilot.anomalies", 3)) == []  # a re-send
    assert run.state.incident == snapshot.incident


def test_a_re_sent_alert_after_a_crash_does_not_re_open_or_join_twice() -> None:
    run = Run()
    run(anomaly(0, Severity.CRITICAL), source=("autopilot.anomalies", 1))
    joined = run(anomaly(2, Severity.MEDIUM, metric="cpu_percent"),
                 source=("autopilot.anomalies", 2))
    assert statuses(joined) == ["updated"]

    again = run(anomaly(2, Severity.MEDIUM, metric="cpu_percent"),
                source=("autopilot.anomalies", 3))

    assert again == []
    assert run.state.incident is not None and run.state.incident.revision == 2


# --------------------------------------------------------------------------- persisted state


#: A state dict as the version before the lifecycle wrote it (``to_dict`` at HEAD):
#: a firing incident with two anomalies of one series and a recent anomaly of another.
OLD_ANOMALY = {
    "kind": "metric", "metric_name": "api_latency_ms", "service": "checkout",
    "series": "checkout|api_latency_ms|", "current_value": 500.0, "baseline_mean": 100.0,
    "baseline_std_dev": 10.0, "z_score": 9.0, "deviation_percent": 400.0,
    "severity": "critical", "detected_at": "2024-05-01T12:00:00Z", "labels": {},
}
OLD_ANOMALY_2 = {**OLD_ANOMALY, "severity": "medium", "z_score": 2.7,
                 "detected_at": "2024-05-01T12:02:00Z"}
OLD_RECENT = {**OLD_ANOMALY, "metric_name": "cpu_percent", "series": "",
              "severity": "medium", "z_score": 2.7, "detected_at": "2024-05-01T11:58:00Z"}
OLD_STATE = {
    "recent": [OLD_RECENT, OLD_ANOMALY, OLD_ANOMALY_2],
    "incident": {
        "id": "inc-0123456789ab",
        "opened_at": "2024-05-01T12:00:00+00:00",
        "updated_at": "2024-05-01T12:02:00+00:00",
        "revision": 2,
        "severity": "critical",
        "notified_severity": "critical",
        "trigger_reason": "critical anomaly on api_latency_ms (z=9.0)",
        "anomalies": [OLD_ANOMALY, OLD_ANOMALY_2],
        "wall_updated": 1000000.0,
    },
    "offsets": {"autopilot.anomalies": 41},
    "closed": 3,
}


def test_state_written_by_the_previous_version_loads() -> None:
    state = CorrelationState.from_dict(json.loads(json.dumps(OLD_STATE)))

    inc = state.incident
    assert inc is not None
    assert (inc.id, inc.revision, inc.state, inc.closed_at) == (
        "inc-0123456789ab", 2, "firing", None
    )
    assert state.closed == 3 and state.offsets == {"autopilot.anomalies": 41}
    (sig,) = inc.signals
    assert sig.series == "checkout|api_latency_ms|" and sig.state == "firing"
    assert sig.severity is Severity.CRITICAL
    assert (sig.first_at, sig.last_at) == (T0, T0 + timedelta(minutes=2))
    assert [e.kind for e in inc.timeline] == ["opened"]
    assert [s.series for s in state.signals] == ["checkout|cpu_percent|"]
    # It round-trips in the new form.
    assert CorrelationState.from_dict(json.loads(json.dumps(state.to_dict()))) == state


def test_an_old_open_incident_resolves_on_recovery_and_keeps_its_revisions() -> None:
    run = Run()
    run.state = CorrelationState.from_dict(json.loads(json.dumps(OLD_STATE)))

    assert run(anomaly(4, Severity.CRITICAL), source=("autopilot.anomalies", 42)) == []
    assert run(anomaly(3, Severity.MEDIUM, metric="cpu_percent")) == []  # a refresh
    out = run(recovery(6), source=("autopilot.anomalies", 43))

    assert statuses(out) == ["resolved"]
    assert out[0].id == "inc-0123456789ab" and out[0].revision == 3
    assert out[0].closed_at == at(6)


def test_state_of_an_old_quiet_incident_still_closes_on_the_wall_clock() -> None:
    state = CorrelationState.from_dict(OLD_STATE)
    kwargs: dict[str, Any] = {
        "service": "checkout", "deployments": Run().deps, "errors": [], "config": CONFIG}

    assert is_quiet(state, 1_000_900.0, CONFIG)
    after, (record,) = close_if_quiet(state, wall_now=1_000_900.0, **kwargs)

    assert record.status == "resolved" and record.resolution == "stale"
    assert record.closed_at == at(17)
    assert after.incident is not None and after.incident.state == "resolved"


def test_config_reads_the_re_open_window_setting() -> None:
    from autopilot.settings import load_settings

    config = CorrelationConfig.from_settings(load_settings({"AUTOPILOT_REOPEN_WINDOW_S": "120"}))

    assert config.reopen_window_s == 120
    assert CorrelationConfig.from_settings(load_settings({})).reopen_window_s == 3600


def test_step_accepts_a_restored_state_identically() -> None:
    run = Run()
    run(anomaly(0, Severity.CRITICAL))
    run(recovery(5))
    restored = CorrelationState.from_dict(json.loads(json.dumps(run.state.to_dict())))
    kwargs: dict[str, Any] = {"source": None, "deployments": run.deps, "errors": [],
                              "wall_now": WALL0, "config": CONFIG}
    nxt = anomaly(9, Severity.HIGH, kind="error_rate")

    assert step(restored, nxt, **kwargs) == step(run.state, nxt, **kwargs)
