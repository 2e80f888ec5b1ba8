"""Unit tests of corroboration in autopilot.correlation (``AUTOPILOT_ALONE_FOR_S``).

With ``alone_for_s`` set, a critical metric anomaly with nothing to corroborate it
opens an incident only when its series is still firing that long after it fired (a
Prometheus rule's ``for``); two alerts of one series are one series for rule 4; a
resolved incident re-opens only on evidence that would open one. Each test has its
control: the same records with ``alone_for_s`` 0 (today's rules) behave otherwise.

Times are event time, in minutes after T0 (the builders in test_correlation).
"""

from __future__ import annotations

from dataclasses import replace

from autopilot.correlation import CorrelationConfig, on_deployment
from autopilot.models import DeploymentEvent, Incident, Severity
from autopilot.settings import load_settings
from tests.unit.test_correlation import (
    CONFIG,
    WALL0,
    Run,
    anomaly,
    at,
    deployments,
    recovery,
)

FOR_5M = replace(CONFIG, alone_for_s=300)


def statuses(records: list[Incident]) -> list[str]:
    return [r.status for r in records]


def test_the_setting_reaches_the_config_and_is_off_by_default() -> None:
    assert CorrelationConfig.from_settings(load_settings({})).alone_for_s == 0
    got = CorrelationConfig.from_settings(load_settings({"AUTOPILOT_ALONE_FOR_S": "300"}))
    assert got.alone_for_s == 300


def test_a_lone_critical_spike_that_recovers_at_once_pages_nobody() -> None:
    run = Run(config=FOR_5M)
    assert run(anomaly(0, Severity.CRITICAL)) == []
    assert run(recovery(2)) == []
    assert run.state.incident is None
    # Control: without corroboration the same spike opens an incident at once.
    control = Run()
    assert statuses(control(anomaly(0, Severity.CRITICAL))) == ["opened"]


def test_a_lone_critical_series_still_firing_after_alone_for_opens_on_its_re_send() -> None:
    run = Run(config=FOR_5M)
    assert run(anomaly(0, Severity.CRITICAL)) == []
    assert run(anomaly(4, Severity.CRITICAL)) == []  # a re-send before 5 min: waits
    (opened,) = run(anomaly(5, Severity.CRITICAL))
    assert opened.status == "opened" and opened.notify
    assert opened.opened_at == at(0)  # the incident began when the series fired
    assert "firing for 5 min" in opened.trigger_reason
    assert [s.series for s in opened.signals] == ["checkout|api_latency_ms|"]
    # A medium series firing as long is not critical: it waits for corroboration.
    medium = Run(config=FOR_5M)
    assert medium(anomaly(0, Severity.MEDIUM)) == []
    assert medium(anomaly(10, Severity.MEDIUM)) == []


def test_two_alerts_of_one_series_are_one_series() -> None:
    run = Run(config=FOR_5M)
    assert run(anomaly(0, Severity.MEDIUM)) == []
    assert run(recovery(1)) == []
    assert run(anomaly(3, Severity.MEDIUM)) == []  # the same series fires again
    assert run.state.incident is None
    control = Run()
    control(anomaly(0, Severity.MEDIUM))
    control(recovery(1))
    assert statuses(control(anomaly(3, Severity.MEDIUM))) == ["opened"]


def test_a_second_series_corroborates_at_once() -> None:
    run = Run(config=FOR_5M)
    assert run(anomaly(0, Severity.CRITICAL)) == []
    (opened,) = run(anomaly(1, Severity.HIGH, metric="cpu_percent"))
    assert opened.status == "opened"
    assert "2 anomalous series within 10 min" in opened.trigger_reason
    assert {s.metric_name for s in opened.signals} == {"api_latency_ms", "cpu_percent"}


def test_a_deployment_or_an_error_spike_corroborates_at_once() -> None:
    run = Run(deps=deployments(0), config=FOR_5M)
    (opened,) = run(anomaly(5, Severity.CRITICAL))
    assert "after deployment of version v1.0.0" in opened.trigger_reason
    run = Run(config=FOR_5M)
    assert run(anomaly(0, Severity.CRITICAL)) == []
    (opened,) = run(anomaly(1, Severity.HIGH, kind="error_rate"))
    assert "metric anomaly and error-rate spike" in opened.trigger_reason


def test_critical_alerts_and_error_spikes_still_open_alone() -> None:
    run = Run(config=FOR_5M)
    (opened,) = run(anomaly(0, Severity.CRITICAL, kind="error_rate"))
    assert opened.status == "opened"


def _resolved_incident(config: CorrelationConfig) -> Run:
    """Latency and CPU fire at minutes 0 and 1 (an incident opens at one of them: 1
    with corroboration, 0 without); both recover by minute 4."""
    run = Run(config=config)
    run(anomaly(0, Severity.CRITICAL))
    run(anomaly(1, Severity.HIGH, metric="cpu_percent"))
    assert run.state.incident is not None and run.state.incident.state == "firing"
    run(recovery(3))
    assert statuses(run(recovery(4, metric="cpu_percent"))) == ["resolved"]
    return run


def test_a_lone_re_fire_does_not_re_open_until_it_has_fired_long_enough() -> None:
    run = _resolved_incident(FOR_5M)
    assert run(anomaly(20, Severity.CRITICAL)) == []  # re-fires alone
    assert run.state.incident is not None and run.state.incident.state == "resolved"
    assert run(recovery(22)) == []  # and recovers: nobody was paged
    assert run(anomaly(30, Severity.CRITICAL)) == []
    (reopened,) = run(anomaly(35, Severity.CRITICAL))  # still firing 5 min later
    assert reopened.status == "reopened" and reopened.reopened == 1
    # Control: today's rules re-open on the first re-fire.
    control = _resolved_incident(CONFIG)
    assert statuses(control(anomaly(20, Severity.CRITICAL))) == ["reopened"]


def test_corroborated_evidence_re_opens_at_once() -> None:
    run = _resolved_incident(FOR_5M)
    assert run(anomaly(20, Severity.CRITICAL)) == []
    (reopened,) = run(anomaly(21, Severity.HIGH, metric="cpu_percent"))
    assert reopened.status == "reopened"
    assert {s.metric_name: s.state for s in reopened.signals} == {
        "api_latency_ms": "firing", "cpu_percent": "firing"}


# --------------------------------------------------------------------------- symptoms

SYMPTOMS = replace(CONFIG, symptoms=("latency", "error", "success"))


def test_the_symptom_setting_reaches_the_config_lower_cased_and_is_off_by_default() -> None:
    assert CorrelationConfig.from_settings(load_settings({})).symptoms == ()
    got = CorrelationConfig.from_settings(
        load_settings({"AUTOPILOT_SYMPTOM_METRICS": " Latency, error ,,"}))
    assert got.symptoms == ("latency", "error")


def test_causes_alone_open_nothing_with_symptoms_set() -> None:
    run = Run(config=SYMPTOMS)
    assert run(anomaly(0, Severity.CRITICAL, metric="cpu_percent")) == []
    assert run(anomaly(1, Severity.CRITICAL, metric="memory_mib")) == []
    assert run.state.incident is None
    # Control: without symptoms the CPU spike alone opens an incident.
    control = Run()
    assert statuses(control(anomaly(0, Severity.CRITICAL, metric="cpu_percent"))) == [
        "opened"]


def test_a_symptom_opens_with_the_causes_around_it_as_evidence() -> None:
    run = Run(config=SYMPTOMS)
    run(anomaly(0, Severity.HIGH, metric="cpu_percent"))
    run(anomaly(1, Severity.HIGH, metric="memory_mib"))
    (opened,) = run(anomaly(2, Severity.MEDIUM, metric="api_latency_ms"))
    assert opened.status == "opened"
    assert {s.metric_name for s in opened.signals} == {
        "cpu_percent", "memory_mib", "api_latency_ms"}


def test_an_error_rate_spike_is_a_symptom() -> None:
    run = Run(config=SYMPTOMS)
    run(anomaly(0, Severity.HIGH, metric="cpu_percent"))
    (opened,) = run(anomaly(1, Severity.HIGH, kind="error_rate"))
    assert "metric anomaly and error-rate spike" in opened.trigger_reason


def test_a_cause_does_not_re_open_a_resolved_incident_a_symptom_does() -> None:
    run = Run(config=SYMPTOMS)
    assert statuses(run(anomaly(0, Severity.CRITICAL))) == ["opened"]  # latency
    assert statuses(run(recovery(2))) == ["resolved"]
    # (more than the 10-min window after the latency alert, which would corroborate)
    assert run(anomaly(15, Severity.CRITICAL, metric="cpu_percent")) == []
    assert run(anomaly(20, Severity.CRITICAL, metric="cpu_percent")) == []  # a re-send
    (reopened,) = run(anomaly(25, Severity.CRITICAL, metric="success_rate"))
    assert reopened.status == "reopened"
    # Control: without symptoms the CPU alert re-opens it.
    control = Run()
    control(anomaly(0, Severity.CRITICAL))
    control(recovery(2))
    assert statuses(control(anomaly(15, Severity.CRITICAL, metric="cpu_percent"))) == [
        "reopened"]


def test_with_both_a_lone_cause_never_opens_however_long_it_fires() -> None:
    run = Run(config=replace(SYMPTOMS, alone_for_s=300))
    assert run(anomaly(0, Severity.CRITICAL, metric="cpu_percent")) == []
    assert run(anomaly(5, Severity.CRITICAL, metric="cpu_percent")) == []
    assert run(anomaly(10, Severity.CRITICAL, metric="cpu_percent")) == []
    assert run(recovery(12, metric="cpu_percent")) == []
    assert run.state.incident is None
    # …while a lone symptom does, once it has fired for 5 min.
    assert run(anomaly(30, Severity.CRITICAL)) == []
    (opened,) = run(anomaly(35, Severity.CRITICAL))
    assert "firing for 5 min" in opened.trigger_reason


# --------------------------------------------------------------------------- edges


def test_a_late_deployment_opens_nothing_for_causes_with_symptoms_set() -> None:
    dep = DeploymentEvent(timestamp=at(0), service="checkout", version="v2")
    for config, opens in ((SYMPTOMS, False), (CONFIG, True)):  # with its control
        run = Run(config=config)
        run(anomaly(5, Severity.HIGH, metric="cpu_percent"))
        run.deps = deployments(0)
        run.state, out = on_deployment(run.state, dep, source=None, deployments=run.deps,
                                       errors=[], wall_now=WALL0, config=config)
        assert statuses(out) == (["opened"] if opens else [])
        assert all(r.trigger_reason for r in out)


def test_a_quiet_re_fire_is_told_when_another_signal_re_opens_the_incident() -> None:
    run = _resolved_incident(FOR_5M)
    assert run(anomaly(20, Severity.CRITICAL, metric="disk_percent")) == []  # kept quietly
    (reopened,) = run(anomaly(21, Severity.HIGH, kind="error_rate"))
    assert reopened.status == "reopened"
    kinds = [(e.kind, e.text.split(" ")[0]) for e in reopened.timeline[-2:]]
    assert kinds == [("reopened", "re-opened"), ("signal", "disk_percent")]
    (recovered,) = run(recovery(23, metric="disk_percent"))  # now told: its recovery too
    assert recovered.timeline[-1].kind == "signal_resolved"


def test_a_quiet_signal_outlives_the_forgotten_incident_and_keeps_its_wait() -> None:
    run = _resolved_incident(FOR_5M)  # resolved at minute 4
    assert run(anomaly(60, Severity.CRITICAL, metric="disk_percent")) == []
    # Minute 65: the re-open hour is over, the incident is forgotten; the series
    # has fired for 5 min since minute 60, so it opens a new incident now.
    (opened,) = run(anomaly(65, Severity.CRITICAL, metric="disk_percent"))
    assert opened.status == "opened" and opened.opened_at == at(60)
    assert run.state.closed == 1


def test_a_late_deployment_re_opens_on_the_quiet_signal_s_next_re_send() -> None:
    run = _resolved_incident(FOR_5M)
    assert run(anomaly(25, Severity.HIGH, metric="disk_percent")) == []  # kept quietly
    dep = DeploymentEvent(timestamp=at(23), service="checkout", version="v2")
    run.deps = deployments(23)
    run.state, out = on_deployment(run.state, dep, source=None, deployments=run.deps,
                                   errors=[], wall_now=WALL0, config=FOR_5M)
    assert out == []  # after the resolution: joins nothing
    (reopened,) = run(anomaly(30, Severity.HIGH, metric="disk_percent"))  # its re-send
    assert reopened.status == "reopened"
    # Control: without the deployment the high series alone never re-opens it.
    control = _resolved_incident(FOR_5M)
    control(anomaly(25, Severity.HIGH, metric="disk_percent"))
    assert control(anomaly(30, Severity.HIGH, metric="disk_percent")) == []
