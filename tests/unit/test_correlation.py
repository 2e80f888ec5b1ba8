"""Unit tests of autopilot.correlation: incident rules, lifecycle, ids, context, replay."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from autopilot.correlation import (
    CorrelationConfig,
    CorrelationState,
    close_if_quiet,
    incident_id,
    is_quiet,
    step,
)
from autopilot.deployments import DeploymentHistory
from autopilot.models import Anomaly, DeploymentEvent, Incident, LogEntry, Severity
from autopilot.settings import load_settings
from tests.factories import log_entry

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
CONFIG = CorrelationConfig()
WALL0 = 1_000_000.0
Z = {Severity.MEDIUM: 2.7, Severity.HIGH: 3.5, Severity.CRITICAL: 9.0}


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def anomaly(
    minutes: float = 0.0,
    severity: Severity = Severity.MEDIUM,
    *,
    kind: str = "metric",
    metric: str = "api_latency_ms",
    service: str = "checkout",
    state: str = "firing",
    value: float = 500.0,
    series: str = "",
) -> Anomaly:
    """An anomaly record; ``state="resolved"`` is a recovery (value back near 100)."""
    if kind == "error_rate":
        metric = "error_rate"
        series = series or f"{service}|error_rate|"
    if state == "resolved" and value == 500.0:
        value = 104.0
    return Anomaly(
        kind=kind,
        state=state,
        metric_name=metric,
        service=service,
        series=series,
        current_value=value,
        baseline_mean=100.0,
        baseline_std_dev=10.0,
        z_score=(value - 100.0) / 10.0 if state == "resolved" else Z[severity],
        deviation_percent=value - 100.0,
        severity=severity,
        detected_at=at(minutes),
    )


def recovery(minutes: float, **kwargs: object) -> Anomaly:
    """The detector's recovery record of a series (``state="resolved"``)."""
    return anomaly(minutes, state="resolved", **kwargs)  # type: ignore[arg-type]


def deployments(*minutes: float, service: str = "checkout") -> DeploymentHistory:
    events = [
        DeploymentEvent(timestamp=at(m), service=service, version=f"v1.{i}.0")
        for i, m in enumerate(minutes)
    ]
    return DeploymentHistory().apply(events, offset=0) if events else DeploymentHistory()


def error(minutes: float, message: str = "boom") -> LogEntry:
    return log_entry(message, at=at(minutes))


class Run:
    """Feeds anomalies to one service's correlation state."""

    def __init__(
        self,
        deps: DeploymentHistory | None = None,
        errors: list[LogEntry] | None = None,
        config: CorrelationConfig = CONFIG,
    ) -> None:
        self.state = CorrelationState()
        self.deps = deps or DeploymentHistory()
        self.errors = errors or []
        self.config = config

    def __call__(
        self, a: Anomaly, *, wall: float = WALL0, source: tuple[str, int] | None = None
    ) -> list[Incident]:
        self.state, out = step(
            self.state,
            a,
            source=source,
            deployments=self.deps,
            errors=self.errors,
            wall_now=wall,
            config=self.config,
        )
        return out


# --------------------------------------------------------------------------- rule 1


def test_rule_1_a_critical_anomaly_alone_opens_an_incident() -> None:
    run = Run()

    out = run(anomaly(0, Severity.CRITICAL))

    assert len(out) == 1
    inc = out[0]
    assert inc.status == "opened"
    assert inc.notify is True
    assert inc.revision == 1
    assert inc.severity is Severity.CRITICAL
    assert inc.service == "checkout"
    assert "critical anomaly on api_latency_ms" in inc.trigger_reason
    assert inc.opened_at == inc.updated_at == T0
    assert [a.severity for a in inc.anomalies] == [Severity.CRITICAL]


@pytest.mark.parametrize("severity", [Severity.MEDIUM, Severity.HIGH])
def test_a_single_non_critical_anomaly_without_evidence_opens_nothing(severity: Severity) -> None:
    run = Run()

    assert run(anomaly(0, severity)) == []
    assert run.state.incident is None
    assert len(run.state.recent) == 1


# --------------------------------------------------------------------------- rule 2


def test_rule_2_high_anomaly_within_30_min_after_a_deployment_opens_an_incident() -> None:
    run = Run(deps=deployments(-29))

    out = run(anomaly(0, Severity.HIGH))

    assert len(out) == 1
    assert out[0].status == "opened"
    assert out[0].severity is Severity.HIGH
    assert "after deployment of version v1.0.0" in out[0].trigger_reason
    assert "29 min" in out[0].trigger_reason
    assert [d.version for d in out[0].recent_deployments] == ["v1.0.0"]


def test_rule_2_counts_a_deployment_exactly_30_min_before() -> None:
    run = Run(deps=deployments(-30))

    assert [i.status for i in run(anomaly(0, Severity.HIGH))] == ["opened"]


def test_rule_2_ignores_a_deployment_31_min_before() -> None:
    run = Run(deps=deployments(-31))

    assert run(anomaly(0, Severity.HIGH)) == []


def test_rule_2_ignores_a_deployment_after_the_anomaly() -> None:
    run = Run(deps=deployments(1))

    assert run(anomaly(0, Severity.HIGH)) == []


def test_rule_2_needs_at_least_high_severity() -> None:
    run = Run(deps=deployments(-5))

    assert run(anomaly(0, Severity.MEDIUM)) == []


# --------------------------------------------------------------------------- rule 3


def test_rule_3_metric_anomaly_and_error_rate_spike_within_10_min() -> None:
    run = Run()
    assert run(anomaly(0, Severity.MEDIUM, kind="error_rate")) == []

    out = run(anomaly(8, Severity.MEDIUM))

    assert len(out) == 1
    assert out[0].status == "opened"
    assert "metric anomaly and error-rate spike within 10 min" in out[0].trigger_reason
    assert {a.kind for a in out[0].anomalies} == {"metric", "error_rate"}
    assert out[0].opened_at == at(0)
    assert out[0].updated_at == at(8)


def test_rule_3_does_not_fire_for_two_error_rate_spikes() -> None:
    # The service's error rate spikes, recovers, and spikes again: two alerts of one
    # series (rule 4), but no metric anomaly, so rule 3 is not named.
    run = Run()
    run(anomaly(0, kind="error_rate"))
    run(recovery(3, kind="error_rate"))

    out = run(anomaly(5, kind="error_rate"))

    assert len(out) == 1  # rule 4 opens it, rule 3 is not named
    assert "error-rate spike" not in out[0].trigger_reason
    assert "2 anomalies within 10 min" in out[0].trigger_reason


def test_a_re_sent_error_rate_spike_is_not_a_second_anomaly() -> None:
    run = Run()
    run(anomaly(0, kind="error_rate"))

    assert run(anomaly(5, kind="error_rate")) == []  # a refresh of the firing series
    assert run.state.incident is None
    assert len(run.state.recent) == 1


# --------------------------------------------------------------------------- rule 4


def test_rule_4_two_anomalies_within_10_min() -> None:
    run = Run()
    assert run(anomaly(0)) == []

    out = run(anomaly(10, metric="cpu_percent"))

    assert len(out) == 1
    assert "2 anomalies within 10 min" in out[0].trigger_reason
    assert out[0].severity is Severity.MEDIUM
    assert out[0].opened_at == at(0)


def test_rule_4_not_when_11_min_apart() -> None:
    run = Run()
    assert run(anomaly(0)) == []

    assert run(anomaly(11)) == []
    assert run.state.incident is None
    assert len(run.state.recent) == 1  # the older one left the window


# --------------------------------------------------------------------------- lifecycle


def test_new_signals_and_escalations_update_and_notify_refreshes_publish_nothing() -> None:
    run = Run(deps=deployments(-10))
    opened = run(anomaly(0, Severity.HIGH))[0]

    cpu = run(anomaly(2, Severity.MEDIUM, metric="cpu_percent"))  # a new signal joins
    refresh = run(anomaly(3, Severity.HIGH))  # latency still firing: a re-send
    critical = run(anomaly(4, Severity.CRITICAL))  # latency escalates
    refresh_again = run(anomaly(5, Severity.CRITICAL))

    assert refresh == [] and refresh_again == []
    records = [opened, *cpu, *critical]
    assert [r.status for r in records] == ["opened", "updated", "updated"]
    assert {r.id for r in records} == {opened.id}
    assert [r.revision for r in records] == [1, 2, 3]
    assert [r.notify for r in records] == [True, True, True]
    assert [r.severity for r in records] == [Severity.HIGH, Severity.HIGH, Severity.CRITICAL]
    assert [e.kind for e in records[-1].timeline] == ["opened", "signal", "escalated"]
    assert "high → critical" in records[-1].timeline[-1].text
    assert [(s.metric_name, s.severity) for s in records[-1].signals] == [
        ("api_latency_ms", Severity.CRITICAL),
        ("cpu_percent", Severity.MEDIUM),
    ]
    # The refresh at 5 min moved the incident's evidence time, without a record.
    assert run.state.incident is not None
    assert run.state.incident.updated_at == at(5)
    assert run.state.incident.revision == 3
    assert len(records[-1].anomalies) == 3  # alerts only, no refreshes
    assert records[-1].trigger_reason == opened.trigger_reason


def test_one_open_incident_per_service() -> None:
    run = Run()
    first = run(anomaly(0, Severity.CRITICAL))
    second = run(anomaly(1, Severity.CRITICAL, metric="cpu_percent"))

    assert [i.status for i in first + second] == ["opened", "updated"]
    assert first[0].id == second[0].id


def test_incident_id_is_deterministic_from_service_and_opened_at() -> None:
    a = Run()(anomaly(0, Severity.CRITICAL))[0]
    b = Run()(anomaly(0, Severity.CRITICAL))[0]
    other = Run()(anomaly(0, Severity.CRITICAL, service="payments"))[0]

    assert a.id == b.id == incident_id("checkout", T0)
    assert a.id.startswith("inc-")
    assert other.id == incident_id("payments", T0)
    assert other.id != a.id
    assert incident_id("checkout", at(1)) != a.id


def test_event_time_stale_close_after_15_quiet_minutes_then_a_re_open() -> None:
    run = Run()
    first = run(anomaly(0, Severity.CRITICAL))[0]

    out = run(anomaly(15.5, Severity.CRITICAL, metric="cpu_percent"))

    assert [i.status for i in out] == ["resolved", "reopened"]
    stale, reopened = out
    assert stale.id == reopened.id == first.id
    assert (stale.revision, reopened.revision) == (2, 3)
    assert stale.notify and reopened.notify
    assert stale.state == "resolved" and stale.resolution == "stale"
    assert stale.closed_at == at(15)  # last evidence + 15 min
    assert stale.timeline[-1].kind == "stale"
    assert reopened.state == "firing" and reopened.reopened == 1
    assert reopened.closed_at is None and reopened.resolution is None
    assert run.state.closed == 0


def test_event_time_stale_close_then_a_new_incident_after_the_re_open_window() -> None:
    run = Run()
    first = run(anomaly(0, Severity.CRITICAL))[0]

    out = run(anomaly(80, Severity.CRITICAL, metric="cpu_percent"))

    assert [i.status for i in out] == ["resolved", "opened"]
    assert out[0].id == first.id and out[0].closed_at == at(15)
    assert out[1].id == incident_id("checkout", at(80)) != first.id
    assert out[1].revision == 1
    assert run.state.closed == 1


def test_event_time_stale_close_without_a_new_incident_for_weak_evidence() -> None:
    run = Run()
    run(anomaly(0, Severity.CRITICAL))

    out = run(anomaly(80, Severity.MEDIUM, metric="cpu_percent"))

    assert [i.status for i in out] == ["resolved"]
    assert run.state.incident is None
    assert run.state.closed == 1


def test_evidence_exactly_15_min_later_still_updates() -> None:
    run = Run()
    run(anomaly(0, Severity.CRITICAL))

    out = run(anomaly(15, Severity.MEDIUM, metric="cpu_percent"))

    assert [i.status for i in out] == ["updated"]


def test_wall_clock_stale_close_when_the_service_goes_quiet() -> None:
    run = Run()
    opened = run(anomaly(0, Severity.CRITICAL), wall=WALL0)[0]
    kwargs: dict[str, Any] = {
        "service": "checkout", "deployments": run.deps, "errors": [], "config": CONFIG}

    assert not is_quiet(run.state, WALL0 + 899, CONFIG)
    same, nothing = close_if_quiet(run.state, wall_now=WALL0 + 899, **kwargs)
    assert nothing == [] and same == run.state

    assert is_quiet(run.state, WALL0 + 900, CONFIG)
    after, records = close_if_quiet(run.state, wall_now=WALL0 + 900, **kwargs)

    assert len(records) == 1
    stale = records[0]
    assert stale.status == "resolved" and stale.state == "resolved"
    assert stale.resolution == "stale" and stale.notify
    assert stale.id == opened.id
    assert stale.revision == 2
    assert stale.closed_at == at(15)  # event time: last evidence + 15 min
    assert [e.kind for e in stale.timeline] == ["opened", "stale"]
    assert [s.state for s in stale.signals] == ["firing"]  # no recovery was seen
    # The resolved incident stays (for a re-open), and is not closed twice.
    assert after.incident is not None and after.incident.state == "resolved"
    assert after.closed == 0
    assert not is_quiet(after, WALL0 + 900 + 3599, CONFIG)
    assert close_if_quiet(after, wall_now=WALL0 + 900 + 3599, **kwargs) == (after, [])


def test_wall_clock_forgets_a_resolved_incident_after_the_re_open_window() -> None:
    run = Run()
    run(anomaly(0, Severity.CRITICAL), wall=WALL0)
    run(recovery(5), wall=WALL0 + 300)
    kwargs: dict[str, Any] = {
        "service": "checkout", "deployments": run.deps, "errors": [], "config": CONFIG}
    assert run.state.incident is not None and run.state.incident.state == "resolved"

    assert not is_quiet(run.state, WALL0 + 300 + 3599, CONFIG)
    assert is_quiet(run.state, WALL0 + 300 + 3600, CONFIG)
    after, records = close_if_quiet(run.state, wall_now=WALL0 + 300 + 3600, **kwargs)

    assert records == []  # it was told already; it is only forgotten
    assert after.incident is None and after.closed == 1
    assert not is_quiet(after, WALL0 + 100_000, CONFIG)


def test_new_evidence_resets_the_wall_clock_quiet_timer() -> None:
    run = Run()
    run(anomaly(0, Severity.CRITICAL), wall=WALL0)
    run(anomaly(1, Severity.MEDIUM, metric="cpu_percent"), wall=WALL0 + 600)

    assert not is_quiet(run.state, WALL0 + 1000, CONFIG)
    assert is_quiet(run.state, WALL0 + 1500, CONFIG)


def test_a_refresh_resets_the_wall_clock_quiet_timer_without_a_record() -> None:
    run = Run()
    run(anomaly(0, Severity.CRITICAL), wall=WALL0)

    assert run(anomaly(5, Severity.CRITICAL), wall=WALL0 + 800) == []

    assert not is_quiet(run.state, WALL0 + 1600, CONFIG)
    assert is_quiet(run.state, WALL0 + 1700, CONFIG)


# --------------------------------------------------------------------------- context


def test_context_errors_from_10_min_before_opening_and_deployments_30_min_before() -> None:
    errors = [
        error(-11, "too old"),
        error(-9, "kept 1"),
        error(-4, "kept both"),
        error(4.5, "kept 2"),
        error(5, "kept 3"),
        error(6, "after the latest evidence"),
    ]
    deps = deployments(-31, -29, 3, 7)
    run = Run(deps=deps, errors=errors)
    opened = run(anomaly(0, Severity.CRITICAL))[0]

    assert [e.message for e in opened.recent_errors] == ["kept 1", "kept both"]
    assert [d.version for d in opened.recent_deployments] == ["v1.1.0"]

    updated = run(anomaly(5, Severity.MEDIUM, metric="cpu_percent"))[0]

    assert updated.updated_at == at(5)
    # From 10 min before the incident began (−10) to its newest evidence (5): the lines
    # that led up to it stay with it.
    assert [e.message for e in updated.recent_errors] == [
        "kept 1", "kept both", "kept 2", "kept 3"]
    assert [d.version for d in updated.recent_deployments] == ["v1.1.0", "v1.2.0"]


def test_context_keeps_the_errors_that_led_up_to_the_incident_and_drops_older_ones() -> None:
    run = Run(errors=[error(-11, "too old"), error(-1, "early"), error(11, "late")])
    run(anomaly(0, Severity.CRITICAL))

    updated = run(anomaly(12, Severity.MEDIUM, metric="cpu_percent"))[0]

    assert [e.message for e in updated.recent_errors] == ["early", "late"]


# --------------------------------------------------------------------------- replay, state


def test_replay_of_the_same_source_offset_changes_nothing() -> None:
    run = Run()
    first = run(anomaly(0, Severity.CRITICAL), source=("autopilot.anomalies", 7))
    snapshot = run.state

    again = run(anomaly(0, Severity.CRITICAL), source=("autopilot.anomalies", 7))
    older = run(anomaly(1, Severity.CRITICAL), source=("autopilot.anomalies", 3))

    assert len(first) == 1
    assert again == [] and older == []
    assert run.state is snapshot
    assert run.state.offsets == {"autopilot.anomalies": 7}


def test_an_anomaly_re_sent_under_a_new_offset_is_applied_once() -> None:
    # A detector that crashed after publishing, before writing its state, re-sends
    # the same anomaly: a duplicate must not make "two anomalies within 10 min".
    run = Run()
    first = run(anomaly(0, Severity.MEDIUM), source=("autopilot.anomalies", 7))
    again = run(anomaly(0, Severity.MEDIUM), source=("autopilot.anomalies", 8))

    assert first == [] and again == []
    assert run.state.incident is None and len(run.state.recent) == 1
    assert run.state.offsets == {"autopilot.anomalies": 8}


def test_a_re_sent_anomaly_does_not_update_the_open_incident() -> None:
    run = Run()
    run(anomaly(0, Severity.CRITICAL), source=("autopilot.anomalies", 1))
    assert run.state.incident is not None
    revision = run.state.incident.revision

    assert run(anomaly(0, Severity.CRITICAL), source=("autopilot.anomalies", 2)) == []
    assert run.state.incident is not None
    assert run.state.incident.revision == revision
    assert len(run.state.incident.anomalies) == 1


def test_a_different_anomaly_at_the_same_instant_is_new_evidence() -> None:
    run = Run()
    run(anomaly(0, Severity.MEDIUM), source=("autopilot.anomalies", 1))

    out = run(anomaly(0, Severity.MEDIUM, metric="cpu_percent"),
              source=("autopilot.anomalies", 2))

    assert [i.status for i in out] == ["opened"]


def test_offsets_are_tracked_per_source_topic() -> None:
    run = Run()
    run(anomaly(0, Severity.CRITICAL), source=("autopilot.anomalies", 7))

    out = run(anomaly(1, Severity.MEDIUM, metric="cpu_percent"), source=("autopilot.other", 7))

    assert [i.status for i in out] == ["updated"]
    assert run.state.offsets == {"autopilot.anomalies": 7, "autopilot.other": 7}


def test_state_round_trips_through_json() -> None:
    run = Run(deps=deployments(-10))
    run(anomaly(0, Severity.HIGH), source=("autopilot.anomalies", 1), wall=WALL0 + 0.25)
    run(anomaly(3, Severity.MEDIUM, kind="error_rate"), source=("autopilot.anomalies", 2))

    data = json.loads(json.dumps(run.state.to_dict(), allow_nan=False))
    restored = CorrelationState.from_dict(data)

    assert restored == run.state
    assert CorrelationState.from_dict(None) == CorrelationState()
    assert CorrelationState.from_dict(CorrelationState().to_dict()) == CorrelationState()
    nxt = anomaly(4, Severity.CRITICAL)
    kwargs: dict[str, Any] = {
        "source": ("autopilot.anomalies", 3),
        "deployments": run.deps,
        "errors": [],
        "wall_now": WALL0 + 5,
        "config": CONFIG,
    }
    assert step(restored, nxt, **kwargs) == step(run.state, nxt, **kwargs)


def test_config_from_default_settings_equals_seed_windows() -> None:
    config = CorrelationConfig.from_settings(load_settings({}))

    assert config == CorrelationConfig()
    assert (config.window_s, config.deployment_window_s, config.close_after_s) == (600, 1800, 900)


# --- a deployment processed after the anomalies it explains --------------------------


def _late_deployment(run: Run, minutes: float, offset: int = 0) -> list[Incident]:
    from autopilot.correlation import on_deployment

    dep = DeploymentEvent(timestamp=at(minutes), service="checkout", version="v7.0.0")
    history = run.deps.apply([dep], offset=100 + offset)
    run.deps = history
    run.state, out = on_deployment(
        run.state, dep, source=("autopilot.correlation.control", offset),
        deployments=history, errors=run.errors, wall_now=WALL0, config=CONFIG,
    )
    return out


def test_a_late_deployment_opens_the_incident_its_high_anomaly_would_have_opened() -> None:
    run = Run()
    assert run(anomaly(10, Severity.HIGH)) == []  # alone, a high anomaly opens nothing
    (inc,) = _late_deployment(run, minutes=2)  # deployed 8 min before it, arrives later
    assert inc.status == "opened" and inc.notify
    assert "after deployment of version v7.0.0" in inc.trigger_reason
    assert [d.version for d in inc.recent_deployments] == ["v7.0.0"]
    assert inc.id == incident_id("checkout", at(10))


def test_a_late_deployment_does_not_blame_medium_or_earlier_anomalies() -> None:
    run = Run()
    run(anomaly(10, Severity.MEDIUM))
    assert _late_deployment(run, minutes=2) == []
    run2 = Run()
    run2(anomaly(1, Severity.HIGH))
    assert _late_deployment(run2, minutes=2) == []  # anomaly came before the deployment


def test_a_replayed_late_deployment_changes_nothing() -> None:
    run = Run()
    run(anomaly(10, Severity.HIGH))
    assert len(_late_deployment(run, minutes=2, offset=5)) == 1
    before = run.state
    assert _late_deployment(run, minutes=2, offset=5) == []
    assert run.state == before
