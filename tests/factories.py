"""Builders of the domain objects the tests share: one per object.

Every builder takes keyword arguments with defaults that describe one ordinary case
(the checkout service, its p99 latency, 2024-05-01 12:00 UTC); a test passes only what
it cares about. Two kinds:

* what producers send, as JSON-ready dicts: :func:`metric` (a seed-shaped
  ``MetricPoint``), :func:`log` (a seed-shaped ``LogEntry``);
* the models of ``autopilot.models``: :func:`metric_point`, :func:`log_entry`,
  :func:`deployment`, :func:`anomaly`, :func:`incident`, :func:`analysis`,
  :func:`alert`, :func:`suspect`, :func:`incident_group`.

Builders that only one test file needs (a correlation anomaly whose z follows its
severity, a chart's anomaly dict, …) stay in that file.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from autopilot.models import (
    Alert,
    Analysis,
    Anomaly,
    DeploymentEvent,
    GroupMember,
    Incident,
    IncidentGroup,
    LogEntry,
    MetricPoint,
    RecommendedAction,
    RootCause,
    Severity,
    Suspect,
)

#: The instant the model builders default to.
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
#: The epoch seconds the wire-format builders default to (2023-11-14 22:13:20 UTC).
EPOCH_S = 1_700_000_000.0
SERVICE = "checkout"
METRIC = "http_latency_p99_ms"

# --------------------------------------------------------------------------- wire format


def metric(service: str = SERVICE, value: float = 100.0, ts: float = EPOCH_S,
           name: str = "latency_ms", **labels: str) -> dict[str, Any]:
    """A seed-shaped MetricPoint dict; ``labels`` join the ``service`` label."""
    return {"timestamp": ts, "metric_name": name, "value": value,
            "labels": {"service": service, **labels}}


def log(service: str = SERVICE, ts: float = EPOCH_S, level: str = "ERROR",
        message: str = "boom") -> dict[str, Any]:
    """A seed-shaped LogEntry dict."""
    return {"timestamp": ts, "level": level, "message": message, "service": service}


# --------------------------------------------------------------------------- models


def metric_point(value: float = 1500.0, *, at: datetime | float = T0,
                 name: str = "api_latency_ms", service: str = SERVICE,
                 **labels: str) -> MetricPoint:
    """A MetricPoint; ``labels`` join the ``service`` label."""
    return MetricPoint(timestamp=at, metric_name=name, value=value,
                       labels={"service": service, **labels})


def log_entry(message: str = "boom", *, at: datetime = T0, level: str = "ERROR",
              service: str = SERVICE) -> LogEntry:
    return LogEntry(timestamp=at, level=level, message=message, service=service)


def deployment(version: str = "v2.4.0", *, at: datetime = T0 - timedelta(minutes=5),
               service: str = SERVICE, status: str = "success",
               **fields: Any) -> DeploymentEvent:
    """A deployment, by default five minutes before :data:`T0`; ``fields`` (such as
    ``metadata``) pass through."""
    return DeploymentEvent(timestamp=at, service=service, version=version, status=status,
                           **fields)


def anomaly(
    metric: str = METRIC,
    *,
    value: float = 950.0,
    mean: float = 200.0,
    std: float = 20.0,
    z: float = 37.5,
    kind: str = "metric",
    severity: Severity = Severity.CRITICAL,
    at: datetime = T0,
    service: str = SERVICE,
) -> Anomaly:
    """A firing anomaly; ``deviation_percent`` follows from ``value`` and ``mean``."""
    return Anomaly(
        kind=kind,
        metric_name=metric,
        service=service,
        current_value=value,
        baseline_mean=mean,
        baseline_std_dev=std,
        z_score=z,
        deviation_percent=100.0 * (value - mean) / abs(mean) if mean else 0.0,
        severity=severity,
        detected_at=at,
    )


def incident(
    *,
    id: str = "inc-checkout-1",  # noqa: A002 - the model's field name
    service: str = SERVICE,
    revision: int = 1,
    status: str | None = None,
    notify: bool = True,
    severity: Severity | str = Severity.HIGH,
    trigger_reason: str = f"critical anomaly on {METRIC}",
    opened_at: datetime = T0,
    updated_at: datetime | None = None,
    anomalies: list[Anomaly] | None = None,
    errors: list[LogEntry] | None = None,
    deployments: list[DeploymentEvent] | None = None,
    **fields: Any,
) -> Incident:
    """An incident with one critical latency anomaly and no logs or deployments.

    ``status`` defaults to ``"opened"`` for revision 1 and ``"updated"`` after;
    ``updated_at`` to a minute after ``opened_at``. ``errors`` and ``deployments``
    are ``recent_errors`` and ``recent_deployments``; other model fields (``state``,
    ``closed_at``, ``timeline``, ``signals``, …) pass through ``fields``.
    """
    return Incident.model_validate({
        "id": id,
        "service": service,
        "status": status or ("opened" if revision == 1 else "updated"),
        "revision": revision,
        "notify": notify,
        "severity": severity,
        "trigger_reason": trigger_reason,
        "opened_at": opened_at,
        "updated_at": opened_at + timedelta(minutes=1) if updated_at is None else updated_at,
        "anomalies": [anomaly()] if anomalies is None else anomalies,
        "recent_errors": errors or [],
        "recent_deployments": deployments or [],
        **fields,
    })


def analysis(
    *,
    description: str = "Deployment v2.4.0 introduced a slow query",
    confidence: int = 82,
    reasoning: str = "Latency rose 5 minutes after the deployment.",
    actions: list[RecommendedAction] | None = None,
    severity: Severity = Severity.CRITICAL,
    impact: str = "Slow checkout for most users",
    source: str = "llm",
) -> Analysis:
    """An analysis with one recommended action; the model is named for ``"llm"`` only."""
    return Analysis(
        root_cause=RootCause(description=description, confidence=confidence,
                             reasoning=reasoning),
        recommended_actions=actions or [
            RecommendedAction(action="Roll back checkout to v2.3.9",
                              reasoning="Restores the known-good version.", risk="medium",
                              priority=1),
        ],
        severity=severity,
        estimated_customer_impact=impact,
        source=source,
        model="llama3:latest" if source == "llm" else None,
    )


_analysis = analysis  # ``alert`` takes a keyword argument of this name


def alert(*, severity: Severity = Severity.CRITICAL, analysis: Analysis | None = None,
          **incident_fields: Any) -> Alert:
    """A critical :func:`incident` (``incident_fields`` passed on) and its analysis."""
    made = _analysis(severity=severity) if analysis is None else analysis
    return Alert(incident=incident(severity=severity, **incident_fields), analysis=made)


def suspect(service: str = "payments-gateway", *, score: float = 0.8,
            fault_kind: str = "code_error", reasons: list[str] | None = None,
            has_telemetry: bool = True) -> Suspect:
    """A suspect service (:class:`autopilot.models.Suspect`) with one reason."""
    return Suspect.model_validate({
        "service": service, "score": score, "fault_kind": fault_kind,
        "reasons": [f"{service} left its baseline first"] if reasons is None else reasons,
        "has_telemetry": has_telemetry,
    })


def incident_group(primary: tuple[str, str] = (SERVICE, "inc-checkout-1"),
                   *others: tuple[str, str], suspects: list[Suspect] | None = None
                   ) -> IncidentGroup:
    """An incident group: ``primary`` and ``others`` as ``(service, incident id)``,
    all firing, opened a minute apart from :data:`T0` (the primary first)."""
    members = [GroupMember(service=s, incident_id=i, opened_at=T0 + timedelta(minutes=n))
               for n, (s, i) in enumerate((primary, *others))]
    return IncidentGroup(id="grp-" + primary[1], primary_service=primary[0],
                         primary_incident_id=primary[1], members=members,
                         suspects=suspects or [])
