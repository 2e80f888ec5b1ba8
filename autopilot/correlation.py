"""Incident rules: correlate a service's anomalies, error spikes and deployments (pure).

Windows are in event time (the records' own timestamps), so a replay of last week
behaves like live traffic. Defaults (seed architecture; ``AUTOPILOT_*`` settings):

An incident opens for a service when, around a new anomaly at time t,

1. a **critical** anomaly arrives on its own;
2. a **high or critical** anomaly comes within ``deployment_window_s`` (30 min)
   after one of the service's deployments;
3. a metric anomaly and an **error-rate spike** fall within ``window_s`` (10 min)
   of each other;
4. **two or more** anomalies fall within ``window_s`` (10 min).

A service has at most one open incident. Its id is derived from fixed fields (the
service and the event time of its first evidence), never from LLM text, so a replay
produces the same id. Later evidence updates the open incident (``revision`` + 1);
the update is marked ``notify`` only when the severity rises above what was last
notified. An anomaly equal in every field to one the state holds is a detector's
re-send after a crash and changes nothing (the detectors publish before they write
their own state, so a crash between the two repeats an anomaly instead of losing it).
An incident closes after ``close_after_s`` (15 min) without new evidence: in event
time when a newer anomaly arrives, and in wall-clock time through
:func:`close_if_quiet` when the service goes quiet.

The incident carries its anomalies (newest ``max_anomalies``), the service's error
lines from the ``context_window_s`` (10 min) before its latest evidence and its
deployments from ``deployment_window_s`` (30 min) before it opened until its latest
evidence.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from autopilot.deployments import DeploymentHistory
from autopilot.models import Anomaly, DeploymentEvent, Incident, LogEntry, Severity

__all__ = [
    "CorrelationConfig",
    "on_deployment",
    "CorrelationState",
    "OpenIncident",
    "close_if_quiet",
    "incident_id",
    "step",
]


@dataclass(frozen=True, slots=True)
class CorrelationConfig:
    """Correlation parameters (seconds of event time unless said otherwise).

    Attributes:
        window_s: evidence window of rules 3 and 4 (``AUTOPILOT_CORRELATION_WINDOW_S``).
        deployment_window_s: rule 2's window after a deployment, also how far back
            deployments are attached (``AUTOPILOT_DEPLOYMENT_WINDOW_S``).
        close_after_s: quiet time that closes an incident, event and wall-clock time
            (``AUTOPILOT_INCIDENT_CLOSE_S``).
        context_window_s: error lines attached from this long before the latest
            evidence (10 min).
        max_anomalies: anomalies kept per incident and in the recent window.
    """

    window_s: int = 600
    deployment_window_s: int = 1800
    close_after_s: int = 900
    context_window_s: int = 600
    max_anomalies: int = 50

    @classmethod
    def from_settings(cls, settings: Any) -> CorrelationConfig:
        """Build from :class:`autopilot.settings.Settings`."""
        return cls(
            window_s=settings.correlation_window_s,
            deployment_window_s=settings.deployment_window_s,
            close_after_s=settings.incident_close_s,
        )


@dataclass(frozen=True, slots=True)
class OpenIncident:
    """The open incident of a service.

    Attributes:
        id: stable id (:func:`incident_id`).
        opened_at / updated_at: event time of the first and of the newest evidence.
        revision: records published for this incident so far.
        severity: highest anomaly severity so far.
        notified_severity: severity of the last record marked ``notify``.
        trigger_reason: why it opened.
        anomalies: its anomalies (JSON dicts), oldest first.
        wall_updated: wall-clock epoch seconds when evidence last arrived.
    """

    id: str
    opened_at: datetime
    updated_at: datetime
    revision: int
    severity: Severity
    notified_severity: Severity
    trigger_reason: str
    anomalies: tuple[dict[str, Any], ...]
    wall_updated: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {
            "id": self.id,
            "opened_at": self.opened_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "revision": self.revision,
            "severity": self.severity.value,
            "notified_severity": self.notified_severity.value,
            "trigger_reason": self.trigger_reason,
            "anomalies": list(self.anomalies),
            "wall_updated": self.wall_updated,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OpenIncident:
        """Inverse of :meth:`to_dict`."""
        return cls(
            id=data["id"],
            opened_at=datetime.fromisoformat(data["opened_at"]),
            updated_at=datetime.fromisoformat(data["updated_at"]),
            revision=int(data["revision"]),
            severity=Severity(data["severity"]),
            notified_severity=Severity(data["notified_severity"]),
            trigger_reason=data["trigger_reason"],
            anomalies=tuple(data["anomalies"]),
            wall_updated=float(data["wall_updated"]),
        )


@dataclass(frozen=True, slots=True)
class CorrelationState:
    """Correlation state of one service (the open-incidents table's value).

    Attributes:
        recent: anomalies of the last ``window_s`` (JSON dicts), oldest first.
        incident: the open incident, if any.
        offsets: last source offset applied, per source topic (replays are no-ops).
        closed: incidents closed so far (a counter for views).
    """

    recent: tuple[dict[str, Any], ...] = ()
    incident: OpenIncident | None = None
    offsets: dict[str, int] = field(default_factory=dict)
    closed: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form for the table."""
        return {
            "recent": list(self.recent),
            "incident": self.incident.to_dict() if self.incident else None,
            "offsets": dict(self.offsets),
            "closed": self.closed,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> CorrelationState:
        """Inverse of :meth:`to_dict`; ``None`` gives an empty state."""
        if not data:
            return cls()
        inc = data.get("incident")
        return cls(
            recent=tuple(data.get("recent", ())),
            incident=OpenIncident.from_dict(inc) if inc else None,
            offsets={str(k): int(v) for k, v in data.get("offsets", {}).items()},
            closed=int(data.get("closed", 0)),
        )


def incident_id(service: str, opened_at: datetime) -> str:
    """Stable incident id from fixed fields: ``inc-`` + 12 hex of SHA-256(service|time)."""
    digest = hashlib.sha256(f"{service}|{opened_at.isoformat()}".encode()).hexdigest()
    return f"inc-{digest[:12]}"


def _anoms(items: tuple[dict[str, Any], ...]) -> list[Anomaly]:
    return [Anomaly.model_validate(a) for a in items]


def _max_severity(anomalies: list[Anomaly]) -> Severity:
    return max((a.severity for a in anomalies), key=lambda s: s.rank)


def _rules(
    new: Anomaly,
    nearby: list[Anomaly],
    deployments: DeploymentHistory,
    config: CorrelationConfig,
) -> list[str]:
    """Reasons (possibly several) why ``new`` with ``nearby`` opens an incident."""
    reasons: list[str] = []
    window_min = config.window_s // 60
    if new.severity.rank >= Severity.HIGH.rank:
        recent = deployments.before(new.detected_at, timedelta(seconds=config.deployment_window_s))
        if recent:
            dep = recent[-1]
            minutes = (new.detected_at - dep.timestamp).total_seconds() / 60
            reasons.append(
                f"{new.severity.value} anomaly on {new.metric_name} {minutes:.0f} min after "
                f"deployment of version {dep.version}"
            )
    kinds = {a.kind for a in nearby}
    if {"metric", "error_rate"} <= kinds:
        reasons.append(f"metric anomaly and error-rate spike within {window_min} min")
    if new.severity is Severity.CRITICAL:
        reasons.append(f"critical anomaly on {new.metric_name} (z={new.z_score:.1f})")
    if len(nearby) >= 2:
        reasons.append(f"{len(nearby)} anomalies within {window_min} min")
    return reasons


def _record(
    service: str,
    inc: OpenIncident,
    status: str,
    notify: bool,
    deployments: DeploymentHistory,
    errors: list[LogEntry],
    config: CorrelationConfig,
    closed_at: datetime | None = None,
) -> Incident:
    context_from = inc.updated_at - timedelta(seconds=config.context_window_s)
    recent_errors = [e for e in errors if context_from <= e.timestamp <= inc.updated_at]
    deps = deployments.within(
        inc.opened_at - timedelta(seconds=config.deployment_window_s), inc.updated_at
    )
    return Incident(
        id=inc.id,
        service=service,
        status=status,  # type: ignore[arg-type]
        revision=inc.revision,
        notify=notify,
        severity=inc.severity,
        trigger_reason=inc.trigger_reason,
        opened_at=inc.opened_at,
        updated_at=inc.updated_at,
        closed_at=closed_at,
        anomalies=_anoms(inc.anomalies),
        recent_errors=recent_errors,
        recent_deployments=deps,
    )


def step(
    state: CorrelationState,
    anomaly: Anomaly,
    *,
    source: tuple[str, int] | None,
    deployments: DeploymentHistory,
    errors: list[LogEntry],
    wall_now: float,
    config: CorrelationConfig,
) -> tuple[CorrelationState, list[Incident]]:
    """Apply one anomaly of a service.

    Args:
        state: the service's correlation state.
        anomaly: the new evidence.
        source: ``(topic, offset)`` of the source record; at or below the last
            offset seen on that topic it is a replay and nothing changes.
            ``None`` skips the check (tests, backtests).
        deployments: the service's recent deployments.
        errors: the service's recent error lines (any order).
        wall_now: wall-clock epoch seconds (for closing quiet incidents later).
        config: parameters.

    Returns:
        ``(new_state, incidents)``: zero to two Incident records, in order (a
        ``closed`` record when the new evidence comes after the quiet period, then an
        ``opened`` or ``updated`` one).
    """
    seen = _seen(state, source)
    if seen is None:
        return state, []
    dump = anomaly.model_dump(mode="json")
    if _already_applied(state, dump):
        # The same anomaly under a new offset: its detector re-sent it after a crash
        # (it publishes before it writes its state). Only the offset moves.
        return seen, []
    state = seen
    out: list[Incident] = []
    service = anomaly.service
    t = anomaly.detected_at
    inc = state.incident
    if inc is not None and (t - inc.updated_at).total_seconds() > config.close_after_s:
        out.append(_close(service, inc, deployments, errors, config, closed_at=t))
        state = replace(state, incident=None, closed=state.closed + 1)
        inc = None

    window = timedelta(seconds=config.window_s)
    kept = [a for a in _anoms(state.recent) if abs(a.detected_at - t) <= window]
    kept.append(anomaly)
    kept.sort(key=lambda a: a.detected_at)
    kept = kept[-config.max_anomalies :]
    state = replace(state, recent=tuple(a.model_dump(mode="json") for a in kept))

    if inc is not None:
        anomalies = (*inc.anomalies, dump)[-config.max_anomalies :]
        severity = max(inc.severity, anomaly.severity, key=lambda s: s.rank)
        notify = severity.rank > inc.notified_severity.rank
        inc = replace(
            inc,
            anomalies=anomalies,
            updated_at=max(inc.updated_at, t),
            revision=inc.revision + 1,
            severity=severity,
            notified_severity=severity if notify else inc.notified_severity,
            wall_updated=wall_now,
        )
        out.append(_record(service, inc, "updated", notify, deployments, errors, config))
        return replace(state, incident=inc), out

    reasons = _rules(anomaly, kept, deployments, config)
    if not reasons:
        return state, out
    inc = _open(kept, reasons, wall_now)
    out.append(_record(service, inc, "opened", True, deployments, errors, config))
    return replace(state, incident=inc), out


def _already_applied(state: CorrelationState, anomaly: dict[str, Any]) -> bool:
    """Whether an identical anomaly (every field equal, JSON form) is in the state.

    The metrics and logs agents publish an anomaly before they write their table, so
    a crash between the two re-sends the anomaly under a new offset of
    ``autopilot.anomalies``; the offset check cannot see that, this check does (as
    long as the original is among the ``max_anomalies`` kept).
    """
    if anomaly in state.recent:
        return True
    return state.incident is not None and anomaly in state.incident.anomalies


def _seen(state: CorrelationState, source: tuple[str, int] | None) -> CorrelationState | None:
    """``None`` when ``source`` was applied already (a replay), else the state with
    the source's offset remembered."""
    if source is None:
        return state
    topic, offset = source
    if offset <= state.offsets.get(topic, -1):
        return None
    return replace(state, offsets={**state.offsets, topic: offset})


def on_deployment(
    state: CorrelationState,
    deployment: DeploymentEvent,
    *,
    source: tuple[str, int] | None,
    deployments: DeploymentHistory,
    errors: list[LogEntry],
    wall_now: float,
    config: CorrelationConfig,
) -> tuple[CorrelationState, list[Incident]]:
    """Apply a deployment that reached correlation *after* anomalies it explains.

    Deployments and anomalies travel on different topics, so a deployment can be
    processed after the anomalies that followed it in event time. When no incident
    is open, a recent high or critical anomaly of the service that came within
    ``deployment_window_s`` after ``deployment`` opens one (rule 2), exactly as if
    the deployment had arrived first. ``deployments`` must already include it.

    Returns:
        ``(new_state, incidents)`` (an ``opened`` record, or nothing).
    """
    seen = _seen(state, source)
    if seen is None:
        return state, []
    state = seen
    if state.incident is not None:
        return state, []
    window = timedelta(seconds=config.deployment_window_s)
    recent = _anoms(state.recent)
    blamed = [
        a
        for a in recent
        if a.severity.rank >= Severity.HIGH.rank
        and deployment.timestamp <= a.detected_at <= deployment.timestamp + window
    ]
    if not blamed:
        return state, []
    newest = blamed[-1]
    corr_window = timedelta(seconds=config.window_s)
    kept = [a for a in recent if abs(a.detected_at - newest.detected_at) <= corr_window]
    reasons = _rules(newest, kept, deployments, config)
    inc = _open(kept, reasons, wall_now)
    service = newest.service
    return replace(state, incident=inc), [
        _record(service, inc, "opened", True, deployments, errors, config)
    ]


def _open(kept: list[Anomaly], reasons: list[str], wall_now: float) -> OpenIncident:
    opened_at = kept[0].detected_at
    severity = _max_severity(kept)
    return OpenIncident(
        id=incident_id(kept[0].service, opened_at),
        opened_at=opened_at,
        updated_at=max(a.detected_at for a in kept),
        revision=1,
        severity=severity,
        notified_severity=severity,
        trigger_reason="; ".join(reasons),
        anomalies=tuple(a.model_dump(mode="json") for a in kept),
        wall_updated=wall_now,
    )


def _close(
    service: str,
    inc: OpenIncident,
    deployments: DeploymentHistory,
    errors: list[LogEntry],
    config: CorrelationConfig,
    closed_at: datetime,
) -> Incident:
    inc = replace(inc, revision=inc.revision + 1)
    return _record(service, inc, "closed", False, deployments, errors, config, closed_at=closed_at)


def close_if_quiet(
    state: CorrelationState,
    *,
    service: str,
    wall_now: float,
    deployments: DeploymentHistory,
    errors: list[LogEntry],
    config: CorrelationConfig,
) -> tuple[CorrelationState, list[Incident]]:
    """Close the open incident when no evidence arrived for ``close_after_s`` of
    wall-clock time (the service went quiet).

    Returns:
        ``(new_state, [closed_incident])`` or ``(state, [])`` when nothing to close.
    """
    inc = state.incident
    if inc is None or wall_now - inc.wall_updated < config.close_after_s:
        return state, []
    closed_at = inc.updated_at + timedelta(seconds=config.close_after_s)
    record = _close(service, inc, deployments, errors, config, closed_at=closed_at)
    return replace(state, incident=None, closed=state.closed + 1), [record]


def is_quiet(state: CorrelationState, wall_now: float, config: CorrelationConfig) -> bool:
    """True when ``state`` has an open incident quiet for ``close_after_s`` wall-clock s."""
    inc = state.incident
    return inc is not None and wall_now - inc.wall_updated >= config.close_after_s
