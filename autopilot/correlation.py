"""Incident rules and lifecycle: a service's signals, error spikes and deployments (pure).

Windows are in event time (the records' own timestamps), so a replay of last week
behaves like live traffic. Semantics are Prometheus Alertmanager's (alerts *fire* and
*resolve*) and PagerDuty's (one incident per problem). Defaults are the seed
architecture's and the ``AUTOPILOT_*`` settings'.

**Signals.** The detectors send, per series (:attr:`Anomaly.series`; for error rates
``<service>|error_rate|``), an alert (``state="firing"``), re-sends while it still
fires (``firing`` again, every ``AUTOPILOT_SIGNAL_RESEND_S`` of event time) and a
recovery (``state="resolved"``, after the detector's hysteresis). The state keeps one
:class:`Signal` per series. A firing record of a series that already fires is a
*refresh* (evidence that it is still failing): it updates the signal and, for a
signal of the incident, the incident's ``updated_at`` and ``wall_updated``, but it is
no new anomaly for the rules and publishes no record, unless it is more severe than
the signal (an *escalation*). A *new alert* is a firing record of a series that does
not fire (never seen, or recovered).

Alerts from Alertmanager or Prometheus (:mod:`autopilot.alertmanager`, kind
``alert``, series ``<service>|alert|<fingerprint>``) are signals like any other: they
count as anomalies of their severity in every rule, a re-send is a refresh and a
resolved notification is the recovery (their sender's own hysteresis applies).

**Opening (rules 1–4, on new alerts).** An incident opens for a service when, around
a new alert at time t,

1. a **critical** anomaly arrives on its own;
2. a **high or critical** anomaly comes within ``deployment_window_s`` (30 min)
   after one of the service's deployments;
3. a metric anomaly and an **error-rate spike** fall within ``window_s`` (10 min)
   of each other;
4. **two or more** anomalies fall within ``window_s`` (10 min).

**Corroboration** (``alone_for_s``, ``AUTOPILOT_ALONE_FOR_S``; 0, off, by default): a
critical *metric* anomaly no longer opens on its own (rule 1 keeps Alertmanager alerts
and error-rate spikes); its series opens one when a re-send shows it still firing
``alone_for_s`` after it (re-)fired (:attr:`Signal.fired_at`), like a Prometheus
rule's ``for``. Rule 4 counts distinct series, and a resolved incident re-opens only on
evidence that would open one (:func:`_reopens`); a re-fire kept quietly with it that
recovers publishes nothing.

**Symptoms** (``symptoms``, ``AUTOPILOT_SYMPTOM_METRICS``; empty, off, by default): no
rule opens or re-opens an incident unless a symptom is among its evidence (a metric
whose name contains one of the substrings, an error-rate spike, an Alertmanager alert);
other metrics' anomalies join incidents and corroborate symptoms but open none.

Its signals are the series of the anomalies that opened it; its id is derived from
fixed fields (the service and the event time of its first evidence), never from LLM
text, so a replay produces the same id. A service has at most one incident.

**Lifecycle** (each published :class:`Incident` has ``revision`` + 1):

* a new alert of another series while the incident fires joins it (``updated``,
  timeline ``signal``); an escalation is ``updated`` (timeline ``escalated`` when the
  incident's severity rises); both notify;
* a recovery of one of its signals is ``updated`` (timeline ``signal_resolved``);
  when all its signals have recovered the incident is ``resolved`` (resolution
  ``recovered``, ``closed_at`` = that recovery's time, timeline ``resolved``);
* *stale close* (fallback for signals that stop reporting): no evidence for
  ``close_after_s`` (``AUTOPILOT_INCIDENT_CLOSE_S``, 15 min), in event time when a
  newer record arrives and in wall-clock time through :func:`close_if_quiet`,
  resolves it (resolution ``stale``, ``closed_at`` = last evidence +
  ``close_after_s``, timeline ``stale``). Its signals keep their state (no recovery
  was seen). While one of them is a firing Alertmanager alert the quiet time is
  ``alert_close_after_s`` (``AUTOPILOT_ALERT_CLOSE_S``, 5 h) instead: Alertmanager
  re-sends only every ``repeat_interval``;
* a resolved incident stays in the state. Firing evidence whose event time is after
  ``closed_at`` and less than ``reopen_window_s`` (``AUTOPILOT_REOPEN_WINDOW_S``, 1 h)
  after it *re-opens* it: same id, same revision sequence, status ``reopened``,
  ``reopened`` + 1, timeline ``reopened``. Firing evidence is a new alert or a refresh
  of one of the incident's signals; a refresh of a signal that never joined the
  incident re-opens nothing (a series that fires on for unrelated reasons would
  otherwise keep re-opening it);
* late evidence (event time at or before ``closed_at``) joins the resolved incident's
  timeline and signals and re-opens nothing (``updated``; notify for a new signal,
  not for a refresh);
* evidence at or after ``closed_at + reopen_window_s`` drops the old incident from the
  state (``closed`` + 1) and the rules decide afresh;
* a deployment of the service joins the timeline of a firing incident (or, late, of
  a resolved one it precedes); with no incident it may open one (rule 2,
  :func:`on_deployment`).

Replays are no-ops: the state remembers the last source offset per topic, and an alert
equal in every field to one the state holds is a detector's re-send after a crash
(the detectors publish before they write their own state). A repeated refresh or
recovery changes nothing by construction.

Every record carries the incident's anomalies (newest ``max_anomalies`` alerts), its
signals, its timeline (the first entry and the newest ``max_timeline`` − 1, in the
order they were applied, each with its event time), the service's error lines from
``context_window_s`` (10 min) before it began until its latest evidence (the lines
that led up to it stay with it) and its deployments from
``deployment_window_s`` (30 min) before it opened until its latest timeline entry.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from autopilot import replay
from autopilot.deployments import DEPLOYMENT_WINDOW_S, DeploymentHistory
from autopilot.models import (
    Anomaly,
    DeploymentEvent,
    Incident,
    IncidentGroup,
    LogEntry,
    Severity,
    Signal,
    TimelineEntry,
)

__all__ = [
    "CorrelationConfig",
    "CorrelationState",
    "OpenIncident",
    "close_if_quiet",
    "incident_id",
    "is_quiet",
    "on_deployment",
    "on_group",
    "resolve_manually",
    "series_of",
    "step",
]

#: Longest timeline text (characters); the model allows more, the thread wants short.
TEXT_MAX = 199


@dataclass(frozen=True, slots=True)
class CorrelationConfig:
    """Correlation parameters (seconds of event time unless said otherwise).

    Attributes:
        window_s: evidence window of rules 3 and 4 (``AUTOPILOT_CORRELATION_WINDOW_S``,
            600).
        deployment_window_s: rule 2's window after a deployment, also how far back
            deployments are attached (``AUTOPILOT_DEPLOYMENT_WINDOW_S``, 1800).
        close_after_s: quiet time of the stale close, event and wall-clock time
            (``AUTOPILOT_INCIDENT_CLOSE_S``, 900).
        context_window_s: error lines attached from this long before the incident
            (or its first signal) began, until its latest evidence (600).
        max_anomalies: alerts kept per incident and in the recent window (50).
        alert_close_after_s: the stale close's quiet time while one of the incident's
            signals is a firing Alertmanager alert (``AUTOPILOT_ALERT_CLOSE_S``, 18000):
            Alertmanager re-sends a firing alert only every ``repeat_interval`` (4 h by
            default), and its resolved notification closes the signal at once.
        reopen_window_s: firing evidence less than this after a resolution re-opens
            the incident (``AUTOPILOT_REOPEN_WINDOW_S``, 3600); a resolved incident is
            forgotten after it (event time, or wall-clock time when quiet).
        max_timeline: timeline entries kept per incident (the first and the newest
            ``max_timeline`` − 1; 50).
        max_signals: signals kept per incident, and signals outside an incident per
            service (200; beyond it the oldest resolved, else the least recently seen,
            is dropped).
        alone_for_s: corroboration (``AUTOPILOT_ALONE_FOR_S``, 0): when set, a critical
            metric anomaly alone opens an incident only once its series has fired this
            long, rule 4 counts distinct series, and a resolved incident re-opens only on
            evidence that would open one. 0: rule 1 at once, rule 4 counts alerts.
        symptoms: symptom-based paging (``AUTOPILOT_SYMPTOM_METRICS``; empty, off, by
            default): lower-case metric-name substrings; when set, no rule opens or
            re-opens an incident unless a symptom is among the evidence (a metric
            whose name contains one, an error-rate spike or an Alertmanager alert).
    """

    window_s: int = 600
    deployment_window_s: int = DEPLOYMENT_WINDOW_S
    close_after_s: int = 900
    alert_close_after_s: int = 18000
    context_window_s: int = 600
    max_anomalies: int = 50
    reopen_window_s: int = 3600
    max_timeline: int = 50
    max_signals: int = 200
    alone_for_s: int = 0
    symptoms: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, settings: Any) -> CorrelationConfig:
        """Build from :class:`autopilot.settings.Settings`."""
        return cls(
            window_s=settings.correlation_window_s,
            deployment_window_s=settings.deployment_window_s,
            close_after_s=settings.incident_close_s,
            alert_close_after_s=settings.alert_close_s,
            reopen_window_s=settings.reopen_window_s,
            alone_for_s=settings.alone_for_s,
            symptoms=settings.symptom_metric_list(),
        )


@dataclass(frozen=True, slots=True)
class OpenIncident:
    """The current incident of a service: firing, or resolved within the re-open window.

    Attributes:
        id: stable id (:func:`incident_id`).
        opened_at / updated_at: event time of the first and of the newest evidence.
        revision: records published for this incident so far.
        severity: highest alert severity so far (never lowered by a recovery).
        trigger_reason: why it opened.
        anomalies: its alerts (JSON dicts of :class:`Anomaly`), oldest first.
        wall_updated: wall-clock epoch seconds when evidence last arrived, or when
            it resolved (the wall-clock stale close and forgetting count from it).
        state: ``firing`` while any signal fires, else ``resolved``.
        closed_at: event time of the resolution (``None`` while firing).
        resolution: ``recovered``, ``stale`` or ``manual`` (:func:`resolve_manually`;
            ``None`` while firing).
        reopened: how often it was re-opened.
        signals: its signals, in the order they joined.
        timeline: its meaningful changes, in the order they were applied.
        group: the incident group it belongs to (:func:`on_group`; ``None`` until the
            grouping agent placed it; states written before groups existed load with
            ``None``).
    """

    id: str
    opened_at: datetime
    updated_at: datetime
    revision: int
    severity: Severity
    trigger_reason: str
    anomalies: tuple[dict[str, Any], ...]
    wall_updated: float
    state: Literal["firing", "resolved"] = "firing"
    closed_at: datetime | None = None
    resolution: Literal["recovered", "stale", "manual"] | None = None
    reopened: int = 0
    signals: tuple[Signal, ...] = ()
    timeline: tuple[TimelineEntry, ...] = ()
    group: IncidentGroup | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {
            "id": self.id,
            "opened_at": self.opened_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "revision": self.revision,
            "severity": self.severity.value,
            "trigger_reason": self.trigger_reason,
            "anomalies": list(self.anomalies),
            "wall_updated": self.wall_updated,
            "state": self.state,
            "closed_at": self.closed_at.isoformat() if self.closed_at else None,
            "resolution": self.resolution,
            "reopened": self.reopened,
            "signals": [s.model_dump(mode="json") for s in self.signals],
            "timeline": [e.model_dump(mode="json") for e in self.timeline],
            "group": self.group.model_dump(mode="json") if self.group else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OpenIncident:
        """Inverse of :meth:`to_dict`.

        Also reads the form written before the lifecycle existed (no ``state``,
        ``signals`` or ``timeline``; a ``notified_severity`` that is now unused): such
        an incident is firing, its signals are built from its anomalies (one per
        series, firing) and its timeline starts with an ``opened`` entry.
        """
        opened_at = datetime.fromisoformat(data["opened_at"])
        anomalies = tuple(data["anomalies"])
        if "signals" in data:
            signals = tuple(Signal.model_validate(s) for s in data["signals"])
        else:
            signals = _signals_from(_anoms(anomalies))
        if "timeline" in data:
            timeline = tuple(TimelineEntry.model_validate(e) for e in data["timeline"])
        else:
            timeline = (_entry(opened_at, "opened", f"opened: {data['trigger_reason']}"),)
        closed_at = data.get("closed_at")
        return cls(
            id=data["id"],
            opened_at=opened_at,
            updated_at=datetime.fromisoformat(data["updated_at"]),
            revision=int(data["revision"]),
            severity=Severity(data["severity"]),
            trigger_reason=data["trigger_reason"],
            anomalies=anomalies,
            wall_updated=float(data["wall_updated"]),
            state=data.get("state", "firing"),
            closed_at=datetime.fromisoformat(closed_at) if closed_at else None,
            resolution=data.get("resolution"),
            reopened=int(data.get("reopened", 0)),
            signals=signals,
            timeline=timeline,
            group=IncidentGroup.model_validate(data["group"]) if data.get("group") else None,
        )


@dataclass(frozen=True, slots=True)
class CorrelationState:
    """Correlation state of one service (the ``open_incidents`` table's value).

    Attributes:
        recent: alerts of the last ``window_s`` (JSON dicts), oldest first (the rules'
            evidence; refreshes and recoveries are not in it).
        incident: the current incident (firing, or resolved within the re-open
            window), if any.
        offsets: last source offset applied, per source topic (replays are no-ops).
        closed: incidents forgotten so far (a counter for views).
        signals: the service's signals that belong to no incident: firing ones (until
            they recover, or send nothing for ``close_after_s``) and recovered ones
            (for ``window_s``, so an incident the rules open from their alerts shows
            them recovered).
    """

    recent: tuple[dict[str, Any], ...] = ()
    incident: OpenIncident | None = None
    offsets: dict[str, int] = field(default_factory=dict)
    closed: int = 0
    signals: tuple[Signal, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form for the table."""
        return {
            "recent": list(self.recent),
            "incident": self.incident.to_dict() if self.incident else None,
            "offsets": dict(self.offsets),
            "closed": self.closed,
            "signals": [s.model_dump(mode="json") for s in self.signals],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> CorrelationState:
        """Inverse of :meth:`to_dict`; ``None`` gives an empty state.

        A state written before the lifecycle existed (no ``signals``) gets its
        signals outside the incident from its recent anomalies (firing), so a
        detector's re-send of one of them is a refresh, not a second anomaly.
        """
        if not data:
            return cls()
        inc = data.get("incident")
        incident = OpenIncident.from_dict(inc) if inc else None
        recent = tuple(data.get("recent", ()))
        if "signals" in data:
            signals = tuple(Signal.model_validate(s) for s in data["signals"])
        else:
            taken = {s.series for s in incident.signals} if incident else set()
            signals = tuple(s for s in _signals_from(_anoms(recent)) if s.series not in taken)
        return cls(
            recent=recent,
            incident=incident,
            offsets={str(k): int(v) for k, v in data.get("offsets", {}).items()},
            closed=int(data.get("closed", 0)),
            signals=signals,
        )


def incident_id(service: str, opened_at: datetime) -> str:
    """Stable incident id from fixed fields: ``inc-`` + 12 hex of SHA-256(service|time)."""
    digest = hashlib.sha256(f"{service}|{opened_at.isoformat()}".encode()).hexdigest()
    return f"inc-{digest[:12]}"


def series_of(anomaly: Anomaly) -> str:
    """The series key of an anomaly: its ``series``, or ``service|metric_name|`` for
    records that carry none (older detectors; error rates are
    ``<service>|error_rate|``)."""
    return anomaly.series or f"{anomaly.service}|{anomaly.metric_name}|"


# --------------------------------------------------------------------------- helpers


@dataclass(frozen=True, slots=True)
class _Ctx:
    """What building records needs besides the state (one call's inputs)."""

    service: str
    deployments: DeploymentHistory
    errors: list[LogEntry]
    wall_now: float
    config: CorrelationConfig


def _anoms(items: Iterable[dict[str, Any]]) -> list[Anomaly]:
    return [Anomaly.model_validate(a) for a in items]


def _max_severity(severities: Iterable[Severity]) -> Severity:
    return max(severities, key=lambda s: s.rank)


def _cut(text: str, limit: int = TEXT_MAX) -> str:
    """``text`` on one line, at most ``limit`` characters (an ellipsis when cut)."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _num(value: float) -> str:
    return f"{value:.4g}"


def _duration(seconds: float) -> str:
    """``45 s``, ``42 min``, ``2 h 5 min`` (event time)."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, rest = divmod(minutes, 60)
    return f"{hours} h {rest} min" if rest else f"{hours} h"


def _name(kind: str, metric_name: str) -> str:
    return "error rate" if kind == "error_rate" else _cut(metric_name, 80)


def _entry(at: datetime, kind: Any, text: str, severity: Severity | None = None) -> TimelineEntry:
    return TimelineEntry(at=at, kind=kind, text=_cut(text), severity=severity)


def _signal_text(a: Anomaly, verb: str) -> str:
    if a.kind == "alert":  # no baseline: the alert's own words
        summary = a.alert.summary if a.alert is not None else ""
        return f"alert {_cut(a.metric_name, 80)} {verb} ({a.severity.value})" + (
            f": {summary}" if summary else "")
    return (
        f"{_name(a.kind, a.metric_name)} {verb} ({a.severity.value}, z={a.z_score:.3g}, "
        f"{_num(a.current_value)} vs baseline {_num(a.baseline_mean)})"
    )


def _signal_from(a: Anomaly) -> Signal:
    """A new firing signal from its first alert."""
    return Signal(
        series=series_of(a),
        kind=a.kind,
        metric_name=a.metric_name,
        state="firing",
        severity=a.severity,
        first_at=a.detected_at,
        last_at=a.detected_at,
        last_value=a.current_value,
        baseline_mean=a.baseline_mean,
        z_score=a.z_score,
        summary=a.alert.summary if a.alert is not None else None,
        fired_at=a.detected_at,
    )


def _signals_from(anomalies: list[Anomaly]) -> tuple[Signal, ...]:
    """One firing signal per series of ``anomalies`` (first seen first): first and
    newest time, highest severity, newest value."""
    by_series: dict[str, Signal] = {}
    for a in sorted(anomalies, key=lambda x: x.detected_at):
        key = series_of(a)
        sig = by_series.get(key)
        if sig is None:
            by_series[key] = _signal_from(a)
        else:
            by_series[key] = _observe(sig, a).model_copy(
                update={"severity": _max_severity((sig.severity, a.severity))}
            )
    return tuple(by_series.values())


def _observe(sig: Signal, a: Anomaly) -> Signal:
    """``sig`` with ``a``'s newest observation (a late record moves nothing)."""
    if a.detected_at < sig.last_at:
        return sig
    return sig.model_copy(
        update={
            "last_at": a.detected_at,
            "last_value": a.current_value,
            "baseline_mean": a.baseline_mean,
            "z_score": a.z_score,
        }
    )


Change = Literal["new", "refired", "escalated", "refresh"]


def _fire(sig: Signal | None, a: Anomaly) -> tuple[Signal, Change]:
    """Apply a firing record to a signal; says what it was for the signal."""
    if sig is None:
        return _signal_from(a), "new"
    if sig.state == "resolved":
        refired = _observe(sig, a).model_copy(
            update={"state": "firing", "resolved_at": None, "severity": a.severity,
                    "fired_at": a.detected_at}
        )
        return refired, "refired"
    observed = _observe(sig, a)
    if a.severity.rank > sig.severity.rank:
        return observed.model_copy(update={"severity": a.severity}), "escalated"
    return observed, "refresh"


def _recover(sig: Signal, a: Anomaly) -> Signal:
    """Apply a recovery to a firing signal."""
    return _observe(sig, a).model_copy(update={"state": "resolved", "resolved_at": a.detected_at})


def _get(signals: tuple[Signal, ...], series: str) -> Signal | None:
    for sig in signals:
        if sig.series == series:
            return sig
    return None


def _put(signals: tuple[Signal, ...], sig: Signal, cap: int) -> tuple[Signal, ...]:
    """``signals`` with ``sig`` replacing its series' entry or appended; beyond ``cap``
    the oldest resolved signal, else the least recently seen other one, is dropped."""
    if any(s.series == sig.series for s in signals):
        return tuple(sig if s.series == sig.series else s for s in signals)
    out = [*signals, sig]
    if len(out) > cap:
        others = [s for s in out if s.series != sig.series]
        resolved = [s for s in others if s.state == "resolved"]
        if resolved:
            victim = min(resolved, key=lambda s: s.resolved_at or s.last_at)
        else:
            victim = min(others, key=lambda s: s.last_at)
        out.remove(victim)
    return tuple(out)


def _drop(signals: tuple[Signal, ...], series: str) -> tuple[Signal, ...]:
    return tuple(s for s in signals if s.series != series)


def _add(
    timeline: tuple[TimelineEntry, ...], entries: Iterable[TimelineEntry], cap: int
) -> tuple[TimelineEntry, ...]:
    """``timeline`` plus ``entries``, bounded: the first entry and the newest ``cap`` − 1."""
    out = (*timeline, *entries)
    if len(out) > cap:
        out = (out[0], *out[len(out) - (cap - 1) :])
    return out


def _prune(state: CorrelationState, t: datetime, config: CorrelationConfig) -> CorrelationState:
    """Forget signals outside an incident that are done with: recovered more than
    ``window_s`` before ``t``, or firing with nothing sent for ``close_after_s``."""
    if not state.signals:
        return state
    recovered_before = t - timedelta(seconds=config.window_s)
    silent_before = t - timedelta(seconds=config.close_after_s)
    kept = tuple(
        s
        for s in state.signals
        if (s.state == "resolved" and (s.resolved_at or s.last_at) >= recovered_before)
        or (s.state == "firing" and s.last_at >= silent_before)
    )
    return state if len(kept) == len(state.signals) else replace(state, signals=kept)


def _rules(
    new: Anomaly,
    nearby: list[Anomaly],
    deployments: DeploymentHistory,
    config: CorrelationConfig,
) -> list[str]:
    """Reasons (possibly several) why ``new`` with ``nearby`` opens an incident."""
    reasons: list[str] = []
    if config.symptoms and not any(_is_symptom(a.kind, a.metric_name, config)
                                   for a in (new, *nearby)):
        return reasons  # causes alone (CPU, memory, …) page nobody
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
    if new.severity is Severity.CRITICAL and (new.kind != "metric" or not config.alone_for_s):
        # A critical metric anomaly alone waits for corroboration (:func:`_persisted`).
        reasons.append(
            f"critical alert {new.metric_name}" if new.kind == "alert"
            else f"critical anomaly on {new.metric_name} (z={new.z_score:.1f})")
    # Corroboration counts series: two alerts of one series (an escalation, a
    # re-fire) are one.
    evidence = list({series_of(a): a for a in nearby}.values()) if config.alone_for_s else nearby
    if len(evidence) >= 2:
        alerts = sum(a.kind == "alert" for a in evidence)
        if alerts == len(evidence):
            what = "alerts"
        elif config.alone_for_s:
            what = "anomalous series" if not alerts else "series (alerts and anomalies)"
        else:
            what = "anomalies" if not alerts else "signals (alerts and anomalies)"
        reasons.append(f"{len(evidence)} {what} within {window_min} min")
    return reasons


def _is_symptom(kind: str, metric_name: str, config: CorrelationConfig) -> bool:
    """Whether evidence of ``kind`` on ``metric_name`` is a symptom under
    ``config.symptoms`` (error-rate spikes and Alertmanager alerts always are; with
    no symptoms set, everything is)."""
    if kind != "metric" or not config.symptoms:
        return True
    name = metric_name.lower()
    return any(part in name for part in config.symptoms)


def _fired_at(sig: Signal) -> datetime:
    """When ``sig`` last started firing (states written before ``fired_at``: its first
    alert)."""
    return sig.fired_at or sig.first_at


def _persisted(sig: Signal, a: Anomaly, config: CorrelationConfig) -> str | None:
    """The reason a lone critical metric series opens an incident when it is still
    firing ``alone_for_s`` after it (re-)fired (a re-send ``a`` says so), else None."""
    if not config.alone_for_s or sig.kind != "metric" or sig.state != "firing":
        return None
    if sig.severity is not Severity.CRITICAL:
        return None
    if not _is_symptom(sig.kind, sig.metric_name, config):
        return None
    firing_s = (a.detected_at - _fired_at(sig)).total_seconds()
    if firing_s < config.alone_for_s:
        return None
    return (f"critical anomaly on {a.metric_name} (z={sig.z_score:.1f}) firing for "
            f"{_duration(firing_s)}")


def _record(inc: OpenIncident, status: str, notify: bool, ctx: _Ctx) -> Incident:
    """The Incident record of ``inc`` (its revision must already count it)."""
    config = ctx.config
    horizon = max([inc.updated_at, *(e.at for e in inc.timeline)])
    # Error lines from ``context_window_s`` before the incident (or its first signal)
    # began until its newest evidence: those that led up to it and came with it.
    began = min([inc.opened_at, *(s.first_at for s in inc.signals)])
    context_from = began - timedelta(seconds=config.context_window_s)
    recent_errors = [e for e in ctx.errors if context_from <= e.timestamp <= horizon]
    deps = ctx.deployments.within(
        inc.opened_at - timedelta(seconds=config.deployment_window_s), horizon
    )
    return Incident(
        id=inc.id,
        service=ctx.service,
        status=status,
        state=inc.state,
        revision=inc.revision,
        notify=notify,
        severity=inc.severity,
        trigger_reason=inc.trigger_reason,
        opened_at=inc.opened_at,
        updated_at=inc.updated_at,
        closed_at=inc.closed_at,
        resolution=inc.resolution,
        reopened=inc.reopened,
        anomalies=_anoms(inc.anomalies),
        signals=list(inc.signals),
        timeline=list(inc.timeline),
        recent_errors=recent_errors,
        recent_deployments=deps,
        group=inc.group,
        suspects=list(inc.group.suspects) if inc.group else [],
    )


def _seen(state: CorrelationState, source: tuple[str, int] | None) -> CorrelationState | None:
    """``None`` when ``source`` was applied already (a replay), else the state with
    the source's offset remembered."""
    if source is None:
        return state
    stream, offset = source
    if replay.seen(state.offsets, stream, offset):
        return None
    return replace(state, offsets=replay.advance(state.offsets, stream, offset))


def _already_applied(state: CorrelationState, anomaly: dict[str, Any]) -> bool:
    """Whether an identical alert (every field equal, JSON form) is in the state.

    The metrics and logs agents publish an anomaly before they write their table, so
    a crash between the two re-sends the anomaly under a new offset of
    ``autopilot.anomalies``; the offset check cannot see that, this check does (as
    long as the original is among the ``max_anomalies`` kept). A re-sent refresh or
    recovery needs no check: applying it twice changes nothing.
    """
    if anomaly in state.recent:
        return True
    return state.incident is not None and anomaly in state.incident.anomalies


# --------------------------------------------------------------------------- lifecycle


def _close_after(inc: OpenIncident, config: CorrelationConfig) -> int:
    """The quiet time after which the firing ``inc`` is stale (s): ``close_after_s``,
    or ``alert_close_after_s`` (if longer) while one of its signals is a firing alert."""
    if any(sig.kind == "alert" and sig.state == "firing" for sig in inc.signals):
        return max(config.close_after_s, config.alert_close_after_s)
    return config.close_after_s


def _stale(inc: OpenIncident, ctx: _Ctx) -> tuple[OpenIncident, Incident]:
    """Resolve a firing incident as stale: no evidence for :func:`_close_after`."""
    close_after = _close_after(inc, ctx.config)
    closed_at = inc.updated_at + timedelta(seconds=close_after)
    entry = _entry(
        closed_at, "stale", f"resolved as stale: no evidence for {_duration(close_after)}"
    )
    inc = replace(
        inc,
        state="resolved",
        resolution="stale",
        closed_at=closed_at,
        revision=inc.revision + 1,
        timeline=_add(inc.timeline, [entry], ctx.config.max_timeline),
        wall_updated=ctx.wall_now,
    )
    return inc, _record(inc, "resolved", True, ctx)


def _expire(
    state: CorrelationState, t: datetime, ctx: _Ctx
) -> tuple[CorrelationState, list[Incident]]:
    """Before applying a record at event time ``t``: the event-time stale close of a
    firing incident, and forgetting a resolved one whose re-open window ``t`` passed."""
    inc = state.incident
    if inc is None:
        return state, []
    out: list[Incident] = []
    config = ctx.config
    if inc.state == "firing" and (
        (t - inc.updated_at).total_seconds() > _close_after(inc, config)
    ):
        inc, record = _stale(inc, ctx)
        state = replace(state, incident=inc)
        out.append(record)
    if (
        inc.state == "resolved"
        and inc.closed_at is not None
        and t > inc.closed_at
        and (t - inc.closed_at).total_seconds() >= config.reopen_window_s
    ):
        state = _forget(state, inc, config)
    return state, out


def _is_quiet(inc: OpenIncident, sig: Signal) -> bool:
    """Whether ``sig`` fired after the resolved ``inc`` was resolved and was kept with
    it quietly (not corroborated, :func:`_reopens`): never told in its thread."""
    return (inc.state == "resolved" and inc.closed_at is not None
            and sig.fired_at is not None and sig.fired_at > inc.closed_at)


def _quiet_signals(inc: OpenIncident) -> list[Signal]:
    """The signals of ``inc`` that :func:`_is_quiet`."""
    return [s for s in inc.signals if _is_quiet(inc, s)]


def _quiet_text(sig: Signal) -> str:
    """Timeline text of a quietly kept signal told at a re-open (from its newest record)."""
    return (f"{_name(sig.kind, sig.metric_name)} firing since {_fired_at(sig):%H:%M:%S} "
            f"({sig.severity.value}, z={sig.z_score:.3g}, {_num(sig.last_value)} vs baseline "
            f"{_num(sig.baseline_mean)})")


def _forget(
    state: CorrelationState, inc: OpenIncident, config: CorrelationConfig
) -> CorrelationState:
    """Drop the resolved ``inc`` (``closed`` + 1); its quietly kept signals that still
    fire stay with the service, so their wait for corroboration goes on."""
    loose = state.signals
    for sig in _quiet_signals(inc):
        if sig.state == "firing":
            loose = _put(loose, sig, config.max_signals)
    return replace(state, incident=None, closed=state.closed + 1, signals=loose)


def _remember(
    state: CorrelationState, anomaly: Anomaly, config: CorrelationConfig
) -> tuple[CorrelationState, list[Anomaly]]:
    """Add an alert to the recent window; returns the state and the alerts within
    ``window_s`` of it (the rules' evidence), oldest first."""
    window = timedelta(seconds=config.window_s)
    t = anomaly.detected_at
    kept = [a for a in _anoms(state.recent) if abs(a.detected_at - t) <= window]
    kept.append(anomaly)
    kept.sort(key=lambda a: a.detected_at)
    kept = kept[-config.max_anomalies :]
    return replace(state, recent=tuple(a.model_dump(mode="json") for a in kept)), kept


def _open(
    state: CorrelationState,
    kept: list[Anomaly],
    reasons: list[str],
    at: datetime,
    ctx: _Ctx,
    opened_at: datetime | None = None,
) -> tuple[CorrelationState, Incident]:
    """Open an incident from the alerts ``kept``; their series' signals move into it.
    ``opened_at`` (the incident's start, part of its id) defaults to the first alert's
    time."""
    opened_at = opened_at or kept[0].detected_at
    reason = "; ".join(reasons)
    fallback = {s.series: s for s in _signals_from(kept)}
    signals = tuple(_get(state.signals, key) or sig for key, sig in fallback.items())
    inc = OpenIncident(
        id=incident_id(kept[0].service, opened_at),
        opened_at=opened_at,
        updated_at=max(a.detected_at for a in kept),
        revision=1,
        severity=_max_severity(a.severity for a in kept),
        trigger_reason=reason,
        anomalies=tuple(a.model_dump(mode="json") for a in kept),
        wall_updated=ctx.wall_now,
        signals=signals[: ctx.config.max_signals],
        timeline=(
            _entry(at, "opened", f"opened: {reason}", _max_severity(a.severity for a in kept)),
        ),
    )
    loose = tuple(s for s in state.signals if s.series not in fallback)
    state = replace(state, incident=inc, signals=loose)
    return state, _record(inc, "opened", True, ctx)


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
    """Apply one anomaly record (an alert, a re-send or a recovery) of a service.

    Args:
        state: the service's correlation state.
        anomaly: the new evidence; ``anomaly.state`` is ``firing`` (an alert, an
            escalation or a re-send) or ``resolved`` (its series recovered).
        source: ``(topic, offset)`` of the source record; at or below the last
            offset seen on that topic it is a replay and nothing changes.
            ``None`` skips the check (tests, backtests).
        deployments: the service's recent deployments.
        errors: the service's recent error lines (any order).
        wall_now: wall-clock epoch seconds (for the wall-clock stale close later).
        config: parameters.

    Returns:
        ``(new_state, incidents)``: zero to two Incident records, in order (a
        ``resolved`` one when the record comes after the stale-close time, then one
        of ``opened``, ``updated``, ``resolved`` or ``reopened``). A refresh of a
        firing signal changes the state but publishes nothing.
    """
    seen = _seen(state, source)
    if seen is None:
        return state, []
    dump = anomaly.model_dump(mode="json")
    if anomaly.state == "firing" and _already_applied(seen, dump):
        # The same alert under a new offset: its detector re-sent it after a crash
        # (it publishes before it writes its state). Only the offset moves.
        return seen, []
    ctx = _Ctx(anomaly.service, deployments, errors, wall_now, config)
    state, out = _expire(seen, anomaly.detected_at, ctx)
    state = _prune(state, anomaly.detected_at, config)
    if anomaly.state == "resolved":
        state, more = _on_recovery(state, anomaly, ctx)
    else:
        state, more = _on_firing(state, anomaly, dump, ctx)
    return state, out + more


def _on_recovery(
    state: CorrelationState, a: Anomaly, ctx: _Ctx
) -> tuple[CorrelationState, list[Incident]]:
    """A series recovered: its signal resolves; the last one resolves the incident."""
    config = ctx.config
    key = series_of(a)
    t = a.detected_at
    inc = state.incident
    member = _get(inc.signals, key) if inc is not None else None
    if inc is None or member is None:
        loose = _get(state.signals, key)
        if loose is None or loose.state == "resolved":
            return state, []
        return replace(
            state, signals=_put(state.signals, _recover(loose, a), config.max_signals)
        ), []
    if member.state == "resolved":
        return state, []  # a repeated recovery
    signals = _put(inc.signals, _recover(member, a), config.max_signals)
    if _is_quiet(inc, member):
        # A re-fire kept quietly with the resolved incident (not corroborated, see
        # :func:`_reopens`) recovers: it was never told, so neither is this.
        return replace(state, incident=replace(inc, signals=signals)), []
    entries = [
        _entry(
            t,
            "signal_resolved",
            f"alert {_cut(a.metric_name, 80)} resolved" if a.kind == "alert" else
            f"{_name(a.kind, a.metric_name)} recovered ({_num(a.current_value)} vs baseline "
            f"{_num(a.baseline_mean)})",
        )
    ]
    status = "updated"
    inc = replace(
        inc,
        signals=signals,
        updated_at=max(inc.updated_at, t),
        wall_updated=ctx.wall_now,
        revision=inc.revision + 1,
    )
    if inc.state == "firing" and all(s.state == "resolved" for s in signals):
        closed_at = max(s.resolved_at or t for s in signals)
        entries.append(
            _entry(
                closed_at,
                "resolved",
                f"resolved: {len(signals)} signal(s) recovered after "
                f"{_duration((closed_at - inc.opened_at).total_seconds())}",
            )
        )
        inc = replace(inc, state="resolved", resolution="recovered", closed_at=closed_at)
        status = "resolved"
    inc = replace(inc, timeline=_add(inc.timeline, entries, config.max_timeline))
    return replace(state, incident=inc), [_record(inc, status, True, ctx)]


def _on_firing(
    state: CorrelationState, a: Anomaly, dump: dict[str, Any], ctx: _Ctx
) -> tuple[CorrelationState, list[Incident]]:
    """A series fires (a new alert, an escalation or a refresh)."""
    config = ctx.config
    key = series_of(a)
    inc = state.incident
    member = _get(inc.signals, key) if inc is not None else None
    if inc is None or member is None:
        loose = _get(state.signals, key)
        sig, change = _fire(loose, a)
        if change == "refresh":
            # Still firing, outside any incident: no new evidence for the rules, and
            # no reason to re-open a resolved incident it never belonged to; a lone
            # critical series that has fired long enough opens one (corroboration).
            state = replace(state, signals=_put(state.signals, sig, config.max_signals))
            reason = _persisted(sig, a, config) if inc is None else None
            if reason is None:
                return state, []
            state, record = _open(state, [a], [reason], a.detected_at, ctx,
                                  opened_at=_fired_at(sig))
            return state, [record]
        state, kept = _remember(state, a, config)
        if inc is None:
            state = replace(state, signals=_put(state.signals, sig, config.max_signals))
            reasons = _rules(a, kept, ctx.deployments, config)
            if not reasons:
                return state, []
            state, record = _open(state, kept, reasons, a.detected_at, ctx)
            return state, [record]
        state = replace(state, signals=_drop(state.signals, key))
        change = "new"  # new to the incident, whatever it was outside it
    else:
        sig, change = _fire(member, a)
        if change != "refresh":
            state, _ = _remember(state, a, config)
    return _apply(state, inc, a, dump, sig, change, ctx)


def _apply(
    state: CorrelationState,
    inc: OpenIncident,
    a: Anomaly,
    dump: dict[str, Any],
    sig: Signal,
    change: Change,
    ctx: _Ctx,
) -> tuple[CorrelationState, list[Incident]]:
    """Apply a firing record of signal ``sig`` (already updated) to the incident."""
    config = ctx.config
    t = a.detected_at
    alert = change != "refresh"
    severity = _max_severity((inc.severity, a.severity)) if alert else inc.severity
    inc = replace(
        inc,
        signals=_put(inc.signals, sig, config.max_signals),
        anomalies=(*inc.anomalies, dump)[-config.max_anomalies :] if alert else inc.anomalies,
        updated_at=max(inc.updated_at, t),
        wall_updated=ctx.wall_now,
    )
    late = inc.state == "resolved" and inc.closed_at is not None and t <= inc.closed_at
    if inc.state == "firing" and not alert:
        return replace(state, incident=inc), []  # a refresh: alive, nothing to tell
    if inc.state == "resolved" and not late and not _reopens(state, a, sig, alert, ctx):
        # Not corroborated (a lone series, not yet firing for ``alone_for_s``): the
        # signal is kept with the resolved incident, which re-opens only when the
        # opening rules hold (a refresh of it re-checks).
        return replace(state, incident=inc), []

    entries: list[TimelineEntry] = []
    if inc.state == "resolved" and not late:
        assert inc.closed_at is not None
        after = _duration((t - inc.closed_at).total_seconds())
        entries.append(
            _entry(
                t,
                "reopened",
                f"re-opened {after} after resolution: " + _signal_text(a, "firing"),
                a.severity,
            )
        )
        for quiet in _quiet_signals(inc):
            if quiet.state == "firing" and quiet.series != sig.series:
                # Kept quietly until now: told with the re-open it corroborated.
                entries.append(_entry(t, "signal", _quiet_text(quiet), quiet.severity))
        inc = replace(
            inc, state="firing", closed_at=None, resolution=None, reopened=inc.reopened + 1
        )
        status = "reopened"
    else:
        if change == "new":
            entries.append(_entry(t, "signal", _signal_text(a, "firing"), a.severity))
        elif change == "refired":
            entries.append(
                _entry(t, "signal_refired", _signal_text(a, "firing again"), a.severity))
        if severity.rank > inc.severity.rank:
            entries.append(
                _entry(
                    t,
                    "escalated",
                    f"severity {inc.severity.value} → {severity.value}: "
                    f"{_name(a.kind, a.metric_name)} (z={a.z_score:.3g})",
                    severity,
                )
            )
        status = "updated"
    inc = replace(
        inc,
        severity=severity,
        revision=inc.revision + 1,
        timeline=_add(inc.timeline, entries, config.max_timeline),
    )
    # A late refresh tells nothing new; a re-open always does.
    notify = alert or status == "reopened"
    return replace(state, incident=inc), [_record(inc, status, notify, ctx)]


def _reopens(
    state: CorrelationState, a: Anomaly, sig: Signal, alert: bool, ctx: _Ctx
) -> bool:
    """Whether firing evidence ``a`` (an alert when ``alert``, else a refresh) of signal
    ``sig`` re-opens a resolved incident. Always, with neither corroboration
    (``alone_for_s``) nor symptoms set; else when its series has fired alone long
    enough (:func:`_persisted`), when a refresh is of a symptom and ``alone_for_s`` is
    0, or when the opening rules hold for an alert with the alerts around it."""
    config = ctx.config
    if not (config.alone_for_s or config.symptoms) or _persisted(sig, a, config) is not None:
        return True
    if not alert:
        if not config.alone_for_s:
            return _is_symptom(sig.kind, sig.metric_name, config)
        # Rule 2 for a deployment that arrived after the alert it explains.
        return (sig.severity.rank >= Severity.HIGH.rank
                and _is_symptom(sig.kind, sig.metric_name, config)
                and bool(ctx.deployments.before(
                    _fired_at(sig), timedelta(seconds=config.deployment_window_s))))
    window = timedelta(seconds=config.window_s)
    nearby = [x for x in _anoms(state.recent) if abs(x.detected_at - a.detected_at) <= window]
    return bool(_rules(a, nearby or [a], ctx.deployments, config))


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
    """Apply a deployment of the service (announced by the deployments agent).

    With an incident firing, the deployment joins its timeline (kind
    ``deployment``; an ``updated`` record that notifies); so does a deployment at or
    before a resolved incident's ``closed_at`` (late); a later one re-opens nothing.
    With no incident, a deployment can reach correlation *after* the anomalies it
    explains (another topic): a recent high or critical alert of the service within
    ``deployment_window_s`` after it opens one (rule 2), exactly as if the deployment
    had arrived first. ``deployments`` must already include it. A deployment already
    in the timeline (same time and text) changes nothing.

    Returns:
        ``(new_state, incidents)``: possibly a stale ``resolved`` record (event-time
        stale close), then an ``updated`` or ``opened`` record, or nothing.
    """
    seen = _seen(state, source)
    if seen is None:
        return state, []
    ctx = _Ctx(deployment.service, deployments, errors, wall_now, config)
    d = deployment.timestamp
    state, out = _expire(seen, d, ctx)
    inc = state.incident
    if inc is not None:
        if inc.state == "resolved" and inc.closed_at is not None and d > inc.closed_at:
            return state, out
        text = (
            f"deployment of version {_cut(deployment.version, 120)} ({_cut(deployment.status, 40)})"
        )
        entry = _entry(d, "deployment", text)
        if entry in inc.timeline:
            return state, out
        inc = replace(
            inc,
            revision=inc.revision + 1,
            timeline=_add(inc.timeline, [entry], config.max_timeline),
        )
        return replace(state, incident=inc), [*out, _record(inc, "updated", True, ctx)]
    window = timedelta(seconds=config.deployment_window_s)
    recent = _anoms(state.recent)
    blamed = [
        a
        for a in recent
        if a.severity.rank >= Severity.HIGH.rank and d <= a.detected_at <= d + window
    ]
    if not blamed:
        return state, out
    newest = blamed[-1]
    corr_window = timedelta(seconds=config.window_s)
    kept = [a for a in recent if abs(a.detected_at - newest.detected_at) <= corr_window]
    reasons = _rules(newest, kept, deployments, config)
    if not reasons:  # symptoms set and only causes blamed: they open nothing
        return state, out
    state, record = _open(state, kept, reasons, newest.detected_at, ctx)
    return state, [*out, record]


def close_if_quiet(
    state: CorrelationState,
    *,
    service: str,
    wall_now: float,
    deployments: DeploymentHistory,
    errors: list[LogEntry],
    config: CorrelationConfig,
) -> tuple[CorrelationState, list[Incident]]:
    """The wall-clock side of the lifecycle, for a service that went quiet.

    A firing incident with no evidence for ``close_after_s`` of wall-clock time is
    resolved as stale (``closed_at`` = last evidence + ``close_after_s``, event time;
    a ``resolved`` record that notifies). A resolved incident whose resolution is
    ``reopen_window_s`` of wall-clock time old is forgotten (``closed`` + 1, no
    record), so it does not stay forever on a service that sends nothing more.

    Returns:
        ``(new_state, records)``; ``(state, [])`` when there is nothing to do.
    """
    inc = state.incident
    if inc is None:
        return state, []
    quiet = wall_now - inc.wall_updated
    if inc.state == "firing":
        if quiet < _close_after(inc, config):
            return state, []
        ctx = _Ctx(service, deployments, errors, wall_now, config)
        inc, record = _stale(inc, ctx)
        return replace(state, incident=inc), [record]
    if quiet >= config.reopen_window_s:
        return _forget(state, inc, config), []
    return state, []


def resolve_manually(
    state: CorrelationState,
    *,
    service: str,
    incident_id: str,
    by: str,
    wall_now: float,
    deployments: DeploymentHistory,
    errors: list[LogEntry],
    config: CorrelationConfig,
) -> tuple[CorrelationState, list[Incident]]:
    """Resolve the firing incident ``incident_id`` by hand (Slack's Resolve button).

    The incident becomes ``resolved`` with resolution ``manual``; ``closed_at`` is its
    newest evidence (event time), so any later evidence re-opens it by the lifecycle
    rules (within ``reopen_window_s``; after that a new incident opens). Its signals
    keep their state. A ``resolved`` timeline entry names ``by``.

    Returns:
        ``(new_state, [resolved record])``; ``(state, [])`` when the service's current
        incident is another one or is resolved already (a repeated or late click).
    """
    inc = state.incident
    if inc is None or inc.id != incident_id or inc.state != "firing":
        return state, []
    ctx = _Ctx(service, deployments, errors, wall_now, config)
    closed_at = inc.updated_at
    entry = _entry(closed_at, "resolved", _cut(f"resolved manually by {by}"))
    inc = replace(
        inc,
        state="resolved",
        resolution="manual",
        closed_at=closed_at,
        revision=inc.revision + 1,
        timeline=_add(inc.timeline, [entry], config.max_timeline),
        wall_updated=wall_now,
    )
    return replace(state, incident=inc), [_record(inc, "resolved", True, ctx)]


def is_quiet(state: CorrelationState, wall_now: float, config: CorrelationConfig) -> bool:
    """True when :func:`close_if_quiet` has something to do at ``wall_now``: a firing
    incident quiet for its close time (:func:`_close_after`) in wall-clock seconds, or
    a resolved one resolved ``reopen_window_s`` wall-clock seconds ago."""
    inc = state.incident
    if inc is None:
        return False
    quiet = wall_now - inc.wall_updated
    if inc.state == "firing":
        return quiet >= _close_after(inc, config)
    return quiet >= config.reopen_window_s


def _suspect_text(group: IncidentGroup) -> str:
    top = group.suspects[0]
    reason = f": {top.reasons[0]}" if top.reasons else ""
    return f"{top.service} ({top.fault_kind.replace('_', ' ')}, score {top.score:.2f}){reason}"


def on_group(
    state: CorrelationState,
    group: IncidentGroup,
    *,
    service: str,
    wall_now: float,
    deployments: DeploymentHistory,
    errors: list[LogEntry],
    config: CorrelationConfig,
    evidence: dict[str, str] | None = None,
) -> tuple[CorrelationState, list[Incident]]:
    """Place the service's incident in ``group`` (a decision of the grouping agent,
    :mod:`autopilot.agents.groups`; the ranking is :mod:`autopilot.rca`'s).

    The group is stored on the incident (every later record carries it as ``group``
    and its ``suspects`` as ``suspects``) and one ``updated`` record is published
    (revision + 1) when the group differs from the one stored. Timeline entries of
    kind ``group`` (``notify`` true) are added when:

    * another service joins the group, on the primary's incident (its Slack thread is
      the group's): "checkout-api joined this incident group: latency_ms z=6.1 …",
      naming the joiner's top evidence (``evidence[service]``, a short text the
      grouping agent sends; else the joiner's first suspect reason);
    * this incident joins a group whose primary is another incident: "grouped under
      payments-db's incident (grp-…)";
    * the top suspect changes, on the primary: "top suspect: db (resource, score
      0.82): …".

    Otherwise (same members, same top suspect; a member's state or the scores moved)
    the record has no new entry and does not notify. Event times: a join entry is at
    the later of the joiner's ``opened_at`` and the incident's newest evidence; a
    suspect change at the incident's newest evidence. ``wall_updated`` is not moved
    (a group decision is no evidence of the service's own).

    Returns:
        ``(new_state, [record])``; ``(state, [])`` when the service has no incident,
        the group does not list it (an older incident of the service), or the group
        is the one stored already.
    """
    inc = state.incident
    if inc is None or not any(m.incident_id == inc.id for m in group.members):
        return state, []
    old = inc.group
    if old == group:
        return state, []
    texts = evidence or {}
    entries: list[TimelineEntry] = []
    primary = group.primary_incident_id == inc.id
    before = {m.service for m in old.members} if old else {service}
    if primary:
        for m in group.members:
            if m.service in before or m.incident_id == inc.id:
                continue
            what = texts.get(m.service) or next(
                (s.reasons[0] for s in group.suspects if s.service == m.service and s.reasons),
                "")
            text = f"{m.service} joined this incident group" + (f": {what}" if what else "")
            entries.append(_entry(max(inc.updated_at, m.opened_at), "group", _cut(text)))
        old_top = old.suspects[0].service if old and old.suspects else None
        new_top = group.suspects[0].service if group.suspects else None
        if new_top is not None and new_top != old_top and (old_top is not None or len(
                group.members) > 1 or new_top != service):
            entries.append(_entry(inc.updated_at, "group",
                                  _cut(f"top suspect: {_suspect_text(group)}")))
    elif old is None or old.primary_incident_id != group.primary_incident_id:
        text = f"grouped under {group.primary_service}'s incident ({group.id})"
        entries.append(_entry(inc.updated_at, "group", _cut(text)))
    ctx = _Ctx(service, deployments, errors, wall_now, config)
    inc = replace(
        inc,
        group=group,
        revision=inc.revision + 1,
        timeline=_add(inc.timeline, entries, config.max_timeline),
    )
    return replace(state, incident=inc), [_record(inc, "updated", bool(entries), ctx)]
